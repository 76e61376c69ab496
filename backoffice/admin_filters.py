"""List filters the admin pages share."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from unfold.contrib.filters.admin import RangeDateFilter


def parse_day(value: str) -> dt.date | None:
    """A day as staff type it (any of ``DATE_INPUT_FORMATS``), or None."""
    for format_ in settings.DATE_INPUT_FORMATS:
        try:
            return dt.datetime.strptime(value, format_).date()
        except (TypeError, ValueError):
            continue
    return None


def start_of_day(day: dt.date) -> dt.datetime:
    """Midnight of ``day`` in the store's time zone (aware)."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


class DayRangeFilter(RangeDateFilter):
    """A "from day - to day" filter on a date-time column: whole days in the store's time zone,
    "to" included, as a range on the column (indexable), not a ``__date`` cast per row. unfold's
    own filter compares the column with a bare date, which Django takes as a naive midnight."""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        name = self.parameter_name
        start = self.used_parameters.get(f"{name}_from")
        end = self.used_parameters.get(f"{name}_to")
        filters = {}
        if start:
            day = parse_day(start)
            if day is None:
                return None
            filters[f"{name}__gte"] = start_of_day(day)
        if end:
            day = parse_day(end)
            if day is None:
                return None
            filters[f"{name}__lt"] = start_of_day(day + dt.timedelta(days=1))
        return queryset.filter(**filters)
