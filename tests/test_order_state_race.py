"""A customer's cancel racing a payment, on PostgreSQL, with real transactions: threads, each
with its own connection, two per order released together by a barrier.

Each way an order gets paid races the customer's cancel (the account's and the guest's by-token
endpoint, alternately), 50 orders each:

- the integration API (``POST /integrations/orders/{n}/status {"status": "paid"}``);
- staff's manual mark-paid (``payments.record_manual_payment``, the admin's service);
- a provider's webhook processed by the job (``payments.process_event``, ``apply_status``).

Whichever takes the order's row lock first decides: a cancel that comes second finds the order
paid and is refused (409); a payment that comes second is refused when staff or an integration
mark it (409, nothing recorded), and when it is a provider's money it is kept on the cancelled
order, a refund due, with a note for staff. Never: an order cancelled by its customer with money
taken and no refund flagged; never a deadlock, never a 500.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import F
from django.test import Client
from django.utils import timezone

from backoffice.catalog.models import Product, Variant
from backoffice.customers.services import start_session
from backoffice.integrations.services import create_api_key
from backoffice.inventory.models import Stock, Warehouse
from backoffice.inventory.services import Actor, adjust_stock
from backoffice.orders.models import Allocation, Order, OrderEvent, OrderLine
from backoffice.orders.status import MONEY_HELD, OrderStatus, PaymentStatus
from backoffice.payments import services as payments
from backoffice.payments.models import Payment, PaymentEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ORDERS_PER_WAY = 50
PAIRS_AT_ONCE = 8
TOTAL = Decimal("305.00")


@pytest.fixture
def store(django_user_model):
    # Transactional tests empty the tables after each test, the migration's warehouse too.
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    variant = Variant.objects.create(
        product=Product.objects.create(name="Mug", slug="mug"), sku="MUG", price="300.00")
    adjust_stock(variant_id=variant.pk, quantity_change=1000)
    user = django_user_model.objects.create_user("amina@example.com", "amina@example.com",
                                                 "pw-123-long-enough")
    return {
        "variant": variant,
        "stock": Stock.objects.get(variant=variant),
        "user": user,
        "bearer": f"Bearer {start_session(user).access_token}",
        "api_key": create_api_key(name="ERP", scopes=["orders:read", "orders:write"])[1],
    }


def _orders(store, count: int, first_number: int) -> list[Order]:
    """Unpaid orders of one mug each, the stock allocated, half of them the customer's."""
    placed = Order.objects.bulk_create([
        Order(number=str(first_number + i), user=store["user"] if i % 2 == 0 else None,
              email="amina@example.com", currency="USD", subtotal=Decimal("300.00"),
              shipping_total=Decimal("5.00"), total=TOTAL, shipping_method_code="flat_rate",
              shipping_method_name="Standard", shipping_address={}, billing_address={},
              payment_method="stripe",
              payment_due_at=timezone.now() + timedelta(hours=1))
        for i in range(count)
    ])
    placed = list(Order.objects.filter(number__in=[o.number for o in placed]).order_by("pk"))
    lines = OrderLine.objects.bulk_create([
        OrderLine(order=order, variant=store["variant"], product_name="Mug", sku="MUG",
                  unit_price=Decimal("300.00"), quantity=1, total=Decimal("300.00"))
        for order in placed
    ])
    Allocation.objects.bulk_create([Allocation(line=line, stock=store["stock"], quantity=1)
                                    for line in lines])
    Stock.objects.filter(pk=store["stock"].pk).update(
        quantity_allocated=F("quantity_allocated") + count)
    return placed


def _cancel(store, order: Order) -> tuple[str, int]:
    """The customer cancels: with their account, or as a guest by the order's token."""
    if order.user_id:
        response = Client().post(f"/api/v1/orders/{order.number}/cancel",
                                 HTTP_AUTHORIZATION=store["bearer"])
    else:
        response = Client().post(f"/api/v1/orders/by-token/{order.token}/cancel")
    return "cancel", response.status_code


def _pay_by_integration(store, order: Order) -> tuple[str, int]:
    response = Client().post(f"/api/v1/integrations/orders/{order.number}/status",
                             {"status": "paid", "note": "paybill QK12"},
                             content_type="application/json", HTTP_X_API_KEY=store["api_key"])
    return "pay", response.status_code


def _pay_by_staff(store, order: Order) -> tuple[str, int]:
    try:
        payments.record_manual_payment(order.pk, actor=Actor(label="clerk"))
    except payments.orders.OrderError:
        return "pay", 409
    return "pay", 200


def _pay_by_webhook(store, order: Order) -> tuple[str, int]:
    event = order.race_event  # stored by the webhook endpoint before the race
    outcome = payments.process_event(event)
    return "pay", 500 if outcome == "error" else 200


def _stored_webhooks(orders: list[Order]) -> None:
    """A started Stripe payment per order, and the provider's verified "succeeded" for it,
    stored as the webhook endpoint stores it; the job processes it during the race."""
    for order in orders:
        reference = f"cs_race_{order.pk}"
        Payment.objects.create(order=order, provider="stripe", amount=TOTAL, currency="USD",
                               idempotency_key=f"pay-{uuid.uuid4().hex}",
                               provider_reference=reference)
        order.race_event = PaymentEvent.objects.create(
            provider="stripe", event_id=f"evt_{reference}", source=PaymentEvent.Source.WEBHOOK,
            verified=True, claims={"status": "succeeded", "amount": str(TOTAL), "currency": "usd",
                                   "provider_reference": reference,
                                   "provider_payment_id": f"pi_{order.pk}"}).pk


def _race(store, orders: list[Order], pay) -> list[tuple[str, int | str]]:
    """For each order, its cancel and its payment at the same moment; what each answered
    (an exception's text instead of a status)."""

    def pair(order: Order) -> list[tuple[str, int | str]]:
        start = threading.Barrier(2)

        def side(call):
            try:
                start.wait(timeout=10)
                return call(store, order)
            except Exception as exc:  # noqa: BLE001 - a deadlock, a 500: counted as failures
                return call.__name__, f"{type(exc).__name__}: {exc}"
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=2) as both:
            return list(both.map(side, [_cancel, pay]))

    with ThreadPoolExecutor(max_workers=PAIRS_AT_ONCE) as pool:
        return [answer for answers in pool.map(pair, orders) for answer in answers]


def _check(orders: list[Order], answers, *, money_is_a_fact: bool) -> Counter:
    """Nothing failed; a cancelled order holding money is flagged; money is never lost."""
    failures = [a for a in answers if not isinstance(a[1], int) or a[1] >= 500]
    assert failures == [], failures[:5]
    assert all(status in {200, 409} for _, status in answers), Counter(answers)
    outcomes = Counter()
    for order in Order.objects.filter(pk__in=[o.pk for o in orders]):
        took_money = Payment.objects.filter(order=order, status="succeeded").exists()
        held = sum(Allocation.objects.filter(line__order=order).values_list("quantity",
                                                                              flat=True))
        cancelled = order.status == OrderStatus.CANCELLED
        if cancelled:
            assert held == 0, f"#{order.number}: cancelled, its stock still held"
            by_customer = order.events.filter(kind="status", to_status="cancelled",
                                              note="Cancelled by the customer.").exists()
            assert by_customer, f"#{order.number}: cancelled by someone else"
        else:
            assert order.payment_status == PaymentStatus.PAID and held == 1, order.number
        if took_money:
            # Money received is never silently lost: it is on the order.
            assert order.payment_status in MONEY_HELD, f"#{order.number}: money lost"
        if cancelled and order.payment_status in MONEY_HELD:
            assert order.refund_due, f"#{order.number}: cancelled and paid, no refund flagged"
            assert order.events.filter(kind=OrderEvent.Kind.PAYMENT,
                                       note__contains="refund").exists(), order.number
            assert money_is_a_fact, f"#{order.number}: staff marked a cancelled order paid"
            outcomes["cancelled first, money kept for a refund"] += 1
        elif cancelled:
            outcomes["cancelled first, payment refused"] += 1
        else:
            outcomes["paid first, cancel refused"] += 1
    refused_cancels = sum(1 for kind, status in answers if kind == "cancel" and status == 409)
    assert refused_cancels == outcomes["paid first, cancel refused"]
    return outcomes


WAYS = {
    "integration API": (_pay_by_integration, False),
    "manual mark-paid": (_pay_by_staff, False),
    "webhook processed by the job": (_pay_by_webhook, True),
}


def test_a_customer_cancel_racing_each_way_of_paying_never_leaves_money_unflagged(store):
    assert connection.vendor == "postgresql"
    started = time.monotonic()
    seen = {}
    for index, (way, (pay, money_is_a_fact)) in enumerate(WAYS.items()):
        orders = _orders(store, ORDERS_PER_WAY, 30000 + 1000 * index)
        if pay is _pay_by_webhook:
            _stored_webhooks(orders)
        answers = _race(store, orders, pay)
        seen[way] = _check(orders, answers, money_is_a_fact=money_is_a_fact)
        assert sum(seen[way].values()) == ORDERS_PER_WAY, (way, seen[way])
    # Stock: 150 orders, one mug each; what is still allocated is exactly the paid ones'.
    stock = Stock.objects.get(pk=store["stock"].pk)
    paid_orders = Order.objects.exclude(status=OrderStatus.CANCELLED).count()
    assert (stock.quantity, stock.quantity_allocated) == (1000, paid_orders)
    print("\n".join(f"{way}: {dict(outcome)}" for way, outcome in seen.items()))
    assert time.monotonic() - started < 60, "the race should take seconds"
