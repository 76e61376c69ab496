"""The orders and coupons admin: pages within query budgets that do not grow with rows, the
status actions (bulk and per order) through the services, shipments and refunds with their
stock, printables, the order export, and coupons with their form checks and CSV import."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from backoffice.catalog.models import Category, Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart
from backoffice.checkout.services import CheckoutRequest, place_order
from backoffice.inventory.models import Stock
from backoffice.inventory.services import adjust_stock
from backoffice.orders import services as orders
from backoffice.orders.models import Order, OrderEvent, Refund, Shipment
from backoffice.orders.status import FulfilmentStatus, OrderStatus, PaymentStatus
from backoffice.plugin_host.services import activate_plugins
from backoffice.promotions.models import Coupon, CouponRedemption

pytestmark = pytest.mark.django_db

ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "+254700000001"}
ORDERS = "/admin/orders/order/"
COUPONS = "/admin/promotions/coupon/"


@pytest.fixture(autouse=True)
def _plugins():
    activate_plugins(["flat_rate_shipping", "manual_payment"])


@pytest.fixture
def shelf():
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    tee = Product.objects.create(name="Tee", slug="tee", category=clothing)
    small = Variant.objects.create(product=tee, sku="TEE-S", name="S", price="800.00")
    mug_product = Product.objects.create(name="Mug", slug="mug")
    mug = Variant.objects.create(product=mug_product, sku="MUG", name="", price="300.00")
    adjust_stock(variant_id=small.pk, quantity_change=200)
    adjust_stock(variant_id=mug.pk, quantity_change=200)
    return small, mug


def place(*items, key: str, email: str = "amina@example.com", payment_method: str = "manual",
          coupon_code: str = "", address: dict | None = None) -> Order:
    cart = Cart.objects.create()
    for sku, quantity in items:
        carts.add_to_cart(cart=cart, sku=sku, quantity=quantity)
    order, _ = place_order(cart, CheckoutRequest(
        shipping_address=address or ADDRESS, shipping_method="flat_rate", email=email,
        payment_method=payment_method, coupon_code=coupon_code,
    ), idempotency_key=key)
    return Order.objects.get(pk=order.pk)


def many_orders(count: int) -> list[Order]:
    """Orders in every state: unpaid (cash on delivery), paid, partially shipped, shipped in
    parts, delivered, refunded, cancelled, some with a coupon."""
    Coupon.objects.create(code="KARIBU", kind="percentage", value=10)
    placed = []
    for i in range(count):
        order = place(("TEE-S", 1 + i % 3), ("MUG", 1), key=f"many-{i}",
                      email=f"buyer{i}@example.com", coupon_code="karibu" if i % 4 == 0 else "")
        step = i % 6
        if step >= 1:
            orders.mark_paid(order)
        if step == 2:
            mug = order.lines.get(sku="MUG")
            orders.create_shipment(order, orders.ShipmentRequest(lines={mug.pk: 1}))
        if step >= 3:
            tee = order.lines.get(sku="TEE-S")
            orders.create_shipment(order, orders.ShipmentRequest(
                carrier="G4S", tracking_number=f"T{i}", lines={tee.pk: tee.quantity}))
            orders.create_shipment(order, orders.ShipmentRequest(carrier="DHL"))
        if step == 4:
            orders.mark_delivered(order)
            orders.record_refund(order, orders.RefundRequest(
                lines={order.lines.get(sku="MUG").pk: 1}, restock=True, reason="broken"))
        if step == 5:
            orders.add_note(order, "Customer called.")
        if step == 0 and i % 12 == 6:
            orders.cancel_order(order)
        placed.append(order)
    return placed


def messages_of(response) -> list[str]:
    """The messages the page shows (POSTs follow their redirect, so each page shows the
    messages of the request before it)."""
    return [str(m) for m in response.context["messages"]]


def levels(variant) -> list[tuple[str, int, int]]:
    return sorted(Stock.objects.filter(variant=variant)
                  .values_list("warehouse__code", "quantity", "quantity_allocated"))


def change_url(order: Order) -> str:
    return f"{ORDERS}{order.pk}/change/"


def bulk(client, action: str, *selected: Order):
    return client.post(ORDERS, {
        "action": action, helpers.ACTION_CHECKBOX_NAME: [o.pk for o in selected], "index": 0,
    }, follow=True)


def post(client, url: str, data: dict | None = None):
    return client.post(url, data or {}, follow=True)


# --- Query budgets ------------------------------------------------------------------------------

# Queries per page, measured on SQLite and PostgreSQL, whatever the number of orders: the session
# and user (2); the sidebar's three badges, orders to fulfil included (3); on the order list the
# payment and shipping filters' choices from the active plugins (3), the count (on PostgreSQL an
# unfiltered list first asks the planner's estimate, +1) and the page; on the order page the
# order, its lines, shipments and their lines, refunds and their lines, the timeline and the
# messages sent about the order (listed in it), and the content type of the history link.
def _budgets(placed: list[Order]) -> dict[str, int]:
    full = placed[4]  # shipped in two parcels, delivered, partly refunded, with a coupon
    unpaid = placed[0]
    coupon = Coupon.objects.get(code="KARIBU")
    return {
        ORDERS: 11,
        f"{ORDERS}?status=to_fulfil": 10,
        f"{ORDERS}?fulfilment_status=shipped&payment_method=manual&shipping_method=flat_rate":
            10,
        f"{ORDERS}?payment_status=partially_refunded&status=completed": 10,
        f"{ORDERS}?status=refund_due": 10,
        f"{ORDERS}?created_at_from=2000-01-01&created_at_to=2999-12-31": 10,
        # A search first looks the term up as an exact number, email, phone or line SKU.
        f"{ORDERS}?q=TEE-S": 11,
        f"{ORDERS}?q=buyer1": 11,
        f"{ORDERS}?q=%23{full.number}": 11,
        change_url(full): 15,  # + its payments
        change_url(unpaid): 15,
        f"{ORDERS}{full.pk}/packing-slip/": 4,
        f"{ORDERS}{full.pk}/invoice/": 4,
        f"{ORDERS}{placed[1].pk}/ship/": 8,  # + the pending refunds that hold units back
        # + pending refunds' amount and lines, and the payment it goes back to
        f"{ORDERS}{full.pk}/refund/": 10,
        f"{ORDERS}{unpaid.pk}/cancel/": 6,
        f"{ORDERS}{unpaid.pk}/note/": 6,
        f"{ORDERS}export/": 8,
        COUPONS: 8,
        f"{COUPONS}?is_active__exact=1&kind__exact=percentage": 7,
        f"{COUPONS}?q=kari": 7,
        f"{COUPONS}add/": 6,
        f"{COUPONS}{coupon.pk}/change/": 10,
        f"{COUPONS}import/": 5,
        f"{COUPONS}export/": 5,
    }


@pytest.mark.parametrize("count", [6, 30])
def test_every_order_and_coupon_page_stays_within_its_query_budget(
    staff_client, shelf, count, django_assert_max_num_queries
):
    placed = many_orders(count)
    for url, budget in _budgets(placed).items():
        with cachalot_disabled(), django_assert_max_num_queries(budget, info=url):
            response = staff_client.get(url)
        assert response.status_code == 200, url


# --- The order list -----------------------------------------------------------------------------


def test_the_list_shows_number_customer_status_total_items_and_payment(staff_client, shelf):
    order = place(("TEE-S", 2), ("MUG", 1), key="list")
    orders.mark_paid(order)
    html = staff_client.get(ORDERS).content.decode()
    assert f"#{order.number}" in html
    assert "Amina Otieno" in html and "amina@example.com" in html
    # Coloured labels: the overall status, the payment and the fulfilment.
    assert "Open" in html and "bg-blue-100" in html
    assert "Paid" in html and "bg-green-100" in html
    assert "Unfulfilled" in html and "bg-orange-100" in html
    assert "USD 1,905.00" in html  # 2 x 800 + 300 + 5 shipping
    assert ">3<" in html.replace(" ", "").replace("\n", "")  # items
    assert "manual · on delivery" in html


def test_newest_orders_come_first(staff_client, shelf):
    first = place(("MUG", 1), key="first")
    second = place(("MUG", 1), key="second")
    html = staff_client.get(ORDERS).content.decode()
    assert html.index(f"#{second.number}") < html.index(f"#{first.number}")


def test_search_by_number_email_phone_and_sku_lists_an_order_once(staff_client, shelf):
    both = place(("TEE-S", 1), ("MUG", 1), key="both")
    other = place(("MUG", 2), key="other", email="wanjiru@example.com",
                  address={**ADDRESS, "phone": "+254711222333"})

    def found(term: str) -> list[int]:
        response = staff_client.get(ORDERS, {"q": term})
        return [o.pk for o in response.context["cl"].result_list]

    assert found(both.number) == [both.pk]
    assert found(f"#{other.number}") == [other.pk]
    assert found("wanjiru") == [other.pk]
    assert found("711222") == [other.pk]
    assert found("TEE-S") == [both.pk]
    # Two matching lines (MUG on both orders) and an email match: each order once.
    assert sorted(found("MUG")) == sorted([both.pk, other.pk])
    assert found("nobody@example.com") == []


def test_filters_by_status_date_payment_and_shipping_method(staff_client, shelf):
    unpaid = place(("MUG", 1), key="unpaid", payment_method="")
    paid = place(("MUG", 1), key="paid")
    orders.mark_paid(paid)
    old = place(("MUG", 1), key="old")
    Order.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    def listed(**params) -> set[int]:
        response = staff_client.get(ORDERS, params)
        assert response.status_code == 200
        return {o.pk for o in response.context["cl"].result_list}

    # To fulfil: paid, or paid on delivery (``old``: cash on delivery, unpaid).
    assert listed(status="to_fulfil") == {paid.pk, old.pk}
    assert listed(status="awaiting_payment") == {unpaid.pk, old.pk}
    assert listed(payment_status="unpaid") == {unpaid.pk, old.pk}
    assert listed(payment_status="paid") == {paid.pk}
    assert listed(fulfilment_status="unfulfilled") == {unpaid.pk, paid.pk, old.pk}
    assert listed(fulfilment_status="shipped") == set()
    assert listed(status="open") == {unpaid.pk, paid.pk, old.pk}
    today = timezone.localdate().isoformat()
    assert listed(created_at_from=today, created_at_to=today) == {unpaid.pk, paid.pk}
    assert listed(created_at_to=(timezone.localdate() - timedelta(days=30)).isoformat()) == {
        old.pk}
    assert listed(payment_method="manual") == {paid.pk, old.pk}
    assert listed(shipping_method="flat_rate") == {unpaid.pk, paid.pk, old.pk}
    assert listed(shipping_method="drone") == set()


def test_orders_are_not_added_changed_or_deleted_through_forms(staff_client, shelf):
    order = place(("MUG", 1), key="ro")
    assert staff_client.get(f"{ORDERS}abc/packing-slip/").status_code == 404
    assert staff_client.get(f"{ORDERS}add/").status_code == 403
    assert staff_client.get(f"{ORDERS}{order.pk}/delete/").status_code == 403
    assert staff_client.post(change_url(order), {"email": "x@example.com"}).status_code == 403
    assert Order.objects.get(pk=order.pk).email == "amina@example.com"


# --- Bulk actions -------------------------------------------------------------------------------


def test_bulk_mark_paid_then_delivered_through_the_services(staff_client, shelf):
    a = place(("MUG", 1), key="a")
    b = place(("MUG", 1), key="b")
    response = bulk(staff_client, "mark_paid", a, b)
    assert response.redirect_chain == [(ORDERS, 302)]
    assert "2 orders marked paid." in messages_of(response)
    for order in (a, b):
        order.refresh_from_db()
        assert order.payment_status == PaymentStatus.PAID and order.paid_at is not None
        assert order.fulfilment_status == FulfilmentStatus.UNFULFILLED
        event = order.events.get(kind="status", state="payment")
        assert (event.from_status, event.to_status, event.actor_label) == ("unpaid", "paid", "boss")
    # Paid already: refused for that order, in the service's words.
    response = bulk(staff_client, "mark_paid", a)
    assert messages_of(response) == [
        f"#{a.number}: An order is marked paid only while it is unpaid and not cancelled. "
        "This one is paid already."]
    orders.create_shipment(a, orders.ShipmentRequest())
    response = bulk(staff_client, "mark_delivered", a)
    assert "1 order marked delivered." in messages_of(response)
    a.refresh_from_db()
    assert (a.status, a.fulfilment_status) == (OrderStatus.COMPLETED, FulfilmentStatus.DELIVERED)


def test_a_bulk_action_refused_for_some_orders_names_them_and_changes_nothing_there(
    staff_client, shelf
):
    small, mug = shelf
    unpaid = place(("MUG", 3), key="unpaid")
    shipped = place(("MUG", 2), key="shipped")
    orders.mark_paid(shipped)
    orders.create_shipment(shipped, orders.ShipmentRequest())
    events_before = OrderEvent.objects.filter(order=shipped).count()

    response = bulk(staff_client, "cancel_orders", unpaid, shipped)
    found = messages_of(response)
    assert "1 order cancelled; its stock is back on the shelf." in found
    assert (f"#{shipped.number}: An order can be cancelled only until any of it ships. Part of "
            "this one has shipped: it can be refunded instead.") in found
    assert Order.objects.get(pk=unpaid.pk).status == OrderStatus.CANCELLED
    shipped.refresh_from_db()
    assert (shipped.status, shipped.fulfilment_status) == (OrderStatus.OPEN,
                                                           FulfilmentStatus.SHIPPED)
    assert OrderEvent.objects.filter(order=shipped).count() == events_before
    # The cancelled order's 3 mugs are back; the shipped ones have left.
    assert levels(mug) == [("main", 198, 0)]

    response = bulk(staff_client, "mark_delivered", unpaid)
    assert messages_of(response) == [
        f"#{unpaid.number}: Nothing has shipped yet; create a shipment first."]
    assert Order.objects.get(pk=unpaid.pk).status == OrderStatus.CANCELLED


def test_bulk_actions_need_the_change_order_permission(client, django_user_model, shelf):
    order = place(("MUG", 1), key="perm")
    viewer = django_user_model.objects.create_user("viewer", password="pw-123-long",
                                                   is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(viewer)
    response = client.get(ORDERS)
    assert response.status_code == 200
    assert "mark_paid" not in response.content.decode()
    bulk(client, "mark_paid", order)
    assert Order.objects.get(pk=order.pk).paid_at is None
    assert client.post(f"{ORDERS}{order.pk}/mark-paid/").status_code == 403
    assert Order.objects.get(pk=order.pk).paid_at is None


# --- The order page -----------------------------------------------------------------------------


def test_the_order_page_shows_the_order_its_lines_shipments_refunds_and_timeline(
    staff_client, shelf
):
    Coupon.objects.create(code="KARIBU", kind="percentage", value=10)
    order = place(("TEE-S", 2), ("MUG", 2), key="page", coupon_code="karibu")
    orders.mark_paid(order)
    tee = order.lines.get(sku="TEE-S")
    orders.create_shipment(order, orders.ShipmentRequest(
        carrier="G4S", tracking_number="G4S-77", tracking_url="https://track.example/77",
        lines={tee.pk: 2}))
    orders.record_refund(order, orders.RefundRequest(
        lines={order.lines.get(sku="MUG").pk: 1}, reason="chipped"))
    orders.add_note(order, "Leave at the gate.")

    html = staff_client.get(change_url(order)).content.decode()
    assert "Partially refunded" in html
    assert "Moi Avenue 1" in html and "Nairobi" in html and "amina@example.com" in html
    for text in ("USD 2,200.00", "Discount (KARIBU)", "− USD 220.00", "USD 5.00",
                 "USD 1,985.00", "Refunded", "USD 270.00"):
        assert text in html, text
    assert "TEE-S" in html and "Tee" in html and "MUG" in html
    assert "G4S-77" in html and "https://track.example/77" in html and "2 × TEE-S" in html
    assert "chipped" in html and "1 × MUG" in html
    assert "Leave at the gate." in html and "Payment: unpaid → paid" in html
    assert "Fulfilment: unfulfilled → partially shipped" in html
    assert "Payment: paid → partially refunded" in html
    # The actions this order allows, and the printables.
    assert f"{ORDERS}{order.pk}/ship/" in html and f"{ORDERS}{order.pk}/refund/" in html
    assert f"{ORDERS}{order.pk}/packing-slip/" in html and f"{ORDERS}{order.pk}/invoice/" in html
    assert f"{ORDERS}{order.pk}/note/" in html
    # Snapshots: nothing of the order is an input.
    assert 'name="email"' not in html and 'name="total"' not in html


def test_the_order_page_buttons_move_the_order_and_an_illegal_move_says_why(
    staff_client, shelf
):
    order = place(("MUG", 1), key="buttons", payment_method="")
    html = staff_client.get(change_url(order)).content.decode()
    # The header's one-click buttons: only the moves the order's states allow from here.
    assert f'action="{ORDERS}{order.pk}/mark-paid/"' in html
    assert f'action="{ORDERS}{order.pk}/mark-processing/"' not in html
    assert f'action="{ORDERS}{order.pk}/mark-delivered/"' not in html

    # A GET only asks, saying what it does and the rule it follows.
    response = staff_client.get(f"{ORDERS}{order.pk}/mark-paid/")
    assert response.status_code == 200
    assert "An order is marked paid only while it is unpaid and not cancelled." in (
        response.content.decode())
    response = post(staff_client, f"{ORDERS}{order.pk}/mark-paid/", {"note": "Cash at the till"})
    assert response.redirect_chain == [(change_url(order), 302)]
    assert f"Order #{order.number} marked paid." in messages_of(response)
    order.refresh_from_db()
    assert (order.status, order.payment_status) == (OrderStatus.OPEN, PaymentStatus.PAID)
    assert order.events.get(state="payment").note == "Cash at the till"

    events = order.events.count()
    response = post(staff_client, f"{ORDERS}{order.pk}/mark-delivered/")
    assert response.redirect_chain == [(change_url(order), 302)]
    assert messages_of(response) == ["Nothing has shipped yet; create a shipment first."]
    order.refresh_from_db()
    assert order.fulfilment_status == FulfilmentStatus.UNFULFILLED
    assert order.events.count() == events
    # Processing is gone: nothing replaces it (a paid order is simply unfulfilled).
    with pytest.raises(NoReverseMatch):
        reverse("admin:orders_order_mark_processing_detail", args=[order.pk])


def test_cancelling_from_the_order_page_releases_the_stock(staff_client, shelf):
    small, mug = shelf
    order = place(("TEE-S", 3), key="cancel")
    assert levels(small) == [("main", 200, 3)]
    response = post(staff_client, f"{ORDERS}{order.pk}/cancel/", {"note": "Customer asked"})
    assert f"Order #{order.number} cancelled; its stock is back on the shelf." in (
        messages_of(response))
    assert levels(small) == [("main", 200, 0)]
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    response = post(staff_client, f"{ORDERS}{order.pk}/cancel/")
    assert messages_of(response) == ["This order is cancelled already."]


def test_staff_add_a_note_to_the_timeline(staff_client, shelf):
    order = place(("MUG", 1), key="note")
    response = post(staff_client, f"{ORDERS}{order.pk}/note/", {"note": "Called: ship Monday."})
    assert messages_of(response) == ["Note added to the timeline."]
    event = order.events.last()
    assert (event.kind, event.note, event.actor.username) == ("note", "Called: ship Monday.",
                                                               "boss")
    response = staff_client.post(f"{ORDERS}{order.pk}/note/", {"note": ""})
    assert response.status_code == 200 and "This field is required." in response.content.decode()
    assert order.events.filter(kind="note").count() == 1


# --- Shipments and refunds ----------------------------------------------------------------------


def test_the_shipment_form_starts_with_everything_left_and_ships_part_of_it(staff_client, shelf):
    small, mug = shelf
    order = place(("TEE-S", 3), ("MUG", 2), key="ship")
    orders.mark_paid(order)
    tee, mugs = order.lines.get(sku="TEE-S"), order.lines.get(sku="MUG")
    response = staff_client.get(f"{ORDERS}{order.pk}/ship/")
    form = response.context["form"]
    assert form[f"line_{tee.pk}"].value() == 3 and form[f"line_{mugs.pk}"].value() == 2

    response = post(staff_client, f"{ORDERS}{order.pk}/ship/", {
        "carrier": "G4S", "tracking_number": "G4S-1", "tracking_url": "track.example/1",
        f"line_{tee.pk}": 2, f"line_{mugs.pk}": 0,
    })
    assert response.redirect_chain == [(change_url(order), 302)]
    assert any("2 items left the shelf" in m for m in messages_of(response))
    shipment = Shipment.objects.get(order=order)
    assert (shipment.carrier, shipment.tracking_url) == ("G4S", "https://track.example/1")
    assert [(sl.line.sku, sl.quantity) for sl in shipment.lines.all()] == [("TEE-S", 2)]
    assert levels(small) == [("main", 198, 1)]  # on hand and allocated down together
    assert levels(mug) == [("main", 200, 2)]
    order.refresh_from_db()
    assert order.fulfilment_status == FulfilmentStatus.PARTIALLY_SHIPPED
    assert order.payment_status == PaymentStatus.PAID

    # The rest: defaults to what is left; the order is then shipped.
    staff_client.post(f"{ORDERS}{order.pk}/ship/", {f"line_{tee.pk}": 1, f"line_{mugs.pk}": 2})
    order.refresh_from_db()
    assert order.fulfilment_status == FulfilmentStatus.SHIPPED
    assert levels(small) == [("main", 197, 0)] and levels(mug) == [("main", 198, 0)]


def test_the_shipment_form_refuses_bad_quantities_and_what_the_service_refuses(
    staff_client, shelf
):
    small, mug = shelf
    order = place(("MUG", 2), key="bad-ship")
    line = order.lines.get()
    # A stale page: the order stopped being shippable (its payment method changed to one paid
    # before it ships) after the form was opened.
    Order.objects.filter(pk=order.pk).update(pay_on_delivery=False)
    url = f"{ORDERS}{order.pk}/ship/"
    response = staff_client.post(url, {f"line_{line.pk}": 3})
    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 2." in response.content.decode()
    response = staff_client.post(url, {f"line_{line.pk}": 0})
    assert "Choose at least one item to ship." in response.content.decode()
    # Unpaid: the service refuses, the form stays with its message, nothing moves.
    response = staff_client.post(url, {f"line_{line.pk}": 2, "carrier": "G4S"})
    assert response.status_code == 200
    assert messages_of(response) == [
        "An order ships only while it is not cancelled and is paid, or paid on delivery. This "
        "one is unpaid and not paid on delivery."]
    assert 'value="G4S"' in response.content.decode()
    assert not Shipment.objects.exists() and levels(mug) == [("main", 200, 2)]


def test_a_refund_of_lines_with_restock_puts_shipped_goods_back(staff_client, shelf):
    small, mug = shelf
    order = place(("MUG", 4), key="refund")
    orders.mark_paid(order)
    line = order.lines.get()
    orders.create_shipment(order, orders.ShipmentRequest(lines={line.pk: 2}))
    assert levels(mug) == [("main", 198, 2)]

    response = post(staff_client, f"{ORDERS}{order.pk}/refund/", {
        f"line_{line.pk}": 3, "restock": "on", "reason": "returned",
    })
    assert response.redirect_chain == [(change_url(order), 302)]
    assert "Refund of USD 900.00 recorded." in messages_of(response)
    refund = Refund.objects.get(order=order)
    assert (refund.amount, refund.restock, refund.reason, refund.actor_label) == (
        Decimal("900.00"), True, "returned", "boss")
    # Two unshipped mugs give up their allocation, one shipped mug comes back.
    assert levels(mug) == [("main", 199, 0)]
    order.refresh_from_db()
    assert order.payment_status == PaymentStatus.PARTIALLY_REFUNDED
    assert order.fulfilment_status == FulfilmentStatus.PARTIALLY_SHIPPED
    assert order.refunded_total == Decimal("900.00")

    # An amount alone, too much: the service's message, nothing recorded.
    response = staff_client.post(f"{ORDERS}{order.pk}/refund/", {"amount": "5000"})
    assert response.status_code == 200
    assert messages_of(response) == ["At most USD 305.00 is left to refund."]
    assert Refund.objects.count() == 1


def test_the_refund_form_needs_an_amount_or_lines_and_restock_needs_lines(staff_client, shelf):
    order = place(("MUG", 1), key="refund-form")
    orders.mark_paid(order)
    url = f"{ORDERS}{order.pk}/refund/"
    response = staff_client.post(url, {"reason": "why not"})
    assert "Enter an amount, or the quantities refunded." in response.content.decode()
    response = staff_client.post(url, {"amount": "-1"})
    assert "Ensure this value is greater than or equal to 0.01." in response.content.decode()
    response = staff_client.post(url, {"amount": "10", "restock": "on"})
    assert messages_of(response) == ["Say which lines go back on the shelf."]
    assert not Refund.objects.exists()
    assert Order.objects.get(pk=order.pk).payment_status == PaymentStatus.PAID


# --- Printables ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["packing-slip", "invoice"])
def test_printables_render_for_staff_and_are_refused_to_others(
    staff_client, django_user_model, shelf, settings, kind
):
    settings.STORE_NAME = "Duka la Amina"
    order = place(("TEE-S", 2), ("MUG", 1), key="print")
    orders.mark_paid(order)
    orders.create_shipment(order, orders.ShipmentRequest(
        lines={order.lines.get(sku="MUG").pk: 1}))
    url = f"{ORDERS}{order.pk}/{kind}/"
    response = staff_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Duka la Amina" in html and f"#{order.number}" in html
    assert "Moi Avenue 1" in html and "@media print" in html
    assert "unfold" not in html.lower()  # no admin chrome
    if kind == "packing-slip":
        assert "TEE-S" in html and "Tee" in html and ">2<" in html
        assert "MUG" not in html  # already shipped: nothing left to pack
    else:
        for text in ("TEE-S", "MUG", "USD 800.00", "USD 1,600.00", "USD 1,900.00", "USD 5.00",
                     "USD 1,905.00", "Currency: USD"):
            assert text in html, text

    client = Client()
    response = client.get(url)
    assert response.status_code == 302  # anonymous: to the log-in page
    assert response["Location"].startswith("/admin/login/")
    clerk = django_user_model.objects.create_user("clerk", password="pw-123-long",
                                                  is_staff=True)
    client.force_login(clerk)
    assert client.get(url).status_code == 403  # staff without the orders permission


# --- Export -------------------------------------------------------------------------------------


def _export(client, resource: int, query: str = "", file_format: int = 0):
    from backoffice.orders.admin import OrderLineResource, OrderResource

    chosen = [OrderResource, OrderLineResource][resource]
    fields = {f"{chosen.__name__.lower()}_{name}": "on" for name in chosen().get_export_order()}
    return client.post(f"{ORDERS}export/{query}",
                       {"format": str(file_format), "resource": str(resource), **fields})


def test_the_export_has_a_row_per_order_for_the_filtered_list_in_bounded_queries(
    staff_client, shelf, django_assert_max_num_queries
):
    placed = many_orders(30)
    # Session and user, the list's plugin filters (3), then the orders in one query.
    with cachalot_disabled(), django_assert_max_num_queries(6):
        response = _export(staff_client, 0)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 30
    first = next(r for r in rows if r["number"] == placed[4].number)
    order = Order.objects.get(pk=placed[4].pk)
    assert (first["status"], first["payment_status"], first["fulfilment_status"]) == (
        "Completed", "Partially refunded", "Delivered")
    assert first["customer_name"] == "Amina Otieno" and first["email"] == "buyer4@example.com"
    assert (first["shipping_country"], first["shipping_city"]) == ("KE", "Nairobi")
    assert first["items"] == "3" and first["coupon_code"] == "KARIBU"
    assert Decimal(first["total"]) == order.total
    assert Decimal(first["refunded"]) == order.refunded_total
    assert Decimal(first["net"]) == order.total - order.refunded_total
    # The list's filters apply.
    response = _export(staff_client, 0, "?status=to_fulfil")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    # Paid (steps 1, 2) or cash on delivery not cancelled (step 0), not all shipped.
    assert {(r["status"], r["payment_status"], r["fulfilment_status"]) for r in rows} == {
        ("Open", "Unpaid", "Unfulfilled"), ("Open", "Paid", "Unfulfilled"),
        ("Open", "Paid", "Partially shipped")}
    assert len(rows) == 13


def test_the_line_export_has_a_row_per_line_in_bounded_queries(
    staff_client, shelf, django_assert_max_num_queries
):
    many_orders(30)
    with cachalot_disabled(), django_assert_max_num_queries(6):
        response = _export(staff_client, 1)
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 60
    tee = next(r for r in rows if r["sku"] == "TEE-S" and r["email"] == "buyer2@example.com")
    assert (tee["product"], tee["variant"], tee["quantity"], tee["unit_price"]) == (
        "Tee", "S", "3", "800.00")
    assert tee["order_number"] and (tee["status"], tee["fulfilment_status"]) == (
        "Open", "Partially shipped")


def test_the_export_as_xlsx(staff_client, shelf):
    from openpyxl import load_workbook

    place(("MUG", 1), key="xlsx")
    response = _export(staff_client, 0, file_format=1)
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    header, row = [c.value for c in sheet[1]], [c.value for c in sheet[2]]
    assert header[0] == "number"
    # Numbers stay numbers (an accountant sums them); an empty cell stays empty.
    assert row[header.index("total")] == 305 and row[header.index("items")] == 1
    assert row[header.index("paid_at")] is None


# --- Sidebar ------------------------------------------------------------------------------------


def test_the_sidebar_counts_orders_waiting_for_fulfilment(staff_client, shelf):
    place(("MUG", 1), key="waiting-unpaid", payment_method="")  # paid before it ships
    paid = place(("MUG", 1), key="waiting-paid")
    orders.mark_paid(paid)
    place(("MUG", 1), key="waiting-cod")  # cash on delivery: ships unpaid
    shipped = place(("MUG", 1), key="shipped")
    orders.mark_paid(shipped)
    orders.create_shipment(shipped, orders.ShipmentRequest())
    cancelled = place(("MUG", 1), key="cancelled")
    orders.cancel_order(cancelled)
    html = staff_client.get("/admin/").content.decode()
    assert "Orders" in html and "Coupons" in html
    badge = html.split("h-[18px] leading-[18px]", 1)[1][:1000]
    assert ">2<" in badge.replace(" ", "").replace("\n", "")


# --- Coupons ------------------------------------------------------------------------------------


def coupon_form(**changes) -> dict:
    data = {
        "code": "SAVE10", "description": "", "kind": "percentage", "value": "10",
        "starts_at_0": "", "starts_at_1": "", "ends_at_0": "", "ends_at_1": "",
        "usage_limit": "", "usage_limit_per_customer": "", "minimum_subtotal": "",
        "is_active": "on",
        "redemptions-TOTAL_FORMS": "0", "redemptions-INITIAL_FORMS": "0",
        "redemptions-MIN_NUM_FORMS": "0", "redemptions-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_coupon_is_created_with_its_categories_and_products(staff_client, shelf):
    clothing = Category.objects.get(slug="clothing")
    mug = Product.objects.get(slug="mug")
    response = staff_client.post(f"{COUPONS}add/", coupon_form(
        code=" Karibu10 ", categories=[clothing.pk], products=[mug.pk],
        starts_at_0="2026-01-01", starts_at_1="00:00", ends_at_0="2026-02-01",
        ends_at_1="00:00", usage_limit="100"))
    assert response.status_code == 302, response.content.decode()[:3000]
    coupon = Coupon.objects.get()
    assert coupon.code == "Karibu10" and coupon.usage_limit == 100
    assert list(coupon.categories.all()) == [clothing] and list(coupon.products.all()) == [mug]
    html = staff_client.get(COUPONS).content.decode()
    assert "Karibu10" in html and "10%" in html and "0 / 100" in html


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"value": "150"}, "value", "A percentage cannot be more than 100."),
    ({"value": "0"}, "value", "The value must be more than zero."),
    ({"value": "-5", "kind": "fixed"}, "value", "The value must be more than zero."),
    ({"starts_at_0": "2026-03-01", "starts_at_1": "00:00", "ends_at_0": "2026-02-01",
      "ends_at_1": "00:00"}, "ends_at", "The end of the validity window must be after its start."),
    ({"code": "karibu"}, "code",
     "A coupon with the code karibu already exists (codes are the same whatever their case)."),
    ({"usage_limit": "0"}, "usage_limit", "At least 1; leave it empty for no limit."),
    ({"minimum_subtotal": "-1"}, "minimum_subtotal", "The minimum subtotal cannot be negative."),
])
def test_the_coupon_form_explains_what_is_wrong(staff_client, changes, field, message):
    Coupon.objects.create(code="KARIBU", kind="percentage", value=10)
    response = staff_client.post(f"{COUPONS}add/", coupon_form(**changes))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors[field] == [message]
    assert Coupon.objects.count() == 1


def test_a_used_coupon_keeps_its_count_and_cannot_get_a_lower_limit(staff_client, shelf):
    coupon = Coupon.objects.create(code="KARIBU", kind="fixed", value=100)
    for i in range(2):
        place(("MUG", 1), key=f"used-{i}", coupon_code="karibu", email=f"c{i}@example.com")
    coupon.refresh_from_db()
    assert coupon.times_used == 2
    url = f"{COUPONS}{coupon.pk}/change/"
    html = staff_client.get(url).content.decode()
    assert 'name="times_used"' not in html  # read-only
    assert "c0@example.com" in html and "c1@example.com" in html  # redemptions
    data = coupon_form(code="KARIBU", kind="fixed", value="100", usage_limit="1",
                       times_used="0")
    data.update({"redemptions-TOTAL_FORMS": "2", "redemptions-INITIAL_FORMS": "2"})
    for index, redemption in enumerate(CouponRedemption.objects.order_by("-created_at", "-id")):
        data[f"redemptions-{index}-id"] = str(redemption.pk)
        data[f"redemptions-{index}-coupon"] = str(coupon.pk)
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["usage_limit"] == [
        "This coupon has been used 2 times already: the limit cannot be lower."]
    data["usage_limit"] = "5"
    assert staff_client.post(url, data).status_code == 302
    coupon.refresh_from_db()
    assert (coupon.usage_limit, coupon.times_used) == (5, 2)


def test_a_used_coupon_is_kept_and_coupons_are_switched_on_and_off_in_bulk(staff_client, shelf):
    used = Coupon.objects.create(code="USED", kind="fixed", value=10)
    place(("MUG", 1), key="used", coupon_code="used")
    unused = Coupon.objects.create(code="UNUSED", kind="fixed", value=10)
    assert staff_client.get(f"{COUPONS}{used.pk}/delete/").status_code == 403
    response = post(staff_client, f"{COUPONS}{unused.pk}/delete/", {"post": "yes"})
    assert messages_of(response) == ["The coupon “UNUSED” was deleted successfully."]
    assert not Coupon.objects.filter(pk=unused.pk).exists()
    response = staff_client.post(COUPONS, {"action": "deactivate", "index": 0,
                                           helpers.ACTION_CHECKBOX_NAME: [used.pk]}, follow=True)
    assert messages_of(response) == ["1 coupon deactivated."]
    assert not Coupon.objects.get(pk=used.pk).is_active
    assert "delete_selected" not in staff_client.get(COUPONS).content.decode()


# --- Coupon import and export -------------------------------------------------------------------

HEADER = ("code,description,kind,value,starts_at,ends_at,usage_limit,"
          "usage_limit_per_customer,minimum_subtotal,is_active,categories,products\n")


def import_csv(client, text: str, *, confirm: bool = True):
    """Upload (the dry run and its preview), then confirm when the preview allows it."""
    upload = SimpleUploadedFile("coupons.csv", text.encode(), content_type="text/csv")
    response = client.post(f"{COUPONS}import/", {"import_file": upload, "format": "0",
                                                 "resource": "0"})
    assert response.status_code == 200
    confirm_form = response.context.get("confirm_form")
    if not confirm or confirm_form is None:
        return response
    data = {name: confirm_form.initial.get(name, "") for name in confirm_form.fields}
    return client.post(f"{COUPONS}process_import/", data)


def test_a_csv_import_creates_and_updates_coupons_matching_codes_in_any_case(staff_client, shelf):
    Coupon.objects.create(code="KARIBU", kind="percentage", value=10, is_active=True)
    response = import_csv(staff_client, HEADER + (
        "karibu,Welcome back,percentage,15,,,,,,0,,\n"
        "MUG50,Mugs,fixed,50.00,2026-12-01 00:00,2026-12-31 23:59,100,1,200,1,clothing,mug\n"
    ))
    assert response.status_code == 302
    coupons = {c.code: c for c in Coupon.objects.all()}
    assert set(coupons) == {"karibu", "MUG50"}, "updated in place, not a second KARIBU"
    karibu, mug = coupons["karibu"], coupons["MUG50"]
    assert (karibu.value, karibu.is_active, karibu.description) == (
        Decimal("15.00"), False, "Welcome back")
    assert (mug.kind, mug.value, mug.usage_limit, mug.usage_limit_per_customer) == (
        "fixed", Decimal("50.00"), 100, 1)
    assert mug.minimum_subtotal == Decimal("200.00")
    assert timezone.localtime(mug.starts_at).isoformat().startswith("2026-12-01T00:00")
    assert [c.path for c in mug.categories.all()] == ["clothing"]
    assert [p.slug for p in mug.products.all()] == ["mug"]


def test_a_file_with_a_bad_row_names_it_and_imports_nothing(staff_client, shelf):
    response = import_csv(staff_client, HEADER + (
        "GOOD,,percentage,10,,,,,,1,,\n"
        "TOOMUCH,,percentage,150,,,,,,1,,\n"
        "BACKWARDS,,fixed,5,2026-03-01,2026-02-01,,,,1,,\n"
        "NOWHERE,,fixed,5,,,,,,1,shoes,mug|teapot\n"
        "SILLY,,bogus,abc,,,,,,maybe,,\n"
    ))
    assert "confirm_form" not in response.context or response.context["confirm_form"] is None
    html = response.content.decode()
    for text in ("A percentage cannot be more than 100.",
                 "The end of the validity window must be after its start.",
                 "Unknown categories: shoes.", "Unknown products: teapot.",
                 "Write percentage or fixed.", "Not a number: abc.",
                 "Write 1 or 0 (or true or false)."):
        assert text in html, text
    result = response.context["result"]
    assert sorted(row.number for row in result.invalid_rows) == [2, 3, 4, 5]
    assert not Coupon.objects.exists()


def test_a_confirmed_import_is_all_or_nothing(shelf):
    from tablib import Dataset

    from backoffice.promotions.admin import CouponResource

    dataset = Dataset().load(HEADER + "GOOD,,percentage,10,,,,,,1,,\nBAD,,percentage,0,,,,,,1,,\n",
                             format="csv")
    result = CouponResource().import_data(dataset, dry_run=False, use_transactions=True,
                                          rollback_on_validation_errors=True)
    assert result.has_validation_errors()
    assert not Coupon.objects.exists()


def test_an_exported_file_imports_back_with_nothing_changed(staff_client, shelf):
    clothing = Category.objects.get(slug="clothing")
    sub = Category.objects.create(name="Shirts", slug="shirts", parent=clothing)
    coupon = Coupon.objects.create(
        code="Karibu", description="Welcome, friend", kind="percentage", value="12.50",
        starts_at=timezone.now().replace(microsecond=123456),
        ends_at=timezone.now() + timedelta(days=30), usage_limit=10,
        usage_limit_per_customer=1, minimum_subtotal="99.99", is_active=False)
    coupon.categories.set([clothing, sub])
    coupon.products.set(Product.objects.all())
    Coupon.objects.create(code="PLAIN", kind="fixed", value=5)
    before = {c.pk: (c.code, c.description, c.kind, c.value, c.starts_at, c.ends_at,
                     c.usage_limit, c.usage_limit_per_customer, c.minimum_subtotal,
                     c.is_active, sorted(c.categories.values_list("pk", flat=True)),
                     sorted(c.products.values_list("pk", flat=True)))
              for c in Coupon.objects.all()}

    response = staff_client.post(f"{COUPONS}export/", {"format": "0", "resource": "0"})
    assert response.status_code == 200
    exported = response.content.decode()
    assert "clothing|clothing/shirts" in exported or "clothing/shirts|clothing" in exported
    assert "times_used" in exported

    response = import_csv(staff_client, exported, confirm=False)
    result = response.context["result"]
    assert not result.has_errors() and not result.has_validation_errors()
    assert result.totals["skip"] == 2 and result.totals["update"] == 0
    assert result.totals["new"] == 0
    import_csv(staff_client, exported)
    after = {c.pk: (c.code, c.description, c.kind, c.value, c.starts_at, c.ends_at,
                    c.usage_limit, c.usage_limit_per_customer, c.minimum_subtotal,
                    c.is_active, sorted(c.categories.values_list("pk", flat=True)),
                    sorted(c.products.values_list("pk", flat=True)))
             for c in Coupon.objects.all()}
    assert after == before


def test_an_xlsx_export_imports_back_unchanged_too(staff_client, shelf):
    coupon = Coupon.objects.create(
        code="XL", kind="fixed", value="99.99", starts_at=timezone.now(), usage_limit=3,
        minimum_subtotal="10.50", is_active=False)
    coupon.categories.set(Category.objects.all())
    response = staff_client.post(f"{COUPONS}export/", {"format": "1", "resource": "0"})
    assert response.status_code == 200
    upload = SimpleUploadedFile("coupons.xlsx", response.content)
    response = staff_client.post(f"{COUPONS}import/", {"import_file": upload, "format": "1",
                                                       "resource": "0"})
    result = response.context["result"]
    assert not result.has_errors() and not result.has_validation_errors()
    assert (result.totals["skip"], result.totals["update"], result.totals["new"]) == (1, 0, 0)


def test_categories_may_be_given_by_id(shelf):
    from tablib import Dataset

    from backoffice.promotions.admin import CouponResource

    clothing = Category.objects.get(slug="clothing")
    dataset = Dataset().load(HEADER + f"IDS,,fixed,5,,,,,,1,{clothing.pk},\n", format="csv")
    result = CouponResource().import_data(dataset, dry_run=False)
    assert not result.has_errors() and not result.has_validation_errors()
    assert list(Coupon.objects.get().categories.all()) == [clothing]


def test_coupon_export_queries_do_not_grow_with_coupons(
    staff_client, shelf, django_assert_max_num_queries
):
    clothing = Category.objects.get(slug="clothing")
    for i in range(30):
        coupon = Coupon.objects.create(code=f"C{i}", kind="fixed", value=5)
        coupon.categories.add(clothing)
        coupon.products.set(Product.objects.all())
    # Session and user, then a page of coupons (count, rows) with their categories and
    # products prefetched.
    with cachalot_disabled(), django_assert_max_num_queries(6):
        response = staff_client.post(f"{COUPONS}export/", {"format": "0", "resource": "0"})
    assert len(list(csv.DictReader(io.StringIO(response.content.decode())))) == 30
