"""Checkout under real concurrency on PostgreSQL: threads, each with its own connection and
transactions, through the API as storefronts call it.

- 200 buyers racing for 50 units end with exactly 50 orders and none available; no deadlock, no
  500;
- a coupon limited to one use is redeemed once;
- two (ten) requests with the same Idempotency-Key make one order;
- ten checkouts of one cart, each with its own key, make one order: the cart is locked with its
  lines in one query, and those that waited read it ordered.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.test import Client

from backoffice.catalog.models import Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart
from backoffice.inventory.models import MovementReason, Stock, StockMovement, Warehouse
from backoffice.inventory.services import adjust_stock
from backoffice.orders.models import Allocation, Order
from backoffice.plugin_host.services import activate_plugins
from backoffice.promotions.models import Coupon, CouponRedemption

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ADDRESS = {"first_name": "Amina", "line1": "Moi Avenue 1", "city": "Nairobi", "country": "KE"}
THREADS = 32


@pytest.fixture
def hot_sku():
    # Transactional tests empty the tables after each test, the migration's warehouse too.
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    activate_plugins(["flat_rate_shipping"])
    product = Product.objects.create(name="Limited sneaker", slug="sneaker")
    variant = Variant.objects.create(product=product, sku="HOT", name="", price="100.00")
    # 50 units over two warehouses: allocation may take from either.
    adjust_stock(variant_id=variant.pk, quantity_change=30)
    second = Warehouse.objects.create(code="mombasa", name="Mombasa")
    adjust_stock(variant_id=variant.pk, quantity_change=20, warehouse_id=second.pk)
    return variant


def _carts(count: int, quantity: int = 1) -> list[str]:
    tokens = []
    for _ in range(count):
        cart = Cart.objects.create()
        carts.add_to_cart(cart=cart, sku="HOT", quantity=quantity)
        tokens.append(str(cart.token))
    return tokens


def _race(calls: list[dict]) -> list[tuple[int, dict]]:
    """POST /checkout for every call at once (as far as THREADS allow); (status, body) each."""
    start = threading.Barrier(min(THREADS, len(calls)))

    def one(call: dict) -> tuple[int, dict]:
        try:
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait(timeout=10)
            response = Client().post(
                "/api/v1/checkout",
                {"shipping_method": "flat_rate", "shipping_address": ADDRESS,
                 "email": "buyer@example.com", **call.get("body", {})},
                content_type="application/json", HTTP_X_CART_TOKEN=call["token"],
                HTTP_IDEMPOTENCY_KEY=call.get("key") or str(uuid.uuid4()),
            )
            return response.status_code, response.json()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(one, calls))


def test_200_buyers_racing_for_50_units_make_exactly_50_orders(hot_sku):
    assert connection.vendor == "postgresql"
    results = _race([{"token": token} for token in _carts(200)])
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 50, 409: 150}, statuses
    refused = [body for status, body in results if status == 409]
    assert {body["code"] for body in refused} == {"insufficient_stock"}
    assert Order.objects.count() == 50
    rows = list(Stock.objects.filter(variant=hot_sku))
    assert sum(s.quantity for s in rows) == 50
    assert sum(s.quantity_allocated for s in rows) == 50, "nothing left, nothing oversold"
    assert sum(Allocation.objects.values_list("quantity", flat=True)) == 50
    assert StockMovement.objects.filter(reason=MovementReason.ALLOCATION).count() >= 50


def test_a_coupon_limited_to_one_use_is_redeemed_once_under_a_race(hot_sku):
    Coupon.objects.create(code="FIRST", kind="percentage", value=50, usage_limit=1)
    results = _race([{"token": t, "body": {"coupon_code": "first"}} for t in _carts(20)])
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 422: 19}, statuses
    assert {body["code"] for status, body in results if status == 422} == {"coupon_used_up"}
    assert Coupon.objects.get().times_used == 1
    assert CouponRedemption.objects.count() == 1
    assert sum(Stock.objects.values_list("quantity_allocated", flat=True)) == 1, \
        "refused checkouts allocated nothing"


def test_requests_with_the_same_key_make_one_order(hot_sku):
    token = _carts(1, quantity=3)[0]
    results = _race([{"token": token, "key": "same-key"} for _ in range(10)])
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 200: 9}, statuses
    assert len({body["number"] for _, body in results}) == 1
    assert Order.objects.count() == 1
    assert sum(Stock.objects.values_list("quantity_allocated", flat=True)) == 3


def test_one_cart_checked_out_under_different_keys_makes_one_order(hot_sku):
    token = _carts(1, quantity=3)[0]
    results = _race([{"token": token} for _ in range(10)])
    statuses = Counter(status for status, _ in results)
    assert statuses[201] == 1, results
    refused = [body for status, body in results if status != 201]
    assert len(refused) == 9 and all(400 <= status < 500 for status, _ in results
                                     if status != 201), results
    # Those that waited for the lock read the cart as the first one committed it: ordered.
    assert {body["code"] for body in refused} == {"cart_closed"}, refused
    assert Order.objects.count() == 1
    assert sum(Stock.objects.values_list("quantity_allocated", flat=True)) == 3
    assert Allocation.objects.get().quantity == 3
