"""Reads of orders for people: the numbers a merchant checks every morning."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from backoffice.money import MONEY_FIELD_KWARGS, quantize
from backoffice.orders.models import Order
from backoffice.orders.status import PURCHASED_STATUSES, OrderStatus


@dataclass(frozen=True)
class MorningNumbers:
    orders_today: int
    sales_today: Decimal
    sales_last_7_days: Decimal
    to_fulfil: int
    awaiting_payment: int


def morning_numbers(now=None) -> MorningNumbers:
    """Today's orders and sales (paid or being fulfilled, refunds taken off), the last seven
    days' sales, orders to fulfil and orders awaiting payment: one aggregate query."""
    now = timezone.localtime(now or timezone.now())
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = today - timedelta(days=6)
    bought = Q(status__in=PURCHASED_STATUSES)
    money = DecimalField(**MONEY_FIELD_KWARGS)
    net = F("total") - F("refunded_total")
    numbers = Order.objects.filter(
        Q(created_at__gte=week) | Q(status__in=[OrderStatus.PAID, OrderStatus.PROCESSING,
                                                OrderStatus.PENDING_PAYMENT])
    ).aggregate(
        orders_today=Count("pk", filter=Q(created_at__gte=today) & ~Q(
            status=OrderStatus.CANCELLED)),
        sales_today=Coalesce(Sum(net, filter=bought & Q(created_at__gte=today),
                                 output_field=money), Decimal("0"), output_field=money),
        sales_week=Coalesce(Sum(net, filter=bought & Q(created_at__gte=week),
                                output_field=money), Decimal("0"), output_field=money),
        to_fulfil=Count("pk", filter=Q(status__in=[OrderStatus.PAID, OrderStatus.PROCESSING])),
        awaiting=Count("pk", filter=Q(status=OrderStatus.PENDING_PAYMENT)),
    )
    return MorningNumbers(
        orders_today=numbers["orders_today"], sales_today=quantize(numbers["sales_today"]),
        sales_last_7_days=quantize(numbers["sales_week"]), to_fulfil=numbers["to_fulfil"],
        awaiting_payment=numbers["awaiting"],
    )
