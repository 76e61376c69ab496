"""Order jobs (django-q2). Thin: the rules live in ``backoffice.orders.services``."""

from __future__ import annotations

import logging

from backoffice.orders.services import expire_unpaid_orders

logger = logging.getLogger(__name__)


def cancel_expired_orders() -> int:
    """Every minute: cancel orders unpaid past their payment window, releasing their stock."""
    cancelled = expire_unpaid_orders()
    if cancelled:
        logger.info("Cancelled %d orders not paid in time", cancelled)
    return cancelled
