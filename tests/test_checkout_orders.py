"""Checkout and orders through their services: allocation, idempotency, coupons, the status
machine, cancelling, expiry, shipping and refunds, with stock checked after every step."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from backoffice.catalog.models import Category, Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart, CartStatus
from backoffice.checkout.services import CheckoutError, CheckoutRequest, place_order, quote
from backoffice.hookspecs import hookimpl
from backoffice.inventory.models import MovementReason, Stock, StockMovement, Warehouse
from backoffice.inventory.services import adjust_stock
from backoffice.orders import services as orders
from backoffice.orders.models import Order, OrderEvent
from backoffice.orders.status import (
    CHOICES,
    TRANSITIONS,
    FulfilmentStatus,
    IllegalTransition,
    OrderStatus,
    PaymentStatus,
)
from backoffice.plugin_host.models import PluginEvent
from backoffice.plugin_host.services import activate_plugins
from backoffice.promotions.models import Coupon, CouponRedemption

pytestmark = pytest.mark.django_db

ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "+254700000001"}


class Listener:
    """A plugin that hears every order event, so they are recorded in the outbox."""

    hookspec_version = ">=1.0,<2"

    @hookimpl
    def order_placed(self, order_id):
        pass

    @hookimpl
    def order_status_changed(self, order_id):
        pass

    @hookimpl
    def shipment_created(self, shipment_id):
        pass


@pytest.fixture(autouse=True)
def _plugins(register_plugin):
    activate_plugins(["flat_rate_shipping", "manual_payment"])
    register_plugin(Listener(), "order_listener")


@pytest.fixture
def shelf():
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    product = Product.objects.create(name="Tee", slug="tee", category=clothing)
    small = Variant.objects.create(product=product, sku="TEE-S", name="S", price="800.00")
    mug_product = Product.objects.create(name="Mug", slug="mug")
    mug = Variant.objects.create(product=mug_product, sku="MUG", name="", price="300.00")
    adjust_stock(variant_id=small.pk, quantity_change=3)
    second = Warehouse.objects.create(code="mombasa", name="Mombasa")
    adjust_stock(variant_id=small.pk, quantity_change=2, warehouse_id=second.pk)
    adjust_stock(variant_id=mug.pk, quantity_change=10)
    return small, mug


def cart_with(*items) -> Cart:
    cart = Cart.objects.create()
    for sku, quantity in items:
        carts.add_to_cart(cart=cart, sku=sku, quantity=quantity)
    return cart


def request(**extra) -> CheckoutRequest:
    return CheckoutRequest(shipping_address=ADDRESS, shipping_method="flat_rate",
                           email="amina@example.com", **extra)


def levels(variant) -> list[tuple[str, int, int]]:
    return sorted(Stock.objects.filter(variant=variant)
                  .values_list("warehouse__code", "quantity", "quantity_allocated"))


def test_checkout_snapshots_the_cart_and_allocates_over_warehouses(shelf):
    small, mug = shelf
    cart = cart_with(("TEE-S", 4), ("MUG", 1))
    order, created = place_order(cart, request(), idempotency_key="k1")
    assert created
    order.refresh_from_db()
    assert order.number == str(10000 + order.pk)
    assert (order.subtotal, order.shipping_total, order.total) == (
        Decimal("3500.00"), Decimal("5.00"), Decimal("3505.00"))
    assert order.shipping_address["city"] == "Nairobi"
    assert order.billing_address == order.shipping_address
    assert [(ln.sku, ln.product_name, ln.quantity, ln.unit_price) for ln in order.lines.all()] == [
        ("TEE-S", "Tee", 4, Decimal("800.00")), ("MUG", "Mug", 1, Decimal("300.00"))]
    # The default warehouse first, then the one with most available.
    assert levels(small) == [("main", 3, 3), ("mombasa", 2, 1)]
    assert StockMovement.objects.filter(reason=MovementReason.ALLOCATION).count() == 3
    assert Cart.objects.get(pk=cart.pk).status == CartStatus.ORDERED
    assert order.payment_due_at is not None and not order.pay_on_delivery
    assert (order.status, order.payment_status, order.fulfilment_status) == (
        OrderStatus.OPEN, PaymentStatus.UNPAID, FulfilmentStatus.UNFULFILLED)
    assert OrderEvent.objects.get(order=order).kind == OrderEvent.Kind.PLACED
    assert PluginEvent.objects.filter(hook="order_placed").exists()
    # Renaming the product later does not rewrite the order.
    Product.objects.filter(pk=small.product_id).update(name="Renamed")
    assert order.lines.get(sku="TEE-S").product_name == "Tee"


def test_the_same_idempotency_key_returns_the_same_order(shelf):
    cart = cart_with(("MUG", 2))
    first, created = place_order(cart, request(), idempotency_key="same")
    again, created_again = place_order(cart, request(), idempotency_key="same")
    assert (created, created_again) == (True, False)
    assert first.pk == again.pk and Order.objects.count() == 1
    assert levels(shelf[1]) == [("main", 10, 2)]


def test_a_key_used_by_someone_else_is_refused(shelf):
    place_order(cart_with(("MUG", 1)), request(), idempotency_key="shared")
    with pytest.raises(CheckoutError) as error:
        place_order(cart_with(("MUG", 1)), request(), idempotency_key="shared")
    assert error.value.code == "idempotency_key_reused"


def test_checkout_refuses_with_clear_reasons_and_writes_nothing(shelf):
    small, mug = shelf
    with pytest.raises(CheckoutError) as empty:
        place_order(Cart.objects.create(), request(), idempotency_key="e")
    assert empty.value.code == "empty_cart"

    cart = cart_with(("TEE-S", 5))
    adjust_stock(variant_id=small.pk, quantity_change=-2)  # sold elsewhere meanwhile
    with pytest.raises(CheckoutError) as short:
        place_order(cart, request(), idempotency_key="s")
    assert short.value.code == "insufficient_stock"
    assert short.value.lines == [{"sku": "TEE-S", "available": 3, "requested": 5}]

    cart = cart_with(("MUG", 1))
    Variant.objects.filter(pk=mug.pk).update(price="350.00")
    with pytest.raises(CheckoutError) as changed:
        place_order(cart, request(), idempotency_key="p")
    assert changed.value.code == "price_changed"
    assert changed.value.lines == [
        {"sku": "MUG", "unit_price": "300.00", "current_price": "350.00"}]
    carts.accept_current_prices(cart=cart)
    order, _ = place_order(cart, request(), idempotency_key="p")
    assert order.subtotal == Decimal("350.00")

    with pytest.raises(CheckoutError) as guest:
        place_order(cart_with(("MUG", 1)), CheckoutRequest(
            shipping_address=ADDRESS, shipping_method="flat_rate"), idempotency_key="g")
    assert guest.value.code == "email_required"
    with pytest.raises(CheckoutError) as method:
        place_order(cart_with(("MUG", 1)), CheckoutRequest(
            shipping_address=ADDRESS, shipping_method="drone", email="a@example.com"),
            idempotency_key="m")
    assert method.value.code == "unknown_shipping_method"
    assert Order.objects.count() == 1
    assert levels(small) == [("main", 1, 0), ("mombasa", 2, 0)]


def test_coupons_percentage_restricted_to_a_category_and_its_limits(shelf):
    coupon = Coupon.objects.create(code="Karibu10", kind="percentage", value=10, usage_limit=1)
    coupon.categories.add(Category.objects.get(slug="clothing"))
    cart = cart_with(("TEE-S", 1), ("MUG", 1))
    preview = quote(cart, request(coupon_code="karibu10"))
    assert preview.discount_total == Decimal("80.00"), "10% of the tee only"
    order, _ = place_order(cart, request(coupon_code="KARIBU10"), idempotency_key="c1")
    assert (order.discount_total, order.total) == (Decimal("80.00"), Decimal("1025.00"))
    assert order.lines.get(sku="TEE-S").discount_amount == Decimal("80.00")
    assert order.lines.get(sku="MUG").discount_amount == Decimal("0.00")
    coupon.refresh_from_db()
    assert coupon.times_used == 1 and CouponRedemption.objects.count() == 1
    with pytest.raises(CheckoutError) as used_up:
        place_order(cart_with(("TEE-S", 1)), request(coupon_code="karibu10"),
                    idempotency_key="c2")
    assert used_up.value.code == "coupon_used_up"
    # Cancelling the unpaid order gives the use back.
    orders.cancel_order(order)
    coupon.refresh_from_db()
    assert coupon.times_used == 0 and not CouponRedemption.objects.exists()


@pytest.mark.parametrize(("changes", "code"), [
    ({"is_active": False}, "coupon_inactive"),
    ({"ends_at": timezone.now() - timedelta(days=1),
      "starts_at": timezone.now() - timedelta(days=2)}, "coupon_expired"),
    ({"starts_at": timezone.now() + timedelta(days=1)}, "coupon_not_started"),
    ({"minimum_subtotal": Decimal("5000")}, "coupon_minimum_not_met"),
])
def test_a_coupon_that_cannot_be_used_says_why(shelf, changes, code):
    Coupon.objects.create(code="SALE", kind="fixed", value=100, **changes)
    with pytest.raises(CheckoutError) as error:
        place_order(cart_with(("MUG", 1)), request(coupon_code="sale"), idempotency_key="x")
    assert error.value.code == code
    assert not Order.objects.exists()


def test_a_fixed_coupon_never_takes_more_than_the_goods_and_counts_per_customer(shelf):
    Coupon.objects.create(code="BIG", kind="fixed", value=1000, usage_limit_per_customer=1)
    order, _ = place_order(cart_with(("MUG", 1)), request(coupon_code="big"), idempotency_key="1")
    assert (order.discount_total, order.total) == (Decimal("300.00"), Decimal("5.00"))
    with pytest.raises(CheckoutError) as again:
        place_order(cart_with(("MUG", 1)), request(coupon_code="big"), idempotency_key="2")
    assert again.value.code == "coupon_already_used"
    with pytest.raises(CheckoutError) as unknown:
        place_order(cart_with(("MUG", 1)), request(coupon_code="nope"), idempotency_key="3")
    assert unknown.value.code == "coupon_unknown"


def test_every_illegal_move_raises_and_changes_nothing(shelf):
    order, _ = place_order(cart_with(("MUG", 1)), request(), idempotency_key="t")
    # Delivered before anything shipped; shipped while unpaid (not cash on delivery); a move
    # nothing does; a refund of an unpaid order.
    for move in (lambda: orders.mark_delivered(order),
                 lambda: orders.create_shipment(order, orders.ShipmentRequest()),
                 lambda: orders.move_to(order, "processing"),
                 lambda: orders.record_refund(order, orders.RefundRequest())):
        with pytest.raises(orders.OrderError):
            move()
    order.refresh_from_db()
    assert (order.status, order.payment_status, order.fulfilment_status) == (
        OrderStatus.OPEN, PaymentStatus.UNPAID, FulfilmentStatus.UNFULFILLED)
    assert order.events.count() == 1
    # Each machine is data: every state has its moves, every move goes to one of its states.
    for state, table in TRANSITIONS.items():
        assert set(table) == set(CHOICES[state].values), state
        assert all(targets <= set(CHOICES[state].values) for targets in table.values())
    assert TRANSITIONS["fulfilment"][FulfilmentStatus.DELIVERED] == frozenset()
    assert TRANSITIONS["order"][OrderStatus.CANCELLED] == frozenset()
    # The one check, with its words.
    from backoffice.orders.status import check_move
    with pytest.raises(IllegalTransition) as undo:
        check_move("fulfilment", "delivered", "shipped")
    assert str(undo.value) == "An order whose fulfilment is delivered cannot become shipped."


def test_pay_ship_in_parts_deliver_with_stock_and_events(shelf):
    small, mug = shelf
    order, _ = place_order(cart_with(("TEE-S", 4), ("MUG", 2)), request(), idempotency_key="f")
    orders.mark_paid(order)
    tee_line = order.lines.get(sku="TEE-S")
    first = orders.create_shipment(order, orders.ShipmentRequest(
        carrier="G4S", tracking_number="G4S-1", lines={tee_line.pk: 4}))
    order.refresh_from_db()
    assert order.fulfilment_status == FulfilmentStatus.PARTIALLY_SHIPPED, "mugs still to ship"
    assert order.payment_status == PaymentStatus.PAID, "a shipment never moves payment"
    assert levels(small) == [("main", 0, 0), ("mombasa", 1, 0)]
    assert first.lines.get().quantity == 4
    orders.create_shipment(order, orders.ShipmentRequest(carrier="G4S", tracking_number="G4S-2"))
    order.refresh_from_db()
    assert (order.status, order.fulfilment_status) == (OrderStatus.OPEN, FulfilmentStatus.SHIPPED)
    assert levels(mug) == [("main", 8, 0)]
    with pytest.raises(orders.OrderError) as nothing:
        orders.create_shipment(order, orders.ShipmentRequest())
    assert str(nothing.value) == "Nothing is left to ship."
    orders.mark_delivered(order)
    order.refresh_from_db()
    assert (order.status, order.payment_status, order.fulfilment_status) == (
        OrderStatus.COMPLETED, PaymentStatus.PAID, FulfilmentStatus.DELIVERED)
    assert not order.shipments.filter(delivered_at__isnull=True).exists()
    moves = list(order.events.filter(kind="status")
                 .values_list("state", "from_status", "to_status"))
    assert moves == [("payment", "unpaid", "paid"),
                     ("fulfilment", "unfulfilled", "partially_shipped"),
                     ("fulfilment", "partially_shipped", "shipped"),
                     ("fulfilment", "shipped", "delivered"),
                     ("order", "open", "completed")]
    told = [e.payload for e in PluginEvent.objects.filter(hook="order_status_changed")
            .order_by("id")]
    assert [(p["state"], p["old_status"], p["new_status"]) for p in told] == moves
    assert told[-1] == {"order_id": order.pk, "order_number": order.number,
                        "state": "order", "old_status": "open", "new_status": "completed",
                        "status": "completed", "payment_status": "paid",
                        "fulfilment_status": "delivered", "reason": "",
                        "customer": {"email": order.email, "phone": "+254700000001",
                                     "name": "Amina Otieno", "language": ""}}
    assert PluginEvent.objects.filter(hook="shipment_created").count() == 2


def test_cancel_releases_stock_and_cannot_follow_a_shipment(shelf):
    small, mug = shelf
    order, _ = place_order(cart_with(("TEE-S", 4)), request(), idempotency_key="c")
    orders.cancel_order(order, note="changed my mind")
    assert levels(small) == [("main", 3, 0), ("mombasa", 2, 0)]
    with pytest.raises(orders.OrderError) as again:
        orders.cancel_order(order)
    assert str(again.value) == "This order is cancelled already."
    shipped, _ = place_order(cart_with(("MUG", 2)), request(), idempotency_key="d")
    orders.mark_paid(shipped)
    orders.create_shipment(shipped, orders.ShipmentRequest(
        lines={shipped.lines.get().pk: 1}))
    with pytest.raises(orders.OrderError) as refused:
        orders.cancel_order(shipped)
    assert str(refused.value) == ("An order can be cancelled only until any of it ships. Part "
                                  "of this one has shipped: it can be refunded instead.")
    assert levels(mug) == [("main", 9, 1)]


def test_unpaid_orders_expire_and_release_stock_cash_on_delivery_does_not(shelf):
    small, mug = shelf
    late, _ = place_order(cart_with(("MUG", 3)), request(), idempotency_key="late")
    cod, _ = place_order(cart_with(("MUG", 2)), request(payment_method="manual"),
                         idempotency_key="cod")
    assert cod.payment_due_at is None and cod.pay_on_delivery
    assert orders.expire_unpaid_orders(timezone.now()) == 0
    assert orders.expire_unpaid_orders(timezone.now() + timedelta(hours=2)) == 1
    late.refresh_from_db()
    assert late.status == OrderStatus.CANCELLED and late.cancelled_at is not None
    assert levels(mug) == [("main", 10, 2)]
    assert late.events.last().actor_label == "payment window expired"


def test_refunds_partial_with_restock_then_full(shelf):
    small, mug = shelf
    order, _ = place_order(cart_with(("MUG", 4)), request(), idempotency_key="r")
    orders.mark_paid(order)
    line = order.lines.get()
    orders.create_shipment(order, orders.ShipmentRequest(lines={line.pk: 2}))
    # Three refunded: the two not shipped are dropped, one shipped comes back to the shelf.
    orders.record_refund(order, orders.RefundRequest(lines={line.pk: 3}, restock=True,
                                                     reason="returned"))
    order.refresh_from_db()
    assert order.payment_status == PaymentStatus.PARTIALLY_REFUNDED
    assert order.fulfilment_status == FulfilmentStatus.PARTIALLY_SHIPPED, "refunds never move it"
    assert order.refunded_total == Decimal("900.00")
    # 10 - 2 shipped + 1 returned; the 2 unshipped refunded mugs gave up their allocation,
    # so nothing is left to ship.
    assert levels(mug) == [("main", 9, 0)]
    assert order.lines.get().quantity_to_ship == 0
    with pytest.raises(orders.OrderError):
        orders.record_refund(order, orders.RefundRequest(amount=Decimal("10000")))
    orders.record_refund(order, orders.RefundRequest())
    order.refresh_from_db()
    assert order.payment_status == PaymentStatus.REFUNDED and order.refunded_total == order.total
    assert order.status == OrderStatus.COMPLETED
    assert order.events.filter(kind="refund").count() == 2


def test_guest_orders_join_the_account_made_with_their_email(shelf, django_user_model):
    order, _ = place_order(cart_with(("MUG", 1)), request(), idempotency_key="guest")
    user = django_user_model.objects.create_user(
        username="amina@example.com", email="Amina@Example.com", password="x" * 12)
    assert orders.attach_guest_orders(user) == 1
    assert Order.objects.get(pk=order.pk).user == user


def test_the_morning_numbers_count_sales_fulfilment_and_unpaid(shelf):
    from backoffice.orders.selectors import morning_numbers

    paid, _ = place_order(cart_with(("MUG", 2)), request(), idempotency_key="a")
    orders.mark_paid(paid)
    place_order(cart_with(("MUG", 1)), request(), idempotency_key="b")
    cancelled, _ = place_order(cart_with(("MUG", 1)), request(), idempotency_key="c")
    orders.cancel_order(cancelled)
    orders.record_refund(paid, orders.RefundRequest(amount=Decimal("100")))
    numbers = morning_numbers()
    assert numbers.orders_today == 2
    assert numbers.sales_today == Decimal("505.00"), "605 paid, 100 refunded"
    assert numbers.sales_last_7_days == Decimal("505.00")
    # The partly refunded order is paid and unshipped: still to fulfil.
    assert (numbers.to_fulfil, numbers.awaiting_payment) == (1, 1)
    assert numbers.refunds_due == 0


def test_the_dashboard_shows_the_morning_numbers(
    shelf, staff_client, django_assert_max_num_queries
):
    paid, _ = place_order(cart_with(("MUG", 2)), request(), idempotency_key="a")
    orders.mark_paid(paid)
    with django_assert_max_num_queries(12):  # the dashboard's budget (DESIGN.md)
        html = staff_client.get("/admin/").content.decode()
    assert "Sales today" in html and "605.00" in html and "To fulfil" in html


def test_a_full_refund_by_amount_gives_the_unshipped_stock_back(shelf):
    small, mug = shelf
    order, _ = place_order(cart_with(("MUG", 2)), request(), idempotency_key="full")
    orders.mark_paid(order)
    assert levels(mug) == [("main", 10, 2)]
    orders.record_refund(order, orders.RefundRequest(amount=order.total))
    order.refresh_from_db()
    assert (order.payment_status, order.status) == (PaymentStatus.REFUNDED, OrderStatus.COMPLETED)
    assert order.fulfilment_status == FulfilmentStatus.UNFULFILLED
    assert levels(mug) == [("main", 10, 0)], "a refunded order must not hold stock forever"


def test_a_partially_refunded_order_is_delivered_only_after_it_ships(shelf):
    small, mug = shelf
    order, _ = place_order(cart_with(("MUG", 3)), request(), idempotency_key="pr")
    orders.mark_paid(order)
    orders.record_refund(order, orders.RefundRequest(amount=Decimal("50.00")))
    order.refresh_from_db()
    assert order.payment_status == PaymentStatus.PARTIALLY_REFUNDED
    for move in (lambda: orders.mark_delivered(order),
                 lambda: orders.move_to(order, FulfilmentStatus.DELIVERED)):
        with pytest.raises(orders.OrderError) as refused:
            move()
        assert str(refused.value) == "Nothing has shipped yet; create a shipment first."
    order.refresh_from_db()
    assert order.fulfilment_status == FulfilmentStatus.UNFULFILLED
    assert levels(mug) == [("main", 10, 3)]
    orders.create_shipment(order, orders.ShipmentRequest(carrier="DHL"))
    orders.mark_delivered(order)
    order.refresh_from_db()
    assert (order.fulfilment_status, order.payment_status, order.status) == (
        FulfilmentStatus.DELIVERED, PaymentStatus.PARTIALLY_REFUNDED, OrderStatus.COMPLETED)
    assert levels(mug) == [("main", 7, 0)]


def test_one_shipment_delivered_leaves_the_order_until_all_have_arrived(shelf):
    order, _ = place_order(cart_with(("MUG", 2)), request(), idempotency_key="two")
    orders.mark_paid(order)
    line = order.lines.get()
    first = orders.create_shipment(order, orders.ShipmentRequest(lines={line.pk: 1}))
    second = orders.create_shipment(order, orders.ShipmentRequest(lines={line.pk: 1}))
    orders.mark_delivered(order, shipment_id=first.pk)
    order.refresh_from_db()
    assert order.fulfilment_status == FulfilmentStatus.PARTIALLY_DELIVERED
    assert order.status == OrderStatus.OPEN
    orders.mark_delivered(order, shipment_id=second.pk)
    order.refresh_from_db()
    assert order.fulfilment_status == FulfilmentStatus.DELIVERED


def test_a_failed_refund_changes_nothing_and_a_pending_one_waits_for_the_provider(shelf):
    small, mug = shelf
    order, _ = place_order(cart_with(("MUG", 2)), request(), idempotency_key="pend")
    orders.mark_paid(order)
    line = order.lines.get()
    orders.record_refund(order, orders.RefundRequest(lines={line.pk: 2}),
                         status="failed")
    order.refresh_from_db()
    assert (order.payment_status, order.refunded_total) == (PaymentStatus.PAID, Decimal("0.00"))
    assert order.lines.get().quantity_refunded == 0
    assert levels(mug) == [("main", 10, 2)]

    pending = orders.record_refund(order, orders.RefundRequest(lines={line.pk: 1}),
                                   status="pending", provider_refund_id="re_1")
    order.refresh_from_db()
    assert (order.payment_status, order.refunded_total) == (PaymentStatus.PAID, Decimal("0.00"))
    assert levels(mug) == [("main", 10, 2)]
    with pytest.raises(orders.OrderError) as held:
        orders.record_refund(order, orders.RefundRequest(lines={line.pk: 2}))
    assert held.value.code == "too_many", "a pending refund holds its lines"
    orders.settle_refund(pending, succeeded=True)
    orders.settle_refund(pending, succeeded=True)  # a second word from the provider: no-op
    order.refresh_from_db()
    assert (order.payment_status, order.refunded_total) == (
        PaymentStatus.PARTIALLY_REFUNDED, Decimal("300.00"))
    assert levels(mug) == [("main", 10, 1)]

    lost = orders.record_refund(order, orders.RefundRequest(amount=Decimal("5.00")),
                                status="pending")
    orders.settle_refund(lost, succeeded=False)
    order.refresh_from_db()
    assert order.refunded_total == Decimal("300.00")
    orders.record_refund(order, orders.RefundRequest())  # what the failure held is free again
    order.refresh_from_db()
    assert order.payment_status == PaymentStatus.REFUNDED and order.refunded_total == order.total


def test_lines_of_a_paid_then_cancelled_order_can_be_refunded(shelf):
    small, mug = shelf
    order, _ = place_order(cart_with(("MUG", 2)), request(), idempotency_key="pc")
    orders.mark_paid(order)
    orders.cancel_order(order)
    orders.record_refund(order, orders.RefundRequest(lines={order.lines.get().pk: 2}))
    order.refresh_from_db()
    assert (order.status, order.payment_status) == (OrderStatus.CANCELLED,
                                                    PaymentStatus.PARTIALLY_REFUNDED)
    assert order.refund_due, "5.00 of shipping is still held for a cancelled order"
    assert order.refunded_total == Decimal("600.00")
    assert levels(mug) == [("main", 10, 0)]


def test_discount_shares_add_up_to_the_discount_on_every_line_split():
    from backoffice.promotions.services import DiscountLine, _shares

    def lines(*amounts):
        return [DiscountLine(key=i, product_id=i, category_ids=frozenset(),
                             amount=Decimal(a)) for i, a in enumerate(amounts)]

    for total, amounts in [("0.02", ("0.16", "0.01")), ("0.02", ("0.01", "0.16")),
                           ("1.00", ("0.33", "0.33", "0.34")), ("0.05", ("0.01",) * 5),
                           ("99.99", ("100.00", "0.01")), ("0.01", ("3.00", "3.00", "3.00"))]:
        shares = _shares(Decimal(total), lines(*amounts))
        assert sum(shares.values()) == Decimal(total), (total, amounts, shares)
        assert all(shares[i] <= Decimal(a) for i, a in enumerate(amounts))
        assert all(share >= 0 and share == share.quantize(Decimal("0.01"))
                   for share in shares.values())


def test_a_once_per_customer_coupon_used_as_a_guest_is_used_by_the_account_too(
    shelf, django_user_model
):
    Coupon.objects.create(code="ONCE", kind="fixed", value=10, usage_limit_per_customer=1)
    place_order(cart_with(("MUG", 1)), request(coupon_code="once"), idempotency_key="g")
    user = django_user_model.objects.create_user(
        username="amina@example.com", email="amina@example.com", password="x" * 12)
    cart = Cart.objects.create(user=user)
    carts.add_to_cart(cart=cart, sku="MUG", quantity=1)
    with pytest.raises(CheckoutError) as again:
        place_order(cart, CheckoutRequest(shipping_address=ADDRESS, shipping_method="flat_rate",
                                          coupon_code="ONCE"), user=user, idempotency_key="a")
    assert again.value.code == "coupon_already_used"


def test_saving_a_coupon_never_writes_back_a_stale_use_count(shelf):
    coupon = Coupon.objects.create(code="TEN", kind="percentage", value=10, usage_limit=5)
    stale = Coupon.objects.get(pk=coupon.pk)  # a clerk's form, opened before the checkout
    place_order(cart_with(("MUG", 1)), request(coupon_code="ten"), idempotency_key="s")
    stale.value = Decimal("15")
    stale.save()
    coupon.refresh_from_db()
    assert (coupon.value, coupon.times_used) == (Decimal("15.00"), 1)


class Courier:
    """A shipping plugin that notes how much stock was allocated each time it is asked."""

    hookspec_version = ">=1.0,<2"

    def __init__(self):
        self.allocated_when_asked = []

    @hookimpl
    def register_shipping_methods(self):
        from backoffice.plugin_host.protocols import ShippingMethod

        return [ShippingMethod(code="courier", name="Courier")]

    @hookimpl
    def shipping_rate(self, method_code, request):
        if method_code != "courier":
            return None
        self.allocated_when_asked.append(
            sum(Stock.objects.values_list("quantity_allocated", flat=True)))
        return Decimal("7.00")


def test_the_shipping_plugin_is_never_asked_while_stock_is_locked(shelf, register_plugin):
    courier = Courier()
    register_plugin(courier, "courier")
    order, _ = place_order(cart_with(("MUG", 2)),
                           CheckoutRequest(shipping_address=ADDRESS, shipping_method="courier",
                                           email="amina@example.com"), idempotency_key="cr")
    assert order.shipping_total == Decimal("7.00")
    assert courier.allocated_when_asked == [0], "asked once, before anything was allocated"


def test_one_order_that_cannot_be_cancelled_does_not_stop_the_expiry_job(shelf, monkeypatch):
    first, _ = place_order(cart_with(("MUG", 1)), request(), idempotency_key="e1")
    second, _ = place_order(cart_with(("MUG", 1)), request(), idempotency_key="e2")
    real_cancel = orders.cancel_order

    def cancel(order, **kwargs):  # a fault in one order (a broken row, a failing plugin...)
        if order.pk == first.pk:
            raise RuntimeError("broken")
        return real_cancel(order, **kwargs)

    monkeypatch.setattr(orders, "cancel_order", cancel)
    assert orders.expire_unpaid_orders(timezone.now() + timedelta(hours=2)) == 1
    assert Order.objects.get(pk=second.pk).status == OrderStatus.CANCELLED
    assert Order.objects.get(pk=first.pk).status == OrderStatus.OPEN


def test_units_a_pending_refund_covers_do_not_ship_until_it_settles(shelf):
    small, mug = shelf
    order, _ = place_order(cart_with(("MUG", 3)), request(), idempotency_key="hold")
    order = orders.mark_paid(order)
    line = order.lines.get()
    pending = orders.record_refund(order, orders.RefundRequest(lines={line.pk: 2}, restock=True),
                                   status="pending")
    assert orders.shippable_quantities(order, {line.pk: line}) == {line.pk: 1}
    assert orders.refundable_quantities(order, {line.pk: line}) == {line.pk: 1}
    assert orders.refundable_amount(order) == order.total - Decimal("600.00")
    with pytest.raises(orders.OrderError) as refused:
        orders.create_shipment(order, orders.ShipmentRequest(lines={line.pk: 2}))
    assert refused.value.code == "too_many" and "pending refund" in str(refused.value)
    orders.create_shipment(order, orders.ShipmentRequest())  # ships the one unit not refunded
    assert order.lines.get().quantity_shipped == 1
    orders.settle_refund(pending, succeeded=True)
    # The two refunded units never left: their allocation is released, nothing is "restocked".
    assert levels(mug) == [("main", 9, 0)]
    order.refresh_from_db()
    assert order.payment_status == PaymentStatus.PARTIALLY_REFUNDED
    assert order.fulfilment_status == FulfilmentStatus.PARTIALLY_SHIPPED, "refunds never move it"
    orders.mark_delivered(order)  # everything left has shipped: it can be delivered
    order.refresh_from_db()
    assert order.fulfilment_status == FulfilmentStatus.DELIVERED


def test_an_order_never_paid_has_nothing_to_refund(shelf):
    order, _ = place_order(cart_with(("MUG", 2)), request(), idempotency_key="np")
    orders.cancel_order(order)
    for refund in (orders.RefundRequest(lines={order.lines.get().pk: 2}),
                   orders.RefundRequest(amount=Decimal("10.00"))):
        with pytest.raises(orders.OrderError) as refused:
            orders.record_refund(order, refund)
        assert refused.value.code == "not_paid"
    order.refresh_from_db()
    assert order.refunded_total == Decimal("0.00") and not order.refunds.exists()


def test_a_refund_status_that_is_not_ours_is_refused(shelf):
    order, _ = place_order(cart_with(("MUG", 1)), request(), idempotency_key="st")
    orders.mark_paid(order)
    with pytest.raises(orders.OrderError) as refused:
        orders.record_refund(order, orders.RefundRequest(), status="canceled")
    assert refused.value.code == "invalid_status"
    assert not order.refunds.exists()


def test_a_refunded_order_in_transit_still_records_its_delivery(shelf):
    order, _ = place_order(cart_with(("MUG", 1)), request(), idempotency_key="tr")
    orders.mark_paid(order)
    shipment = orders.create_shipment(order, orders.ShipmentRequest(carrier="DHL"))
    orders.record_refund(order, orders.RefundRequest())
    orders.mark_delivered(order, shipment_id=shipment.pk)
    shipment.refresh_from_db()
    order.refresh_from_db()
    assert shipment.delivered_at is not None
    assert (order.payment_status, order.fulfilment_status) == (
        PaymentStatus.REFUNDED, FulfilmentStatus.DELIVERED)
    events = order.events.count()
    with pytest.raises(orders.OrderError):  # nothing left to arrive: nothing written
        orders.mark_delivered(order)
    assert order.events.count() == events
