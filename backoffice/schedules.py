"""The jobs that run on a schedule, declared once and written to django-q2's Schedule table.

``sync_schedules`` runs after every ``migrate`` and whenever a plugin is switched on or off. It
creates a missing schedule and keeps the declared parts (function, type, interval, cron) of an
existing one true, matching rows by name. What the merchant changes in the admin (next run,
repeats) is left alone. Active plugins' jobs (the ``register_schedules`` hook) are named
``plugin <name>: <job>``; those of a plugin no longer active are removed.
"""

from __future__ import annotations

from django.db import transaction
from django_q.models import Schedule

from backoffice.plugin_host.protocols import ScheduledJob

PLUGIN_PREFIX = "plugin "

SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name="Deactivate sold-out products",
        func="backoffice.catalog.tasks.deactivate_sold_out_products",
        minutes=30,
    ),
    ScheduledJob(
        # Also mails the staff's low-stock digest.
        name="Low-stock report",
        func="backoffice.inventory.tasks.detect_low_stock",
        cron="0 7 * * *",  # every morning, before the shop opens
    ),
    ScheduledJob(
        # Listing columns are kept true on every write; this catches anything that slipped by.
        name="Refresh product listings",
        func="backoffice.catalog.services.refresh_listings",
        cron="30 3 * * *",
    ),
    ScheduledJob(
        # The storefront's kept answers are made stale by every write; this rebuilds them all
        # (a media storage whose URLs changed, anything that slipped by).
        name="Rebuild kept storefront answers",
        func="backoffice.catalog.documents.rebuild_all",
        cron="45 3 * * *",
    ),
    ScheduledJob(
        # Unpaid orders hold stock only for their payment window.
        name="Cancel unpaid orders",
        func="backoffice.orders.tasks.cancel_expired_orders",
        minutes=1,
    ),
    ScheduledJob(
        # Lost webhooks, M-Pesa callbacks that never come, provider timeouts.
        name="Reconcile pending payments",
        func="backoffice.payments.tasks.reconcile_payments",
        minutes=2,
    ),
    ScheduledJob(
        # Retries failed plugin deliveries and picks up any whose enqueue was lost.
        name="Deliver plugin events",
        func="backoffice.plugin_host.events.retry_due_deliveries",
        minutes=1,
    ),
    ScheduledJob(
        # Retries messages whose channel failed for a while; picks up lost enqueues.
        name="Send notifications",
        func="backoffice.notifications.services.retry_due",
        minutes=1,
    ),
    ScheduledJob(
        # The sales rollup the dashboard and the reports read: yesterday once it is over, any
        # day not counted yet, and past days whose orders changed since the last run (each
        # day recomputed from the orders; idempotent). Hourly, so that a day is counted soon
        # after midnight in any time zone; a run with nothing to do reads one small table.
        name="Sales rollup",
        func="backoffice.reports.rollup.refresh_rollup",
        cron="10 * * * *",
    ),
]


def _declared(job: ScheduledJob) -> dict:
    return {
        "func": job.func,
        "schedule_type": Schedule.CRON if job.cron else Schedule.MINUTES,
        "minutes": None if job.cron else job.minutes,
        "cron": job.cron or None,
    }


def plugin_jobs() -> list[ScheduledJob]:
    """The active plugins' jobs, named after their plugin."""
    from backoffice.plugin_host.services import scheduled_jobs

    return [
        ScheduledJob(name=f"{PLUGIN_PREFIX}{plugin}: {job.name}", func=job.func,
                     minutes=job.minutes, cron=job.cron)
        for plugin, job in scheduled_jobs()
    ]


@transaction.atomic
def sync_schedules(jobs: list[ScheduledJob] | None = None) -> tuple[int, int]:
    """Upsert ``jobs`` by name (by default the core's and the active plugins'); returns
    (created, updated). With the defaults, a plugin's schedules that it no longer declares, or
    whose plugin is off, are deleted."""
    defaults = jobs is None
    jobs = [*SCHEDULED_JOBS, *plugin_jobs()] if defaults else jobs
    existing = {s.name: s for s in Schedule.objects.filter(name__in=[j.name for j in jobs])}
    created = updated = 0
    for job in jobs:
        declared = _declared(job)
        schedule = existing.get(job.name)
        if schedule is None:
            Schedule.objects.create(name=job.name, repeats=-1, **declared)
            created += 1
            continue
        changed = [field for field, value in declared.items() if getattr(schedule, field) != value]
        if changed:
            for field in changed:
                setattr(schedule, field, declared[field])
            schedule.save(update_fields=changed)
            updated += 1
    if defaults:
        Schedule.objects.filter(name__startswith=PLUGIN_PREFIX).exclude(
            name__in=[job.name for job in jobs]
        ).delete()
    return created, updated


def sync_schedules_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """The ``post_migrate`` receiver, for django_q's app: runs once per migrate."""
    if using != "default":
        return
    sync_schedules()
