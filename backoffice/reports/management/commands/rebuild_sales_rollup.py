"""Recompute the sales rollup for a range of days (a backfill, or after fixing orders by hand),
and the complete months those days are in. The hourly job keeps it up to date on its own; this
is for when you know better."""

import datetime as dt
import time

from django.core.management.base import BaseCommand, CommandError

from backoffice.reports.rollup import days_to_refresh, rebuild_days, today


class Command(BaseCommand):
    help = ("Recompute the sales rollup (the dashboard's and the reports' figures) from the "
            "orders: the days --since to --until (the store's days, yesterday by default), or "
            "what the hourly job would do now.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", type=dt.date.fromisoformat,
                            help="First day (YYYY-MM-DD); without it, what the job would do.")
        parser.add_argument("--until", type=dt.date.fromisoformat,
                            help="Last day (default: yesterday).")

    def handle(self, *args, since=None, until=None, **options) -> None:
        started = time.perf_counter()
        yesterday = today() - dt.timedelta(days=1)
        if since is None:
            if until is not None:
                raise CommandError("--until needs --since.")
            days = days_to_refresh()
        else:
            until = until or yesterday
            if until > yesterday:
                raise CommandError("Only past days are kept (today is always computed live).")
            if since > until:
                raise CommandError("--since is after --until.")
            days = [since + dt.timedelta(days=n) for n in range((until - since).days + 1)]
        written = rebuild_days(days)
        self.stdout.write(self.style.SUCCESS(
            f"{written} days recomputed in {time.perf_counter() - started:.1f} s."))
