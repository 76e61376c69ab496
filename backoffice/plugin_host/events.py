"""Events to plugins, through an outbox.

``emit_event`` is called inside the transaction of the change it reports. It writes one
``PluginEvent`` and one ``PluginEventDelivery`` per active plugin implementing the hook, and,
once the transaction commits, enqueues a job per delivery. A rolled-back change leaves no event
and enqueues nothing.

A delivery job claims its row with a conditional UPDATE (so a job and the sweeper never run the
same delivery twice at once), calls that one plugin, and records the outcome. A plugin that raises
is retried with exponential backoff up to ``MAX_ATTEMPTS``, then marked failed with its error, for
the admin to see and retry. A delivery still "running" after ``RUNNING_TIMEOUT`` (its worker was
killed by the job timeout, or died) is treated as a failed attempt. ``retry_due_deliveries`` runs
every minute and also picks up deliveries whose enqueue was lost between commit and queue.
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from backoffice import hookspecs
from backoffice.plugin_host.loading import get_plugin_host
from backoffice.plugin_host.models import DeliveryStatus, PluginEvent, PluginEventDelivery

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 60 * 60
# The time limit of one delivery (django-q2's per-task timeout): a plugin hook that runs longer
# is stopped, and the delivery counts as a failed attempt once RUNNING_TIMEOUT has passed.
DELIVERY_TIMEOUT_SECONDS = 60
# Longer than the delivery's and the django-q2 cluster's job timeout: past it, the worker that
# ran the delivery is gone.
RUNNING_TIMEOUT = timedelta(minutes=10)
DELIVER_TASK = "backoffice.plugin_host.events.deliver"


def emit_event(hook: str, **payload: Any) -> PluginEvent | None:
    """Record ``hook`` for every active plugin implementing it; deliver after commit.

    Must be called inside the transaction of the change it reports. ``payload`` must be plain
    JSON (ids and strings, not model instances); a value may be a callable returning it, called
    only when some plugin listens (for values that cost a query). ``event_id`` is added at
    delivery. Returns ``None`` when no plugin listens.
    """
    if hook not in hookspecs.HOOK_NAMES:
        raise ValueError(f"{hook!r} is not a hook")
    listeners = get_plugin_host().implementations(hook)
    if not listeners:
        return None
    payload = {key: value() if callable(value) else value for key, value in payload.items()}
    now = timezone.now()
    with transaction.atomic():
        event = PluginEvent.objects.create(hook=hook, payload=payload)
        deliveries = PluginEventDelivery.objects.bulk_create(
            PluginEventDelivery(event=event, plugin=name, next_attempt_at=now)
            for name in listeners
        )
    ids = [delivery.pk for delivery in deliveries] or list(
        event.deliveries.values_list("pk", flat=True)
    )
    transaction.on_commit(lambda: _enqueue(ids))
    return event


def _enqueue(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        async_task(
            DELIVER_TASK, delivery_id, task_name=f"plugin-delivery-{delivery_id}",
            timeout=DELIVERY_TIMEOUT_SECONDS,
        )


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


def _claim(delivery_id: int) -> bool:
    """Take the delivery if it is due; True when this caller got it."""
    now = timezone.now()
    claimed = PluginEventDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(status=DeliveryStatus.RUNNING, started_at=now, attempts=F("attempts") + 1)
    return claimed == 1


def _record_failure(delivery: PluginEventDelivery, error: str) -> None:
    if delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.FAILED
        logger.error(
            "plugin %s gave up on %s after %d attempts: %s",
            delivery.plugin, delivery.event.hook, delivery.attempts, error.splitlines()[-1],
        )
        from backoffice.notifications import services as notifications

        with transaction.atomic():
            notifications.plugin_failed(delivery_id=delivery.pk, plugin=delivery.plugin,
                                        hook=delivery.event.hook, attempts=delivery.attempts,
                                        error=error)
    else:
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = timezone.now() + _backoff(delivery.attempts)
        logger.warning(
            "plugin %s failed on %s (attempt %d), retrying at %s",
            delivery.plugin, delivery.event.hook, delivery.attempts, delivery.next_attempt_at,
        )
    delivery.last_error = error[-5000:]
    delivery.save(update_fields=["status", "next_attempt_at", "last_error"])


def deliver(delivery_id: int) -> str:
    """Deliver one event to one plugin (the job). Returns the delivery's status."""
    if not _claim(delivery_id):
        return "skipped"
    delivery = PluginEventDelivery.objects.select_related("event").get(pk=delivery_id)
    host = get_plugin_host()
    if delivery.plugin not in host.plugins:
        _record_failure(delivery, f"plugin {delivery.plugin!r} is not installed any more")
        return delivery.status
    try:
        host.call_one(delivery.event.hook, delivery.plugin,
                      {**delivery.event.payload, "event_id": delivery.event_id})
    except Exception:  # noqa: BLE001 - a plugin's failure is recorded, never propagated
        _record_failure(delivery, traceback.format_exc())
        return delivery.status
    delivery.status = DeliveryStatus.DELIVERED
    delivery.delivered_at = timezone.now()
    delivery.last_error = ""
    delivery.save(update_fields=["status", "delivered_at", "last_error"])
    return delivery.status


def retry_due_deliveries(limit: int = 500) -> int:
    """The schedule: time out stuck deliveries, enqueue the due ones. Returns how many."""
    now = timezone.now()
    for delivery in PluginEventDelivery.objects.select_related("event").filter(
        status=DeliveryStatus.RUNNING, started_at__lt=now - RUNNING_TIMEOUT
    ):
        _record_failure(delivery, f"timed out: still running after {RUNNING_TIMEOUT}")
    due = list(
        PluginEventDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        ).order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
    )
    _enqueue(due)
    return len(due)


def retry_failed(delivery_ids: list[int]) -> int:
    """Give failed deliveries a fresh set of attempts (the admin's "retry" action)."""
    updated = PluginEventDelivery.objects.filter(
        pk__in=delivery_ids, status=DeliveryStatus.FAILED
    ).update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now())
    transaction.on_commit(lambda: _enqueue(delivery_ids))
    return updated
