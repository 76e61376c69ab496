"""Rows the admin edits, made when they are missing: a switch per (event, channel) and a staff
alert per alert kind. Runs after every ``migrate`` (and may run any time: it only adds)."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError

from backoffice.notifications import catalogue

# Channels every store has a switch for, active or not yet (a switch made now is there when
# the merchant activates SMS later).
KNOWN_CHANNELS = ("email", "sms")


def ensure_rules(channels: Any = None, **kwargs: Any) -> int:
    from backoffice.notifications.models import NotificationRule, StaffAlert

    codes = set(KNOWN_CHANNELS)
    if isinstance(channels, list | tuple | set):
        codes.update(channels)
    try:
        from backoffice.notifications.services import active_channels

        codes.update(active_channels())
    except DatabaseError:
        pass
    rules = [NotificationRule(event=event, channel=code)
             for event in catalogue.EVENTS for code in sorted(codes)]
    NotificationRule.objects.bulk_create(rules, ignore_conflicts=True)
    StaffAlert.objects.bulk_create(
        [StaffAlert(event=event) for event in catalogue.STAFF_EVENTS], ignore_conflicts=True)
    return len(rules)
