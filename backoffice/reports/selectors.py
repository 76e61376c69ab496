"""Reading sales: the rollup for the days it has counted, the orders (live) for the rest.

The rollup has counted every day up to its latest row (``DailySales``; the job writes a row for
every day it counts, zeros too). A day after that (today, and yesterday until the job has run
after midnight, or more if the job is behind) is computed live from the orders with the same
code the job uses (``rollup.compute``), so the two always agree. Every reader here costs a fixed
number of queries, whatever the number of orders: the dashboard five, a report three to five.

Money stays ``Decimal``; figures are in the store currency (``STORE_CURRENCY``). Orders in
another currency (from before the store changed its currency) are left out and counted apart
(``Series.other_currency_orders``), never added to the store currency's figures.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    IntegerField,
    Max,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.utils import timezone

from backoffice.admin_filters import start_of_day
from backoffice.reports.models import DailyBreakdown, DailySales, Dimension
from backoffice.reports.rollup import (
    Computed,
    Figures,
    aggregate,
    compute,
    local_day,
    read_rows,
)

SUMMED = ("orders", "items", "gross", "discounts", "shipping", "refunds", "refunded_items")
# Ranked by the stored net (gross - discounts + shipping - refunds, written with the row).
RANKED = (*SUMMED, "net")


def store_currency() -> str:
    return settings.STORE_CURRENCY


def _latest_day_q() -> Q:
    """The latest counted day, as a condition: brings the rollup's last row along with a
    range's rows, in the same query."""
    return Q(day=Subquery(DailySales.objects.order_by("-day").values("day")[:1]))


def counted_through() -> dt.date | None:
    """The last day the rollup has counted (None: it never ran)."""
    return DailySales.objects.aggregate(last=Max("day"))["last"]


def _live(first: dt.date, last: dt.date, through: dt.date | None, *, now: dt.datetime,
          categories: bool) -> tuple[Computed, dt.date | None]:
    """The days of [first, last] the rollup has not counted, computed from the orders (one
    query, two with ``categories``), and the first such day (None: none)."""
    start = first if through is None else max(first, through + dt.timedelta(days=1))
    if start > last:
        return {}, None
    return compute(start, last, until=now, categories=categories), start


# --- A series of days -----------------------------------------------------------------------


@dataclass
class Series:
    """Each day's figures in the store currency over [first, last] (days with no sales have
    zero figures), how far the rollup counted, and the orders in other currencies left out."""

    first: dt.date
    last: dt.date
    days: dict[dt.date, Figures]
    counted_through: dt.date | None
    live_from: dt.date | None
    other_currency_orders: int = 0
    other_currencies: list[str] = field(default_factory=list)

    def total(self, first: dt.date | None = None, last: dt.date | None = None) -> Figures:
        first, last = first or self.first, last or self.last
        total = Figures()
        for day, figures in self.days.items():
            if first <= day <= last:
                total.add(figures)
        return total


def daily_series(first: dt.date, last: dt.date, *, now: dt.datetime | None = None) -> Series:
    """Sales per day over [first, last]: two queries (the rollup's rows, then the orders of the
    days it has not counted), one when the rollup covers the whole range."""
    now = now or timezone.now()
    currency = store_currency()
    rows = list(
        DailySales.objects.filter(Q(day__gte=first, day__lte=last) | _latest_day_q())
        .order_by("day").values("day", "currency", *SUMMED, "refund_count")
    )
    through = max((row["day"] for row in rows), default=None)
    days = {first + dt.timedelta(days=n): Figures()
            for n in range((last - first).days + 1)}
    other_orders, others = 0, set()
    for row in rows:
        if not first <= row["day"] <= last:
            continue
        if row["currency"] != currency:
            other_orders += row["orders"]
            if row["orders"]:
                others.add(row["currency"])
            continue
        days[row["day"]] = Figures.of_row(row)
    live, live_from = _live(first, last, through, now=now, categories=False)
    for (day, day_currency), figures in live.items():
        if day_currency != currency:
            other_orders += figures.totals.orders
            if figures.totals.orders:
                others.add(day_currency)
            continue
        days[day] = Figures().add(figures.totals)
    return Series(first, last, days, through, live_from, other_orders, sorted(others))


# --- Breakdowns -------------------------------------------------------------------------------


@dataclass
class Breakdown:
    """The figures of one dimension over a period: ``rows`` ``[(key, Figures)]`` best first
    (by net sales), at most ``limit`` of them; ``total`` over every key and ``count`` of keys."""

    dimension: str
    rows: list[tuple[str, Figures]]
    total: Figures
    count: int
    counted_through: dt.date | None
    live_from: dt.date | None


def _figures_of(row: dict) -> Figures:
    return Figures.of_row(row)


def _summed(row: dict) -> Figures:
    """Figures from a grouped row's ``sum_<name>`` columns (and ``top_label``)."""
    return Figures.of_row({**{name: row.get(f"sum_{name}") for name in SUMMED},
                           "label": row.get("top_label", "")})


def breakdown(dimension: str, first: dt.date, last: dt.date, *, limit: int | None = None,
              now: dt.datetime | None = None, through: dt.date | None | bool = False,
              live: Computed | None = None, totals: bool = True) -> Breakdown:
    """``dimension``'s figures over [first, last], best first. Queries: how far the rollup
    counted (unless ``through`` is given), the live days (unless ``live`` is given: figures
    already computed for the days after ``through``), the best ``limit`` keys, and with a
    ``limit`` the totals over all keys. Exact with a limit too: the keys sold on the live days
    are read from the rollup whatever their rank there, then merged, sorted and cut. Without
    ``totals``, the limited breakdown's ``total`` and ``count`` are left out (one query less)."""
    now = now or timezone.now()
    currency = store_currency()
    if through is False:
        through = counted_through()
    if live is None:
        live, _ = _live(first, last, through, now=now,
                        categories=dimension == Dimension.CATEGORY)
    live_from = min((day for day, _ in live), default=None)
    merged: dict[str, Figures] = defaultdict(Figures)
    for (day, day_currency), figures in live.items():
        if day_currency == currency and first <= day <= last and (
                through is None or day > through):
            for key, item in figures.breakdowns[dimension].items():
                merged[key].add(item)
    rows: list[tuple[str, Figures]] = []
    total = Figures()
    count = 0
    if through is not None and first <= through:
        stored = DailyBreakdown.objects.filter(
            dimension=dimension, currency=currency, day__gte=first, day__lte=min(last, through),
        )
        sums = {f"sum_{name}": Sum(name) for name in RANKED}
        grouped = stored.order_by().values("key").annotate(top_label=Max("label"), **sums)
        if limit is not None:
            # The keys sold live first (all of them), then the rest by net sales: the merged
            # top ``limit`` is among these.
            live_keys = list(merged)
            first_live = Case(When(key__in=live_keys, then=Value(0)), default=Value(1),
                              output_field=IntegerField()) if live_keys else Value(1)
            grouped = grouped.annotate(first_live=first_live).order_by(
                "first_live", "-sum_net", "key")[:limit + len(live_keys)]
            if totals:
                summed = stored.aggregate(keys=Count("key", distinct=True), **sums)
                count = summed.pop("keys") or 0
                total = _summed(summed)
        rows = [(row["key"], _summed(row)) for row in grouped]
    known = {key for key, _ in rows}
    for key, figures in rows:
        if key in merged:
            figures.add(merged[key])
    # Sold on the live days only: keys the rollup never counted in the range.
    extra = [(key, figures) for key, figures in merged.items() if key not in known]
    rows.extend(extra)
    if limit is None:
        total = Figures()
        for _key, figures in rows:
            total.add(Figures(**{name: getattr(figures, name) for name in SUMMED}))
        count = len(rows)
    else:
        for figures in merged.values():
            total.add(Figures(**{name: getattr(figures, name) for name in SUMMED}))
        count += len(extra)
    rows.sort(key=lambda pair: (-pair[1].net, -pair[1].items, pair[0]))
    if limit is not None:
        rows = rows[:limit]
    return Breakdown(dimension, rows, total, count, through, live_from)


# --- The dashboard ----------------------------------------------------------------------------


@dataclass
class Change:
    value: Decimal | int
    previous: Decimal | int

    @property
    def percent(self) -> Decimal | None:
        """The change in percent, one decimal; None when there is nothing to compare with."""
        if not self.previous:
            return None
        return ((Decimal(self.value) - Decimal(self.previous)) * 100
                / abs(Decimal(self.previous))).quantize(Decimal("0.1"))


@dataclass
class DashboardSales:
    today: dt.date
    now: dt.datetime
    today_figures: Figures
    yesterday_same_time: Figures
    periods: dict[int, tuple[Figures, Figures]]  # days: (last N whole days, the N before)
    chart: list[tuple[dt.date, Figures]]  # the last 30 days, today included
    top_products: list[tuple[str, Figures]]
    providers: list[tuple[str, Figures]]
    counted_through: dt.date | None
    other_currency_orders: int = 0


CHART_DAYS = 30
PERIODS = (7, 30)
TOP_PRODUCTS = 10


def dashboard_sales(now: dt.datetime | None = None) -> DashboardSales:
    """Everything the dashboard says about sales, in three queries whatever the store's size:

    1. the rollup's rows of the last 60 days and its latest row, with its payment-provider rows
       of the last 30 (one ``UNION ALL``);
    2. the orders and refunds of yesterday and today (and of any day the rollup has not
       counted): today's figures, yesterday's up to the same time of day;
    3. the best products of the last 30 whole days.
    """
    now = now or timezone.now()
    today = local_day(now)
    yesterday = today - dt.timedelta(days=1)
    currency = store_currency()
    longest = max(PERIODS)
    first = today - dt.timedelta(days=2 * longest)
    window_first = today - dt.timedelta(days=longest)
    columns = ("day", "currency", "dim", "key", *SUMMED, "refund_count")
    daily = DailySales.objects.filter(
        Q(day__gte=first, day__lt=today) | _latest_day_q(),
    ).annotate(
        dim=Value("", output_field=CharField()), key=Value("", output_field=CharField()),
    ).values_list(*columns).order_by()
    providers = DailyBreakdown.objects.filter(
        dimension=Dimension.PROVIDER, currency=currency, day__gte=window_first, day__lt=today,
    ).annotate(
        dim=Value(Dimension.PROVIDER.value, output_field=CharField()),
        refund_count=Value(0, output_field=IntegerField()),
    ).values_list(*columns).order_by()
    rows = list(daily.union(providers, all=True))
    through = max((row[0] for row in rows if row[2] == ""), default=None)
    days: dict[dt.date, Figures] = defaultdict(Figures)
    provider_sums: dict[str, Figures] = defaultdict(Figures)
    other_orders = 0
    for day, row_currency, dim, key, *numbers in rows:
        values = dict(zip((*SUMMED, "refund_count"), numbers, strict=True))
        if dim:
            provider_sums[key].add(_figures_of(values))
        elif row_currency != currency:
            other_orders += values["orders"] if window_first <= day < today else 0
        elif first <= day < today:
            days[day] = _figures_of(values)
    # Yesterday is always read live too: today is compared with yesterday up to this time.
    live_first = yesterday if through is None else min(yesterday, through + dt.timedelta(days=1))
    live_first = max(live_first, first)
    rows_live = list(read_rows(start_of_day(live_first), now))
    live = aggregate(rows_live, categories=False)
    cutoff = now - dt.timedelta(days=1)
    same_time = aggregate([row for row in rows_live
                           if row[2] < cutoff and local_day(row[2]) == yesterday],
                          categories=False)
    for (day, day_currency), figures in live.items():
        if day_currency != currency:
            continue
        if through is None or day > through:
            days[day] = Figures().add(figures.totals)
            if window_first <= day < today:
                for key, item in figures.breakdowns[Dimension.PROVIDER].items():
                    provider_sums[key].add(item)
    periods = {}
    for length in PERIODS:
        current = Figures()
        previous = Figures()
        for n in range(1, length + 1):
            current.add(days.get(today - dt.timedelta(days=n), Figures()))
            previous.add(days.get(today - dt.timedelta(days=n + length), Figures()))
        periods[length] = (current, previous)
    chart = [(today - dt.timedelta(days=n), days.get(today - dt.timedelta(days=n), Figures()))
             for n in range(CHART_DAYS - 1, -1, -1)]
    # The best products of the 30 whole days before today: the rollup's, with the live days'.
    live_window = {key: value for key, value in live.items()
                   if window_first <= key[0] < today}
    top = breakdown(Dimension.PRODUCT, window_first, yesterday, limit=TOP_PRODUCTS, now=now,
                    through=through, live=live_window, totals=False)
    return DashboardSales(
        today=today, now=now,
        today_figures=Figures().add(live[today, currency].totals)
        if (today, currency) in live else Figures(),
        yesterday_same_time=Figures().add(same_time[yesterday, currency].totals)
        if (yesterday, currency) in same_time else Figures(),
        periods=periods, chart=chart, top_products=top.rows,
        providers=sorted(provider_sums.items(), key=lambda pair: (-pair[1].net, pair[0])),
        counted_through=through, other_currency_orders=other_orders,
    )
