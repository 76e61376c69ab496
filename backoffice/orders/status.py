"""The order status machine, as data: which status may follow which. Checked in one place
(``backoffice.orders.services.transition``); an illegal move raises and changes nothing.

    pending_payment ──> paid ──> processing ──> shipped ──> delivered
          │   └───────────────────┘ (cash on delivery: accepted unpaid)
          └──> cancelled <── paid / processing (stock released)
    paid, processing, shipped, delivered ──> partially_refunded ──> refunded
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class OrderStatus(models.TextChoices):
    PENDING_PAYMENT = "pending_payment", _("Pending payment")
    PAID = "paid", _("Paid")
    PROCESSING = "processing", _("Processing")
    SHIPPED = "shipped", _("Shipped")
    DELIVERED = "delivered", _("Delivered")
    CANCELLED = "cancelled", _("Cancelled")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
    REFUNDED = "refunded", _("Refunded")


S = OrderStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING_PAYMENT: frozenset({S.PAID, S.PROCESSING, S.CANCELLED}),
    S.PAID: frozenset({S.PROCESSING, S.CANCELLED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PROCESSING: frozenset({S.SHIPPED, S.CANCELLED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.SHIPPED: frozenset({S.DELIVERED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.DELIVERED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    # A partial refund leaves the rest of the order to be fulfilled.
    S.PARTIALLY_REFUNDED: frozenset({
        S.PROCESSING, S.SHIPPED, S.DELIVERED, S.PARTIALLY_REFUNDED, S.REFUNDED,
    }),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
}

# Orders whose stock is still promised to them (allocations held) and may still be shipped.
OPEN_STATUSES = frozenset({S.PENDING_PAYMENT, S.PAID, S.PROCESSING, S.PARTIALLY_REFUNDED})
# Orders that may still ship lines.
SHIPPABLE_STATUSES = frozenset({S.PAID, S.PROCESSING, S.PARTIALLY_REFUNDED})
# Orders that count as bought (verified purchase, sales numbers).
PURCHASED_STATUSES = frozenset({
    S.PAID, S.PROCESSING, S.SHIPPED, S.DELIVERED, S.PARTIALLY_REFUNDED,
})
# Orders with money that may be refunded.
REFUNDABLE_STATUSES = frozenset({
    S.PAID, S.PROCESSING, S.SHIPPED, S.DELIVERED, S.PARTIALLY_REFUNDED, S.CANCELLED,
})


class IllegalTransition(Exception):
    def __init__(self, current: str, wanted: str) -> None:
        self.current = current
        self.wanted = wanted
        super().__init__(
            f"An order that is {OrderStatus(current).label.lower()} cannot become "
            f"{OrderStatus(wanted).label.lower()}."
        )


def can_move(current: str, wanted: str) -> bool:
    return wanted in TRANSITIONS[current]


def check_move(current: str, wanted: str) -> None:
    if not can_move(current, wanted):
        raise IllegalTransition(current, wanted)
