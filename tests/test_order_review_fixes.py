"""What a review of the order states found, each pinned by a test: orders accepted unpaid keep
shipping after the migration, a refund locks stock in key order, an order refunded in full and
paid again does not ship."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone

from backoffice.catalog.models import Category, Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart
from backoffice.checkout.services import CheckoutRequest, place_order
from backoffice.inventory.services import adjust_stock
from backoffice.orders import services as orders
from backoffice.orders.models import Order
from backoffice.orders.status import OrderStatus
from backoffice.plugin_host.services import activate_plugins

pytestmark = pytest.mark.django_db

ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "+254700000001"}


@pytest.fixture(autouse=True)
def _plugins():
    activate_plugins(["flat_rate_shipping", "manual_payment"])


@pytest.fixture
def shelf():
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    tee = Variant.objects.create(
        product=Product.objects.create(name="Tee", slug="tee", category=clothing),
        sku="TEE", name="M", price="100.00")
    mug = Variant.objects.create(product=Product.objects.create(name="Mug", slug="mug"),
                                 sku="MUG", price="100.00")
    adjust_stock(variant_id=tee.pk, quantity_change=100)
    adjust_stock(variant_id=mug.pk, quantity_change=100)
    return tee, mug


def place(*items, key: str, cod: bool = False) -> Order:
    cart = Cart.objects.create()
    for sku, quantity in items:
        carts.add_to_cart(cart=cart, sku=sku, quantity=quantity)
    order, _ = place_order(cart, CheckoutRequest(
        shipping_address=ADDRESS, shipping_method="flat_rate", email="amina@example.com",
        payment_method="manual" if cod else ""), idempotency_key=key)
    return Order.objects.get(pk=order.pk)


def test_migration_keeps_an_unpaid_order_accepted_for_processing_shippable_and_unexpired(shelf):
    """Old machine: pending_payment -> processing was "accepted unpaid" (any order, e.g. a bank
    transfer an ERP moved to processing through the integration API); the old expiry job only
    touched pending_payment. After 0005 such an order (it still has its payment window) is
    unpaid, unfulfilled, *not* pay_on_delivery: it can no longer ship, and the expiry job
    cancels it and releases its stock."""
    migration = importlib.import_module(
        "backoffice.orders.migrations.0005_orders_to_payment_and_fulfilment")
    order = place(("MUG", 1), key="accepted-unpaid")
    assert order.payment_due_at is not None  # a card / bank order: it had a window
    Order.objects.filter(pk=order.pk).update(
        status="processing", payment_status="unpaid", fulfilment_status="unfulfilled",
        payment_due_at=timezone.now() - timedelta(hours=1))  # accepted; window long past

    migration.forwards(django_apps, None)

    moved = Order.objects.get(pk=order.pk)
    # It was being fulfilled: it must still be shippable...
    assert orders.refusal(moved, "ship") == ""
    # ...and the expiry job must leave it alone (the old one did).
    orders.expire_unpaid_orders()
    assert Order.objects.get(pk=order.pk).status != OrderStatus.CANCELLED


def test_migration_moved_unpaid_processing_order_is_cancelled_by_the_expiry_job(shelf):
    """The same order as above: the minute job cancels it (old code never did)."""
    migration = importlib.import_module(
        "backoffice.orders.migrations.0005_orders_to_payment_and_fulfilment")
    order = place(("MUG", 1), key="accepted-unpaid-2")
    Order.objects.filter(pk=order.pk).update(
        status="processing", payment_status="unpaid", fulfilment_status="unfulfilled",
        payment_due_at=timezone.now() - timedelta(hours=1))
    migration.forwards(django_apps, None)
    assert orders.expire_unpaid_orders() == 0
    assert Order.objects.get(pk=order.pk).status != OrderStatus.CANCELLED


# --- Lock order: a refund locks stock rows out of primary-key order -----------------------------

import threading  # noqa: E402
import time  # noqa: E402

from django.db import connections, transaction  # noqa: E402

from backoffice.inventory import services as inventory  # noqa: E402
from backoffice.inventory.models import Stock, Warehouse  # noqa: E402


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_refund_with_restock_and_release_does_not_deadlock_with_checkout(monkeypatch):
    """``_settle_refunded_lines`` releases the unshipped lines' stock (one batch of row locks),
    then restocks the shipped ones (a second batch), then ``_release_all`` (a third): rows are
    not locked in primary-key order across the transaction. A checkout (``allocate``, rows in
    pk order) of the same two variants in between: PostgreSQL finds a deadlock."""
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    activate_plugins(["flat_rate_shipping", "manual_payment"])
    tee = Variant.objects.create(product=Product.objects.create(name="Tee", slug="tee"),
                                 sku="TEE", price="100.00")
    mug = Variant.objects.create(product=Product.objects.create(name="Mug", slug="mug"),
                                 sku="MUG", price="100.00")
    adjust_stock(variant_id=tee.pk, quantity_change=10)
    adjust_stock(variant_id=mug.pk, quantity_change=10)
    assert Stock.objects.get(variant=tee).pk < Stock.objects.get(variant=mug).pk
    order = place(("TEE", 1), ("MUG", 1), key="deadlock")
    orders.mark_paid(order)
    tee_line, mug_line = order.lines.get(sku="TEE"), order.lines.get(sku="MUG")
    orders.create_shipment(order, orders.ShipmentRequest(lines={tee_line.pk: 1}))

    released, go = threading.Event(), threading.Event()
    real_restock = inventory.restock

    def slow_restock(*args, **kwargs):
        released.set()  # the MUG row (higher pk) is locked by the release
        go.wait(10)
        return real_restock(*args, **kwargs)  # now the TEE row (lower pk)

    monkeypatch.setattr(inventory, "restock", slow_restock)
    errors = []

    def refund():
        try:
            orders.record_refund(order.pk, orders.RefundRequest(
                lines={tee_line.pk: 1, mug_line.pk: 1}, restock=True))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    def checkout():
        try:
            released.wait(10)
            with transaction.atomic():
                inventory.allocate({tee.pk: 1, mug.pk: 1}, reference="cart")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=refund), threading.Thread(target=checkout)]
    for t in threads:
        t.start()
    released.wait(10)
    time.sleep(1.0)  # the checkout holds TEE and waits for MUG
    go.set()
    for t in threads:
        t.join(30)
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors]


def test_an_order_refunded_in_full_then_paid_again_is_not_put_back_to_fulfil(shelf):
    """Refunded in full (amount only) before shipping: its stock is released, it is completed.
    A late second payment (a stale checkout session) makes it *overpaid*: it reopens and lands
    in "to fulfil" with every unit shippable (taken off the shelf without an allocation),
    although the money is a refund due."""
    from backoffice.orders.selectors import to_fulfil_q

    order = place(("MUG", 1), key="refunded-then-paid")
    orders.mark_paid(order)
    orders.record_refund(order, orders.RefundRequest())
    assert Order.objects.get(pk=order.pk).status == OrderStatus.COMPLETED
    orders.payment_received(order)
    order = Order.objects.get(pk=order.pk)
    assert order.refund_due
    assert not Order.objects.filter(to_fulfil_q(), pk=order.pk).exists()
    assert orders.refusal(order, "ship") != ""


def test_paying_the_rest_by_card_keeps_a_part_shipped_cash_on_delivery_order_shippable(shelf):
    """Goods went out on cash-on-delivery terms; the customer then starts a card payment for the
    balance. The rest still ships on those terms, and no payment window starts."""
    from types import SimpleNamespace

    from backoffice.payments import services as payments

    order = place(("MUG", 2), key="cod-then-card", cod=True)
    assert order.pay_on_delivery and order.payment_due_at is None
    line = order.lines.get()
    orders.create_shipment(order, orders.ShipmentRequest(lines={line.pk: 1}))
    order = Order.objects.get(pk=order.pk)
    card = SimpleNamespace(unpaid_orders_expire=True)
    payments._switch_method(order, "stripe", card)
    order = Order.objects.get(pk=order.pk)
    assert order.payment_method == "stripe"
    assert order.pay_on_delivery and order.payment_due_at is None
    assert orders.refusal(order, "ship") == ""

    # Before anything ships, switching to a card does start the payment window.
    fresh = place(("MUG", 1), key="cod-switched-early", cod=True)
    payments._switch_method(fresh, "stripe", card)
    fresh = Order.objects.get(pk=fresh.pk)
    assert not fresh.pay_on_delivery and fresh.payment_due_at is not None
