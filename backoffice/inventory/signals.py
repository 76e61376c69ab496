"""The stock stamp: a token in the shared cache that changes after every committed stock change.

Stock is never cached (DESIGN.md), but responses that *show* availability are: the storefront's
catalog responses (``backoffice.catalog.storefront_cache``) put this stamp in their cache keys,
so a new stamp makes every one of them miss. The query cache (cachalot) does not watch the
inventory tables, so stock writers say so themselves, by calling :func:`stock_changed` inside the
transaction that writes:

- the services in ``backoffice.inventory.services`` do it for every change (through
  ``_refresh_listings`` and ``bulk_set_stock_levels``);
- single-row saves and deletes of ``Stock`` (the admin's low-stock threshold, ``get_or_create``)
  do it through the signal receivers below;
- anything else that writes stock rows with ``QuerySet.update()``, ``bulk_update``, raw SQL or
  COPY (allocation's conditional UPDATE, releasing or expiring reservations...) must call
  :func:`stock_changed` itself.

The stamp changes *after* the commit, never before: a reader that sees the new stamp also sees the
committed rows, so a response built from the old rows can only ever be stored under the old stamp.
"""

from __future__ import annotations

import logging
import uuid

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

STAMP_KEY = "inventory:stock-stamp"


class _StampBump:
    """The on-commit callback; its token marks this transaction's uncommitted change."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.token = uuid.uuid4().hex

    def __call__(self) -> None:
        try:
            # A fresh token, never the pending one: responses the writing transaction built for
            # itself (under its pending token) stay out of everyone else's reach.
            cache.set(STAMP_KEY, uuid.uuid4().hex, timeout=None)
        except Exception:
            logger.exception("Could not change the stock stamp: cached storefront responses may "
                             "show old availability until they expire")


def _pending_bump(connection) -> _StampBump | None:
    """This transaction's stamp change waiting for the commit, if it made one (a savepoint
    rolled back takes its callbacks with it, so this is exact)."""
    for entry in connection.run_on_commit:
        if isinstance(entry[1], _StampBump):
            return entry[1]
    return None


def stock_changed(*, using: str | None = None) -> None:
    """Declare that stock changed in the current transaction: on hand, allocated or reserved
    quantities, low-stock thresholds, stock rows created or deleted.

    Call it from any code that writes ``inventory.Stock`` (or anything else availability is
    computed from), inside the transaction that writes; calling it several times is cheap and
    changes the stamp once. The stamp changes right after the transaction commits (at once in
    autocommit mode), and not at all if it rolls back. Cached responses that show availability
    stop being served from that moment.
    """
    connection = transaction.get_connection(using)
    pending = _pending_bump(connection) if connection.in_atomic_block else None
    if pending is not None:
        pending.renew()  # the transaction's own view moves on; the commit still bumps once
        return
    transaction.on_commit(_StampBump(), using=using, robust=True)


def stock_stamp(*, using: str | None = None, committed: str | None = None) -> str:
    """The current stock stamp, for cache keys.

    ``committed`` is the value of ``STAMP_KEY`` when the caller has already read it (with other
    keys, in one round trip). A missing stamp (never set, evicted, a cache that stores nothing)
    starts as a new random token, so it can never come back to an old value. Inside a
    transaction that changed stock and has not committed, the stamp is one of its own: that
    transaction reads its own writes, and nobody else ever sees that stamp.
    """
    token = committed if committed is not None else cache.get(STAMP_KEY)
    if token is None:
        cache.add(STAMP_KEY, uuid.uuid4().hex, timeout=None)
        token = cache.get(STAMP_KEY) or f"unstored-{uuid.uuid4().hex}"
    connection = transaction.get_connection(using)
    if connection.in_atomic_block:
        pending = _pending_bump(connection)
        if pending is not None:
            return f"{token}+{pending.token}"
    return token


def _stock_row_saved_or_deleted(sender, **kwargs) -> None:
    stock_changed(using=kwargs.get("using"))


def connect_signals() -> None:
    """Called by the inventory app's ``ready()``."""
    from django.db.models.signals import post_delete, post_save

    from backoffice.inventory.models import LowStock, Stock

    # A proxy model's save sends its own class as the sender: the low-stock admin edits rows too.
    for model in (Stock, LowStock):
        post_save.connect(_stock_row_saved_or_deleted, sender=model,
                          dispatch_uid=f"stock-stamp-save-{model.__name__}")
        post_delete.connect(_stock_row_saved_or_deleted, sender=model,
                            dispatch_uid=f"stock-stamp-delete-{model.__name__}")
