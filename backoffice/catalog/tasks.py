"""Catalog jobs (django-q2). Thin: the rules live in ``backoffice.catalog.services``."""

from __future__ import annotations

from backoffice.catalog.services import deactivate_sold_out_products as _deactivate


def deactivate_sold_out_products() -> int:
    """Unpublish products whose every active variant is sold out; returns how many."""
    return _deactivate()
