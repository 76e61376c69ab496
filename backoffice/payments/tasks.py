"""Payment jobs (django-q2). Thin: the rules live in ``backoffice.payments.services``."""

from __future__ import annotations

import logging

from backoffice.payments import services

logger = logging.getLogger(__name__)


def process_event(event_id: int) -> str:
    """A stored webhook event, acted on once."""
    return services.process_event(event_id)


def reconcile_payments() -> str:
    """Every few minutes: retry failed events, ask providers about open payments and about
    refunds they never answered."""
    report = services.reconcile()
    if report.events or report.payments or report.refunds:
        logger.info("Payment reconciliation: %s", report)
    return str(report)
