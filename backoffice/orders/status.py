"""An order's states, as data: two machines and the overall state derived from them.

An order carries two facts that move on their own, each its own machine:

- its **payment state**: where the customer's money stands::

      unpaid ──> paid ──> partially_refunded ──> refunded
                  │  └──────────────────────────────┘
                  └──> overpaid <── partially_refunded / refunded   (a second payment arrived)
      overpaid ──> paid / partially_refunded / refunded             (the extra money went back)

  There is no *authorised* state: the payment machine (``backoffice.payments.status``) has no
  authorisation step (a provider's success is money taken), so nothing could reach it.

- its **fulfilment state**: where the goods are::

      unfulfilled ──> partially_shipped ──> shipped ──> partially_delivered ──> delivered
            └──────────────────────────────────┘   └──────────────────────────────┘
      partially_shipped ──> partially_delivered / delivered   (the rest was refunded unshipped)

  *delivered* is final: nothing undoes it. There is no *returned* state: goods come back only
  through a refund with restock, and a refund never moves fulfilment, so nothing would reach it.

Beside them, **cancellation** (a time, ``cancelled_at``), and the **overall state** (open,
cancelled, completed), stored for filtering but always computed by ``overall_status``:

- *cancelled*: the order was cancelled (whatever its money says: money held for a cancelled
  order is a refund due);
- *completed*: nothing is left to do: everything paid was given back, or the goods were
  delivered (or none are left to ship) and the order is paid, with no extra money held;
- *open*: anything else.

A refund never moves fulfilment; a shipment never moves payment. Every move is checked here, in
``check_move``, by the order services under the order's row lock: an illegal move raises
``IllegalTransition`` and changes nothing.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class OrderStatus(models.TextChoices):
    """The overall state, derived (``overall_status``)."""

    OPEN = "open", _("Open")
    CANCELLED = "cancelled", _("Cancelled")
    COMPLETED = "completed", _("Completed")


class PaymentStatus(models.TextChoices):
    UNPAID = "unpaid", _("Unpaid")
    PAID = "paid", _("Paid")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
    REFUNDED = "refunded", _("Refunded")
    OVERPAID = "overpaid", _("Overpaid")


class FulfilmentStatus(models.TextChoices):
    UNFULFILLED = "unfulfilled", _("Unfulfilled")
    PARTIALLY_SHIPPED = "partially_shipped", _("Partially shipped")
    SHIPPED = "shipped", _("Shipped")
    PARTIALLY_DELIVERED = "partially_delivered", _("Partially delivered")
    DELIVERED = "delivered", _("Delivered")


class State(models.TextChoices):
    """Which of an order's states an ``OrderEvent`` or a plugin event is about."""

    ORDER = "order", _("Order")
    PAYMENT = "payment", _("Payment")
    FULFILMENT = "fulfilment", _("Fulfilment")


S = OrderStatus
P = PaymentStatus
F = FulfilmentStatus

TRANSITIONS: dict[str, dict[str, frozenset[str]]] = {
    State.ORDER: {
        S.OPEN: frozenset({S.CANCELLED, S.COMPLETED}),
        # Money came in again (a second payment): there is a refund to make. Or an order
        # refunded in full before anything shipped is then cancelled.
        S.COMPLETED: frozenset({S.OPEN, S.CANCELLED}),
        S.CANCELLED: frozenset(),
    },
    State.PAYMENT: {
        P.UNPAID: frozenset({P.PAID}),
        P.PAID: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED, P.OVERPAID}),
        P.PARTIALLY_REFUNDED: frozenset({P.REFUNDED, P.OVERPAID}),
        P.REFUNDED: frozenset({P.OVERPAID}),
        P.OVERPAID: frozenset({P.PAID, P.PARTIALLY_REFUNDED, P.REFUNDED}),
    },
    State.FULFILMENT: {
        F.UNFULFILLED: frozenset({F.PARTIALLY_SHIPPED, F.SHIPPED}),
        F.PARTIALLY_SHIPPED: frozenset({F.SHIPPED, F.PARTIALLY_DELIVERED, F.DELIVERED}),
        F.SHIPPED: frozenset({F.PARTIALLY_DELIVERED, F.DELIVERED}),
        F.PARTIALLY_DELIVERED: frozenset({F.DELIVERED}),
        F.DELIVERED: frozenset(),
    },
}

CHOICES: dict[str, type[models.TextChoices]] = {
    State.ORDER: OrderStatus, State.PAYMENT: PaymentStatus, State.FULFILMENT: FulfilmentStatus,
}

# Money the customer paid is with the store (a cancelled order holding it owes a refund).
MONEY_HELD = frozenset({P.PAID, P.PARTIALLY_REFUNDED, P.OVERPAID})
# Paid for, so it may ship (a cash-on-delivery order also ships unpaid: ``Order.pay_on_delivery``).
SHIPPABLE_PAYMENT = MONEY_HELD
# Fulfilment states in which units may be left to ship (the rest shipped or arrived).
MAY_SHIP_MORE = frozenset({F.UNFULFILLED, F.PARTIALLY_SHIPPED, F.PARTIALLY_DELIVERED})


def label(state: str, value: str) -> str:
    """``value``'s words (``"partially_refunded"`` -> "partially refunded"), any machine."""
    try:
        return str(CHOICES[state](value).label).lower()
    except ValueError:
        return value.replace("_", " ")


class OrderError(Exception):
    """An order operation that cannot be done; nothing was changed. ``code`` is for programs."""

    def __init__(self, message: str, code: str = "order_error") -> None:
        super().__init__(message)
        self.code = code


class IllegalTransition(OrderError):
    """A move its machine does not allow (checked by ``check_move``)."""

    def __init__(self, current: str, wanted: str, state: str = State.ORDER) -> None:
        self.state = state
        self.current = current
        self.wanted = wanted
        subject = {State.ORDER: "An order that is",
                   State.PAYMENT: "An order whose payment is",
                   State.FULFILMENT: "An order whose fulfilment is"}[state]
        super().__init__(f"{subject} {label(state, current)} cannot become "
                         f"{label(state, wanted)}.", "illegal_transition")


def can_move(state: str, current: str, wanted: str) -> bool:
    return wanted in TRANSITIONS[state][current]


def check_move(state: str, current: str, wanted: str) -> None:
    """The one place a move is checked."""
    if not can_move(state, current, wanted):
        raise IllegalTransition(current, wanted, state)


def payment_after_refunds(*, total, refunded_total) -> str:
    """The payment state once no extra money is held: by how much was refunded."""
    if refunded_total <= 0:
        return P.PAID
    return P.REFUNDED if refunded_total >= total else P.PARTIALLY_REFUNDED


def fulfilment_of(*, shipments: int, delivered: int, left_to_ship: int) -> str:
    """The fulfilment state the goods are in: ``shipments`` made, ``delivered`` of them
    arrived, ``left_to_ship`` units still owed (ordered, not shipped, not refunded)."""
    if shipments == 0:
        return F.UNFULFILLED
    if delivered == shipments and left_to_ship == 0:
        return F.DELIVERED
    if delivered:
        return F.PARTIALLY_DELIVERED
    return F.SHIPPED if left_to_ship == 0 else F.PARTIALLY_SHIPPED


def overall_status(*, payment: str, fulfilment: str, cancelled: bool, left_to_ship: int) -> str:
    """The overall state, from the two machines and cancellation (the one rule)."""
    if cancelled:
        return S.CANCELLED
    if payment == P.REFUNDED:
        return S.COMPLETED  # everything paid went back: nothing more ships
    goods_done = fulfilment == F.DELIVERED or (
        fulfilment == F.UNFULFILLED and left_to_ship == 0)  # every unit refunded unshipped
    if goods_done and payment in {P.PAID, P.PARTIALLY_REFUNDED}:
        return S.COMPLETED
    return S.OPEN


def refund_due(*, status: str, payment: str) -> bool:
    """Money the store holds and must give back: a cancelled order's, or a second payment."""
    return payment == P.OVERPAID or (status == S.CANCELLED and payment in MONEY_HELD)


def is_purchased(*, status: str, payment: str, fulfilment: str) -> bool:
    """Counts as bought (verified purchase, sales): not cancelled, not refunded in full, and
    paid or being fulfilled (a cash-on-delivery order once it ships)."""
    return (status != S.CANCELLED and payment != P.REFUNDED
            and (payment in MONEY_HELD or fulfilment != F.UNFULFILLED))
