"""The payment status machine, as data (checked in ``services``; a move not listed is ignored,
which is what makes a late or out-of-order provider event harmless).

    pending <──> requires_action ──> succeeded ──> partially_refunded ──> refunded
       └──────────────┴──> failed / cancelled ──> succeeded (the money came after all)
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class PaymentStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    REQUIRES_ACTION = "requires_action", _("Waiting for the customer")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
    REFUNDED = "refunded", _("Refunded")


P = PaymentStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    P.PENDING: frozenset({P.REQUIRES_ACTION, P.SUCCEEDED, P.FAILED, P.CANCELLED}),
    P.REQUIRES_ACTION: frozenset({P.PENDING, P.SUCCEEDED, P.FAILED, P.CANCELLED}),
    # A provider that said no can still be paid: an M-Pesa push that timed out for us but was
    # approved on the phone, found by the status query.
    P.FAILED: frozenset({P.SUCCEEDED}),
    P.CANCELLED: frozenset({P.SUCCEEDED}),
    P.SUCCEEDED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.PARTIALLY_REFUNDED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.REFUNDED: frozenset(),
}

# Still waiting for the provider or the customer: reconciliation asks about these.
OPEN_STATUSES = frozenset({P.PENDING, P.REQUIRES_ACTION})
# Money was taken (and some of it may have gone back).
SETTLED_STATUSES = frozenset({P.SUCCEEDED, P.PARTIALLY_REFUNDED, P.REFUNDED})


def can_move(current: str, wanted: str) -> bool:
    return wanted in TRANSITIONS[current]
