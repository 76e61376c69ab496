"""Reads of orders for people: the lists people work through and the numbers a merchant checks
every morning. The conditions are written once here and used by the admin's filters and badge,
the dashboard, the integration API and reviews."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, Exists, F, OuterRef, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from backoffice.money import MONEY_FIELD_KWARGS, quantize
from backoffice.orders.models import Order, OrderLine
from backoffice.orders.status import (
    MAY_SHIP_MORE,
    MONEY_HELD,
    SHIPPABLE_PAYMENT,
    FulfilmentStatus,
    OrderStatus,
    PaymentStatus,
)


def units_left_to_ship_q(prefix: str = "") -> Q:
    """A line of the order still has units owed (ordered, not shipped, not refunded)."""
    left = OrderLine.objects.filter(
        order=OuterRef(f"{prefix}pk"),
        quantity__gt=F("quantity_shipped") + F("quantity_refunded"),
    )
    return Q(Exists(left))


def to_fulfil_q() -> Q:
    """To fulfil: open, paid (or paid on delivery and not paid yet), and something left to ship
    (a part-shipped order whose rest was refunded is not)."""
    return (
        Q(status=OrderStatus.OPEN, fulfilment_status__in=MAY_SHIP_MORE)
        & (Q(payment_status__in=SHIPPABLE_PAYMENT, refunded_total__lt=F("total"))
           | Q(payment_status=PaymentStatus.UNPAID, pay_on_delivery=True))
        & units_left_to_ship_q()
    )


def awaiting_payment_q() -> Q:
    """Open and unpaid (holding stock until paid or expired; cash on delivery until paid)."""
    return Q(status=OrderStatus.OPEN, payment_status=PaymentStatus.UNPAID)


def refund_due_q(prefix: str = "") -> Q:
    """The store holds money it must give back: a cancelled order's, or a second payment
    (``status.refund_due``)."""
    return (Q(**{f"{prefix}payment_status": PaymentStatus.OVERPAID})
            | Q(**{f"{prefix}status": OrderStatus.CANCELLED,
                   f"{prefix}payment_status__in": MONEY_HELD}))


# A shipment not delivered this many days after it left is worth a look.
LATE_DELIVERY_DAYS = 7


def payment_failed_q() -> Q:
    """Awaiting payment, and the customer's attempt failed: a failed payment and none under way
    (the customer may need a hand, or another way to pay)."""
    from backoffice.payments.models import Payment
    from backoffice.payments.status import OPEN_STATUSES
    from backoffice.payments.status import PaymentStatus as Attempt

    return (
        awaiting_payment_q()
        & Q(Exists(Payment.objects.filter(order=OuterRef("pk"), status=Attempt.FAILED)))
        & ~Q(Exists(Payment.objects.filter(order=OuterRef("pk"), status__in=OPEN_STATUSES)))
    )


def late_delivery_q(now=None) -> Q:
    """Open, and a shipment left more than ``LATE_DELIVERY_DAYS`` days ago without being
    delivered: a parcel to ask the carrier about."""
    from backoffice.orders.models import Shipment

    since = (now or timezone.now()) - timedelta(days=LATE_DELIVERY_DAYS)
    late = Shipment.objects.filter(order=OuterRef("pk"), delivered_at__isnull=True,
                                   shipped_at__lt=since)
    return Q(status=OrderStatus.OPEN, fulfilment_status__in=[
        FulfilmentStatus.SHIPPED, FulfilmentStatus.PARTIALLY_SHIPPED,
        FulfilmentStatus.PARTIALLY_DELIVERED]) & Q(Exists(late))


def purchased_q(prefix: str = "") -> Q:
    """Counts as bought (``status.is_purchased``): not cancelled, not refunded in full, paid or
    being fulfilled."""
    return (
        ~Q(**{f"{prefix}status": OrderStatus.CANCELLED})
        & ~Q(**{f"{prefix}payment_status": PaymentStatus.REFUNDED})
        & (Q(**{f"{prefix}payment_status__in": MONEY_HELD})
           | ~Q(**{f"{prefix}fulfilment_status": FulfilmentStatus.UNFULFILLED}))
    )


@dataclass(frozen=True)
class MorningNumbers:
    orders_today: int
    sales_today: Decimal
    sales_last_7_days: Decimal
    to_fulfil: int
    awaiting_payment: int
    refunds_due: int = 0


def morning_numbers(now=None) -> MorningNumbers:
    """Today's orders and sales (bought: paid or being fulfilled, refunds taken off), the last
    seven days' sales, orders to fulfil, orders awaiting payment and refunds due: one aggregate
    query."""
    now = timezone.localtime(now or timezone.now())
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = today - timedelta(days=6)
    bought = purchased_q()
    money = DecimalField(**MONEY_FIELD_KWARGS)
    net = F("total") - F("refunded_total")
    numbers = Order.objects.filter(
        Q(created_at__gte=week) | Q(status=OrderStatus.OPEN) | refund_due_q()
    ).aggregate(
        orders_today=Count("pk", filter=Q(created_at__gte=today) & ~Q(
            status=OrderStatus.CANCELLED)),
        sales_today=Coalesce(Sum(net, filter=bought & Q(created_at__gte=today),
                                 output_field=money), Decimal("0"), output_field=money),
        sales_week=Coalesce(Sum(net, filter=bought & Q(created_at__gte=week),
                                output_field=money), Decimal("0"), output_field=money),
        to_fulfil=Count("pk", filter=to_fulfil_q()),
        awaiting=Count("pk", filter=awaiting_payment_q()),
        refunds_due=Count("pk", filter=refund_due_q()),
    )
    return MorningNumbers(
        orders_today=numbers["orders_today"], sales_today=quantize(numbers["sales_today"]),
        sales_last_7_days=quantize(numbers["sales_week"]), to_fulfil=numbers["to_fulfil"],
        awaiting_payment=numbers["awaiting"], refunds_due=numbers["refunds_due"],
    )


@dataclass(frozen=True)
class AttentionCounts:
    """The orders that need someone now (the dashboard's "needs you" row)."""

    to_fulfil: int
    awaiting_payment: int
    payment_failed: int
    late_deliveries: int
    refunds_due: int


def attention_counts(now=None) -> AttentionCounts:
    """Orders to fulfil, awaiting payment, whose payment failed, whose delivery is late, and
    refunds due: one aggregate query over the open orders and those with a refund due (read by
    the status index and a partial index of the refunds due), never the whole table."""
    numbers = Order.objects.filter(Q(status=OrderStatus.OPEN) | refund_due_q()).aggregate(
        to_fulfil=Count("pk", filter=to_fulfil_q()),
        awaiting=Count("pk", filter=awaiting_payment_q()),
        failed=Count("pk", filter=payment_failed_q()),
        late=Count("pk", filter=late_delivery_q(now)),
        refunds_due=Count("pk", filter=refund_due_q()),
    )
    return AttentionCounts(
        to_fulfil=numbers["to_fulfil"], awaiting_payment=numbers["awaiting"],
        payment_failed=numbers["failed"], late_deliveries=numbers["late"],
        refunds_due=numbers["refunds_due"],
    )
