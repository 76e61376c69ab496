"""Inventory jobs (django-q2). Thin: the reads live in ``backoffice.inventory.selectors``."""

from __future__ import annotations

import logging

from backoffice.inventory.selectors import low_stock_report
from backoffice.notifications import services as notifications

logger = logging.getLogger(__name__)


def detect_low_stock() -> int:
    """The morning report: log every stock row at or below its threshold; returns how many.

    Plugins hear of low stock as it happens (the ``stock_low`` event, sent by the stock
    services when a change takes a row to its threshold); this is the digest for people.
    """
    rows = low_stock_report()
    for row in rows:
        logger.info(
            "Low stock: %s (%s) in %s: %d available, threshold %d",
            row.sku, row.product_name, row.warehouse_code, row.available, row.threshold,
        )
    if rows:
        logger.warning("%d stock rows are at or below their low-stock threshold", len(rows))
        # The staff's daily digest (once a day, however often the job runs).
        notifications.low_stock_digest([
            {"sku": row.sku, "product_name": row.product_name, "warehouse": row.warehouse_code,
             "available": row.available, "threshold": row.threshold}
            for row in rows[:200]
        ])
    return len(rows)
