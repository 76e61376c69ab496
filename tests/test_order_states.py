"""An order's payment and fulfilment states, each its own machine, and the overall status derived
from them: a refund never moves fulfilment, a shipment never moves payment, delivered is never
undone; the admin offers only what the states allow and refuses the rest in the services'
words; the API answers with both states; existing orders move to the new fields."""

from __future__ import annotations

import importlib
import json
import threading
import time
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.contrib.admin import helpers
from django.db import connection, connections, models, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from backoffice.catalog.models import Category, Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart
from backoffice.checkout.services import CheckoutRequest, place_order
from backoffice.customers.services import start_session
from backoffice.integrations.services import create_api_key
from backoffice.inventory import services as inventory
from backoffice.inventory.models import Stock, Warehouse
from backoffice.inventory.services import Actor, adjust_stock
from backoffice.orders import services as orders
from backoffice.orders.models import Order, OrderEvent, OrderLine, Shipment
from backoffice.orders.selectors import morning_numbers, to_fulfil_q
from backoffice.orders.status import (
    FulfilmentStatus,
    OrderStatus,
    PaymentStatus,
    fulfilment_of,
    overall_status,
)
from backoffice.payments import services as payments
from backoffice.payments.models import Payment
from backoffice.plugin_host.services import activate_plugins

pytestmark = pytest.mark.django_db

ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "+254700000001"}
ORDERS = "/admin/orders/order/"
F, P, S = FulfilmentStatus, PaymentStatus, OrderStatus
CLERK = Actor(label="clerk")


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


def place(*items, key: str, cod: bool = False, user=None) -> Order:
    """An order of (sku, quantity) items: cash on delivery (``manual``) or paid first."""
    cart = Cart.objects.create(user=user)
    for sku, quantity in items:
        carts.add_to_cart(cart=cart, sku=sku, quantity=quantity)
    order, _ = place_order(cart, CheckoutRequest(
        shipping_address=ADDRESS, shipping_method="flat_rate",
        email="amina@example.com" if user is None else "",
        payment_method="manual" if cod else ""), idempotency_key=key, user=user)
    return Order.objects.get(pk=order.pk)


def fresh(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def states(order: Order) -> tuple[str, str, str]:
    order = fresh(order)
    return order.status, order.payment_status, order.fulfilment_status


def line(order: Order, sku: str) -> OrderLine:
    return order.lines.get(sku=sku)


def delivered_paid_partly_refunded(key="dpr") -> Order:
    """The issue's order: delivered, paid, partly refunded."""
    order = place(("TEE", 2), ("MUG", 1), key=key)
    orders.mark_paid(order)
    orders.create_shipment(order, orders.ShipmentRequest(carrier="G4S"))
    orders.mark_delivered(order)
    orders.record_refund(order, orders.RefundRequest(lines={line(order, "MUG").pk: 1},
                                                     restock=True, reason="chipped"))
    assert states(order) == (S.COMPLETED, P.PARTIALLY_REFUNDED, F.DELIVERED)
    return fresh(order)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def bulk(client, action: str, *selected: Order):
    return client.post(ORDERS, {"action": action, "index": 0,
                                helpers.ACTION_CHECKBOX_NAME: [o.pk for o in selected]},
                       follow=True)


def detail_urls(client, order: Order) -> set[str]:
    """The per-order action URLs the order page links or posts to (header and action menu)."""
    html = client.get(f"{ORDERS}{order.pk}/change/").content.decode()
    names = ["mark-paid", "mark-processing", "mark-delivered", "cancel", "ship", "refund"]
    return {name for name in names if f"{ORDERS}{order.pk}/{name}/" in html}


# --- The rule, as data --------------------------------------------------------------------------


@pytest.mark.parametrize(("payment", "fulfilment", "cancelled", "left", "overall"), [
    (P.UNPAID, F.UNFULFILLED, False, 2, S.OPEN),
    (P.PAID, F.UNFULFILLED, False, 2, S.OPEN),
    (P.PAID, F.SHIPPED, False, 0, S.OPEN),
    (P.PAID, F.DELIVERED, False, 0, S.COMPLETED),
    (P.PARTIALLY_REFUNDED, F.DELIVERED, False, 0, S.COMPLETED),
    (P.UNPAID, F.DELIVERED, False, 0, S.OPEN),  # cash on delivery: waiting for the cash
    (P.OVERPAID, F.DELIVERED, False, 0, S.OPEN),  # a second payment to give back
    (P.REFUNDED, F.UNFULFILLED, False, 2, S.COMPLETED),  # all money back: nothing ships
    (P.PARTIALLY_REFUNDED, F.UNFULFILLED, False, 0, S.COMPLETED),  # every unit refunded
    (P.PAID, F.UNFULFILLED, True, 2, S.CANCELLED),
    (P.UNPAID, F.UNFULFILLED, True, 2, S.CANCELLED),
])
def test_the_overall_status_is_one_function_of_the_states(payment, fulfilment, cancelled, left,
                                                          overall):
    assert overall_status(payment=payment, fulfilment=fulfilment, cancelled=cancelled,
                          left_to_ship=left) == overall


def test_fulfilment_follows_the_goods():
    assert fulfilment_of(shipments=0, delivered=0, left_to_ship=3) == F.UNFULFILLED
    assert fulfilment_of(shipments=1, delivered=0, left_to_ship=2) == F.PARTIALLY_SHIPPED
    assert fulfilment_of(shipments=2, delivered=0, left_to_ship=0) == F.SHIPPED
    assert fulfilment_of(shipments=2, delivered=1, left_to_ship=0) == F.PARTIALLY_DELIVERED
    assert fulfilment_of(shipments=1, delivered=1, left_to_ship=1) == F.PARTIALLY_DELIVERED
    assert fulfilment_of(shipments=2, delivered=2, left_to_ship=0) == F.DELIVERED


# --- Payment and fulfilment move apart ----------------------------------------------------------


def _at(fulfilment: str, shelf, key: str) -> Order:
    """A paid order of 2 tees and 2 mugs, brought to ``fulfilment``."""
    order = place(("TEE", 2), ("MUG", 2), key=key)
    orders.mark_paid(order)
    tee, mug = line(order, "TEE"), line(order, "MUG")
    if fulfilment != F.UNFULFILLED:
        first = orders.create_shipment(order, orders.ShipmentRequest(lines={tee.pk: 2}))
        if fulfilment in {F.SHIPPED, F.PARTIALLY_DELIVERED, F.DELIVERED}:
            orders.create_shipment(order, orders.ShipmentRequest(lines={mug.pk: 2}))
        if fulfilment == F.PARTIALLY_DELIVERED:
            orders.mark_delivered(order, shipment_id=first.pk)
        if fulfilment == F.DELIVERED:
            orders.mark_delivered(order)
    assert fresh(order).fulfilment_status == fulfilment
    return fresh(order)


@pytest.mark.parametrize("fulfilment", [F.UNFULFILLED, F.PARTIALLY_SHIPPED, F.SHIPPED,
                                        F.PARTIALLY_DELIVERED, F.DELIVERED])
def test_a_refund_never_moves_fulfilment(shelf, fulfilment):
    order = _at(fulfilment, shelf, key=f"refund-{fulfilment}")
    tee = line(order, "TEE")
    # An amount, then a shipped (or unshipped) tee back on the shelf, then everything left.
    orders.record_refund(order, orders.RefundRequest(amount=Decimal("5.00")))
    assert fresh(order).payment_status == P.PARTIALLY_REFUNDED
    orders.record_refund(order, orders.RefundRequest(lines={tee.pk: 1}, restock=True))
    orders.record_refund(order, orders.RefundRequest())
    order = fresh(order)
    assert (order.payment_status, order.fulfilment_status) == (P.REFUNDED, fulfilment)
    moved = order.events.filter(kind="status", state="fulfilment",
                                created_at__gte=order.events.filter(kind="refund")
                                .first().created_at)
    assert not moved.exists(), "no fulfilment move after the first refund"


@pytest.mark.parametrize("payment", [P.UNPAID, P.PAID, P.PARTIALLY_REFUNDED, P.OVERPAID])
def test_a_shipment_or_a_delivery_never_moves_payment(shelf, payment):
    order = place(("TEE", 2), key=f"ship-{payment}", cod=payment == P.UNPAID)
    if payment != P.UNPAID:
        orders.mark_paid(order)
    if payment == P.PARTIALLY_REFUNDED:
        orders.record_refund(order, orders.RefundRequest(amount=Decimal("10.00")))
    if payment == P.OVERPAID:
        orders.payment_received(order, actor=CLERK)
    assert fresh(order).payment_status == payment
    payment_moves = order.events.filter(kind="status", state="payment").count()
    orders.create_shipment(order, orders.ShipmentRequest(lines={line(order, "TEE").pk: 1}))
    assert states(order)[1:] == (payment, F.PARTIALLY_SHIPPED)
    orders.create_shipment(order, orders.ShipmentRequest())
    orders.mark_delivered(order)
    assert states(order)[1:] == (payment, F.DELIVERED)
    assert order.events.filter(kind="status", state="payment").count() == payment_moves


def test_cash_on_delivery_ships_unpaid_and_is_completed_when_the_cash_is_in(shelf):
    cod = place(("MUG", 1), key="cod", cod=True)
    card = place(("MUG", 1), key="card")
    assert (cod.pay_on_delivery, card.pay_on_delivery) == (True, False)
    numbers = morning_numbers()
    assert (numbers.to_fulfil, numbers.awaiting_payment) == (1, 2), "COD is to fulfil unpaid"
    with pytest.raises(orders.OrderError) as refused:
        orders.create_shipment(card, orders.ShipmentRequest())
    assert "This one is unpaid and not paid on delivery." in str(refused.value)
    orders.create_shipment(cod, orders.ShipmentRequest(carrier="Sendy"))
    orders.mark_delivered(cod)
    assert states(cod) == (S.OPEN, P.UNPAID, F.DELIVERED)
    payments.record_manual_payment(cod.pk, actor=CLERK, note="Cash from the rider")
    assert states(cod) == (S.COMPLETED, P.PAID, F.DELIVERED)
    assert Payment.objects.get(order=cod).status == "succeeded"


def test_every_move_writes_one_event_with_actor_state_from_to_and_note(shelf):
    order = place(("MUG", 1), key="events")
    orders.mark_paid(order, actor=CLERK, note="Till 2")
    orders.create_shipment(order, orders.ShipmentRequest(), actor=Actor(label="warehouse"))
    moves = list(fresh(order).events.filter(kind="status").values_list(
        "state", "from_status", "to_status", "actor_label", "note"))
    assert moves == [("payment", "unpaid", "paid", "clerk", "Till 2"),
                     ("fulfilment", "unfulfilled", "shipped", "warehouse", "")]
    assert [e.change for e in fresh(order).events.filter(kind="status")] == [
        "Payment: unpaid → paid", "Fulfilment: unfulfilled → shipped"]


def test_a_second_payment_makes_the_order_overpaid_until_it_goes_back(shelf):
    order = place(("MUG", 1), key="twice")
    orders.payment_received(order, actor=CLERK)
    orders.payment_received(order, actor=CLERK)
    order = fresh(order)
    assert (order.payment_status, order.refund_due) == (P.OVERPAID, True)
    assert morning_numbers().refunds_due == 1
    orders.overpayment_returned(order, actor=CLERK)
    assert (fresh(order).payment_status, fresh(order).refund_due) == (P.PAID, False)


def test_a_payment_after_a_cancel_is_kept_and_flagged_and_staff_cannot_mark_it_paid(shelf):
    order = place(("MUG", 1), key="late")
    orders.cancel_order(order, actor=CLERK)
    with pytest.raises(orders.OrderError):
        payments.record_manual_payment(order.pk, actor=CLERK)
    assert fresh(order).payment_status == P.UNPAID
    orders.payment_received(order, actor=Actor(label="stripe payment"))  # a provider's money
    order = fresh(order)
    assert (order.status, order.payment_status, order.refund_due) == (
        S.CANCELLED, P.PAID, True)
    assert order.events.filter(note__startswith="Payment received after the order was "
                                                "cancelled").exists()
    orders.record_refund(order, orders.RefundRequest())
    order = fresh(order)
    assert (order.status, order.payment_status, order.refund_due) == (
        S.CANCELLED, P.REFUNDED, False)


# --- The admin ----------------------------------------------------------------------------------


def test_delivered_is_never_undone_by_any_admin_action(staff_client, shelf):
    order = delivered_paid_partly_refunded()
    # The page offers no status move that could undo it: only a further refund.
    assert detail_urls(staff_client, order) == {"refund"}
    before = states(order)
    for path in ("mark-paid", "mark-delivered", "cancel", "ship", "mark-processing"):
        staff_client.post(f"{ORDERS}{order.pk}/{path}/", {"note": "x"}, follow=True)
        assert states(order) == before, path
    for action in ("mark_paid", "mark_delivered", "cancel_orders", "mark_processing"):
        bulk(staff_client, action, order)
        assert states(order) == before, action
    response = staff_client.post(f"{ORDERS}{order.pk}/refund/", {"amount": "10"}, follow=True)
    assert "Refund of USD 10.00 recorded." in messages_of(response)
    assert states(order) == (S.COMPLETED, P.PARTIALLY_REFUNDED, F.DELIVERED)
    assert not Shipment.objects.filter(order=order, delivered_at__isnull=True).exists()


def test_the_admin_offers_only_what_the_states_allow(staff_client, shelf):
    card = place(("MUG", 1), key="card")
    assert detail_urls(staff_client, card) == {"mark-paid", "cancel"}
    cod = place(("MUG", 1), key="cod", cod=True)
    assert detail_urls(staff_client, cod) == {"mark-paid", "cancel", "ship"}
    orders.mark_paid(card)
    assert detail_urls(staff_client, card) == {"cancel", "ship", "refund"}
    orders.create_shipment(card, orders.ShipmentRequest())
    assert detail_urls(staff_client, card) == {"mark-delivered", "refund"}
    orders.cancel_order(cod)
    assert detail_urls(staff_client, cod) == set()
    # unfold's action menu is filtered the same way (``get_actions_detail``).
    response = staff_client.get(f"{ORDERS}{cod.pk}/change/")
    menu = [item["path"] for entry in response.context["actions_detail"]
            for item in entry.get("items", [entry])]
    assert menu == [f"{ORDERS}{cod.pk}/packing-slip/", f"{ORDERS}{cod.pk}/invoice/",
                    f"{ORDERS}{cod.pk}/note/"]


def test_a_direct_post_of_a_hidden_action_is_refused_in_the_services_words(staff_client, shelf):
    card = place(("MUG", 2), key="card")
    mug = line(card, "MUG")
    events = card.events.count()
    expected = {
        "ship": ("An order ships only while it is not cancelled and is paid, or paid on "
                 "delivery. This one is unpaid and not paid on delivery."),
        "mark-delivered": "Nothing has shipped yet; create a shipment first.",
        "refund": "Nothing has been paid for this order, so nothing can be refunded.",
    }
    data = {"ship": {f"line_{mug.pk}": 2}, "refund": {"amount": "10"}}
    for path, message in expected.items():
        response = staff_client.post(f"{ORDERS}{card.pk}/{path}/", data.get(path, {}),
                                     follow=True)
        assert message in messages_of(response), path
        # A GET of it (a stale page, a typed URL) says the same and offers nothing.
        response = staff_client.get(f"{ORDERS}{card.pk}/{path}/", follow=True)
        assert messages_of(response) == [message], path
        assert response.redirect_chain == [(f"{ORDERS}{card.pk}/change/", 302)]
    assert fresh(card).events.count() == events
    assert states(card) == (S.OPEN, P.UNPAID, F.UNFULFILLED)


def test_each_form_says_what_it_does_in_the_words_the_service_refuses_with(staff_client, shelf):
    order = place(("MUG", 1), key="words", cod=True)
    for path, rule in (("mark-paid", orders.RULES["mark_paid"]),
                       ("cancel", orders.RULES["cancel"]),
                       ("ship", orders.RULES["ship"])):
        html = staff_client.get(f"{ORDERS}{order.pk}/{path}/").content.decode()
        assert rule in html, path
    orders.create_shipment(order, orders.ShipmentRequest())
    response = staff_client.post(f"{ORDERS}{order.pk}/cancel/", follow=True)
    assert messages_of(response)[0].startswith(orders.RULES["cancel"])


def test_the_refund_page_of_an_unpaid_cash_on_delivery_order_offers_nothing(staff_client, shelf):
    order = place(("TEE", 4), ("MUG", 1), key="cod410", cod=True)
    orders.create_shipment(order, orders.ShipmentRequest())
    orders.mark_delivered(order)
    assert "refund" not in detail_urls(staff_client, order)
    response = staff_client.get(f"{ORDERS}{order.pk}/refund/", follow=True)
    html = response.content.decode()
    assert "can still be refunded" not in html and 'name="amount"' not in html
    assert messages_of(response) == [
        "Nothing has been paid for this order, so nothing can be refunded."]
    response = staff_client.post(f"{ORDERS}{order.pk}/refund/", {"amount": "410"}, follow=True)
    assert messages_of(response) == [
        "Nothing has been paid for this order, so nothing can be refunded."]
    assert not order.refunds.exists()
    # The cash comes in: now the page offers what was paid.
    payments.record_manual_payment(order.pk, actor=CLERK)
    html = staff_client.get(f"{ORDERS}{order.pk}/refund/").content.decode()
    assert "USD 505.00 can still be refunded" in html


def test_the_list_filters_and_badges_use_the_states(staff_client, shelf):
    unpaid = place(("MUG", 1), key="unpaid")
    cod = place(("MUG", 1), key="cod", cod=True)
    paid = place(("MUG", 1), key="paid")
    orders.mark_paid(paid)
    part = place(("MUG", 2), key="part")
    orders.mark_paid(part)
    orders.create_shipment(part, orders.ShipmentRequest(lines={line(part, "MUG").pk: 1}))
    rest_refunded = place(("MUG", 2), key="rest")  # part shipped, the rest refunded unshipped
    orders.mark_paid(rest_refunded)
    mug = line(rest_refunded, "MUG")
    orders.create_shipment(rest_refunded, orders.ShipmentRequest(lines={mug.pk: 1}))
    orders.record_refund(rest_refunded, orders.RefundRequest(lines={mug.pk: 1}))
    assert fresh(rest_refunded).fulfilment_status == F.PARTIALLY_SHIPPED, "refunds never move it"
    cancelled_paid = place(("MUG", 1), key="cancelled-paid")
    orders.mark_paid(cancelled_paid)
    orders.cancel_order(cancelled_paid)

    def listed(**params) -> set[int]:
        return {o.pk for o in staff_client.get(ORDERS, params).context["cl"].result_list}

    assert listed(status="to_fulfil") == {cod.pk, paid.pk, part.pk}
    assert listed(status="awaiting_payment") == {unpaid.pk, cod.pk}
    assert listed(status="refund_due") == {cancelled_paid.pk}
    assert listed(fulfilment_status="partially_shipped") == {part.pk, rest_refunded.pk}
    assert listed(payment_status="partially_refunded") == {rest_refunded.pk}
    numbers = morning_numbers()
    assert (numbers.to_fulfil, numbers.awaiting_payment, numbers.refunds_due) == (3, 2, 1)
    html = staff_client.get("/admin/").content.decode()
    assert f"{ORDERS}?status=to_fulfil" in html and f"{ORDERS}?status=refund_due" in html
    badge = html.split("h-[18px] leading-[18px]", 1)[1][:1000]
    assert ">3<" in badge.replace(" ", "").replace("\n", "")


# --- The API ------------------------------------------------------------------------------------


def test_every_order_answer_carries_both_states(client, shelf, django_user_model):
    user = django_user_model.objects.create_user("amina@example.com", "amina@example.com",
                                                 "pw-123-long-enough")
    order = place(("TEE", 2), key="api", user=user)
    orders.mark_paid(order)
    orders.create_shipment(order, orders.ShipmentRequest(lines={line(order, "TEE").pk: 1}))
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {start_session(user).access_token}"}
    key = {"HTTP_X_API_KEY": create_api_key(name="ERP", scopes=["orders:read"])[1]}
    answers = [
        client.get(f"/api/v1/orders/{order.number}", **bearer).json(),
        client.get("/api/v1/orders", **bearer).json()["items"][0],
        client.get(f"/api/v1/orders/by-token/{order.token}").json(),
        client.get(f"/api/v1/integrations/orders/{order.number}", **key).json(),
        client.get("/api/v1/integrations/orders?fulfilment_status=partially_shipped",
                   **key).json()["items"][0],
    ]
    for answer in answers:
        assert (answer["status"], answer["payment_status"], answer["fulfilment_status"]) == (
            "open", "paid", "partially_shipped")
        assert (answer["status_label"], answer["payment_status_label"],
                answer["fulfilment_status_label"]) == ("Open", "Paid", "Partially shipped")
        assert answer["can_cancel"] is False
    # A paid order is not cancelled by its customer: a 409 in the service's words.
    refused = client.post(f"/api/v1/orders/{order.number}/cancel", **bearer)
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "An order can be cancelled here only while it is unpaid and none of it has shipped. "
        "Part of this one has shipped: it can be refunded instead.")


def test_the_openapi_schema_documents_the_states_and_filters(client):
    schema = client.get("/api/v1/openapi.json").json()
    order = schema["components"]["schemas"]["OrderOut"]["properties"]
    for name in ("status", "payment_status", "fulfilment_status"):
        assert name in order
    assert "overpaid" in order["payment_status"]["description"]
    assert "partially_delivered" in order["fulfilment_status"]["description"]
    listing = schema["paths"]["/api/v1/integrations/orders"]["get"]["parameters"]
    names = {p["name"] for p in listing}
    assert {"status", "payment_status", "fulfilment_status"} <= names
    status = json.dumps(next(p for p in listing if p["name"] == "status"))
    assert "to_fulfil" in status and "completed" in status and "pending_payment" not in status


# --- Moving existing orders ---------------------------------------------------------------------


def _old(status: str, *, key: str, items=(("MUG", 1),), cod=False, **facts) -> Order:
    """An order as the old single status left it: the status column and the facts it had."""
    order = place(*items, key=key, cod=cod)
    Order.objects.filter(pk=order.pk).update(status=status, payment_status="unpaid",
                                             fulfilment_status="unfulfilled",
                                             **facts)
    return fresh(order)


def _old_shipment(order: Order, quantity: int, delivered: bool = False) -> None:
    shipment = Shipment.objects.create(order=order, shipped_at=timezone.now(),
                                       delivered_at=timezone.now() if delivered else None)
    mug = line(order, "MUG")
    shipment.lines.create(line=mug, quantity=quantity)
    OrderLine.objects.filter(pk=mug.pk).update(quantity_shipped=quantity)


def test_the_data_migration_moves_every_old_status_without_loss(shelf):
    migration = importlib.import_module(
        "backoffice.orders.migrations.0005_orders_to_payment_and_fulfilment")
    now = timezone.now()
    unpaid = _old("pending_payment", key="m-unpaid")
    cod = _old("processing", key="m-cod", cod=True, items=(("MUG", 2),))
    _old_shipment(cod, 1)
    paid = _old("paid", key="m-paid", paid_at=now)
    processing = _old("processing", key="m-processing", items=(("MUG", 2),), paid_at=now)
    _old_shipment(processing, 1)
    shipped = _old("shipped", key="m-shipped", paid_at=now)
    _old_shipment(shipped, 1)
    delivered = _old("delivered", key="m-delivered", paid_at=now)
    _old_shipment(delivered, 1, delivered=True)
    # The order: delivered, then partly refunded (the old status forgot the parcel).
    part_refunded = _old("partially_refunded", key="m-pr", paid_at=now,
                         refunded_total=Decimal("50.00"))
    _old_shipment(part_refunded, 1, delivered=True)
    refunded = _old("refunded", key="m-refunded", paid_at=now)
    Order.objects.filter(pk=refunded.pk).update(refunded_total=models.F("total"))
    cancelled = _old("cancelled", key="m-cancelled")
    OrderEvent.objects.create(order=cancelled, kind="status", from_status="pending_payment",
                              to_status="cancelled")
    late = _old("cancelled", key="m-late", paid_at=now)  # paid after it was cancelled
    twice = _old("paid", key="m-twice", paid_at=now)
    for reference in ("first", "second"):
        Payment.objects.create(order=twice, provider="stripe", amount=twice.total,
                               currency="USD", idempotency_key=f"k-{reference}",
                               provider_reference=reference, status="succeeded",
                               succeeded_at=now)
    no_paid_at = _old("paid", key="m-payment-only")
    Payment.objects.create(order=no_paid_at, provider="stripe", amount=no_paid_at.total,
                           currency="USD", idempotency_key="k-only", provider_reference="only",
                           status="succeeded", succeeded_at=now)

    migration.forwards(django_apps, None)

    expected = {
        unpaid: (S.OPEN, P.UNPAID, F.UNFULFILLED),
        cod: (S.OPEN, P.UNPAID, F.PARTIALLY_SHIPPED),
        paid: (S.OPEN, P.PAID, F.UNFULFILLED),
        processing: (S.OPEN, P.PAID, F.PARTIALLY_SHIPPED),
        shipped: (S.OPEN, P.PAID, F.SHIPPED),
        delivered: (S.COMPLETED, P.PAID, F.DELIVERED),
        part_refunded: (S.COMPLETED, P.PARTIALLY_REFUNDED, F.DELIVERED),
        refunded: (S.COMPLETED, P.REFUNDED, F.UNFULFILLED),
        cancelled: (S.CANCELLED, P.UNPAID, F.UNFULFILLED),
        late: (S.CANCELLED, P.PAID, F.UNFULFILLED),
        twice: (S.OPEN, P.OVERPAID, F.UNFULFILLED),
        no_paid_at: (S.OPEN, P.PAID, F.UNFULFILLED),
    }
    assert {o.number: states(o) for o in expected} == {
        o.number: tuple(v) for o, v in expected.items()}
    assert fresh(cod).pay_on_delivery and not fresh(paid).pay_on_delivery
    assert fresh(late).refund_due and fresh(twice).refund_due and not fresh(paid).refund_due
    assert fresh(cancelled).cancelled_at == cancelled.events.get(kind="status").created_at
    assert fresh(late).cancelled_at is not None and fresh(paid).cancelled_at is None
    assert fresh(no_paid_at).paid_at == now

    # Backwards: the old status again, from the new states.
    migration.backwards(django_apps, None)
    back = {o.number: fresh(o).status for o in expected}
    assert back == {
        unpaid.number: "pending_payment", cod.number: "processing", paid.number: "paid",
        processing.number: "processing", shipped.number: "shipped",
        delivered.number: "delivered", part_refunded.number: "partially_refunded",
        refunded.number: "refunded", cancelled.number: "cancelled", late.number: "cancelled",
        twice.number: "paid", no_paid_at.number: "paid",
    }


@pytest.mark.django_db(transaction=True)
def test_the_migrations_run_both_ways_on_old_rows():
    """Back to the old schema, an old row written there, forward again: moved."""
    executor = MigrationExecutor(connection)
    old = [("orders", "0003_refund_payment")]
    executor.migrate(old)
    old_apps = executor.loader.project_state(old).apps
    OldOrder = old_apps.get_model("orders", "Order")  # noqa: N806
    order = OldOrder.objects.create(
        number="90001", email="a@example.com", currency="USD", subtotal="10.00",
        total="10.00", shipping_method_code="x", shipping_method_name="x",
        shipping_address={}, billing_address={}, status="paid", paid_at=timezone.now(),
        payment_due_at=timezone.now() + timedelta(hours=1))
    old_apps.get_model("orders", "OrderLine").objects.create(
        order=order, product_name="Mug", sku="MUG", unit_price="10.00", quantity=1,
        total="10.00")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    moved = Order.objects.get(pk=order.pk)
    assert (moved.status, moved.payment_status, moved.fulfilment_status, moved.pay_on_delivery) \
        == (S.OPEN, P.PAID, F.UNFULFILLED, False)


# --- Found by a review -----------------------------------------------------------------------


def test_migration_keeps_an_unpaid_order_accepted_for_processing_shippable_and_unexpired(shelf):
    """The old machine let any order go pending_payment -> processing unpaid (a bank transfer an
    ERP accepted through the integration API), and the old expiry job touched only
    pending_payment. After 0005 such an order, payment window and all, still ships unpaid and
    the expiry job leaves it alone."""
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
    assert orders.expire_unpaid_orders() == 0
    assert Order.objects.get(pk=order.pk).status != OrderStatus.CANCELLED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_refund_with_restock_and_release_does_not_deadlock_with_checkout(monkeypatch):
    """A refund releases the unshipped lines' stock, then restocks the shipped ones: it locks
    every row it may touch first, in primary-key order, so a checkout of the same two variants
    that comes in between waits instead of deadlocking (the restock is slowed to widen the
    window)."""
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
    """Refunded in full before shipping, then paid again (a stale checkout session): the money
    is a refund due, and nothing ships (no unit would have an allocation behind it)."""
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
    early = place(("MUG", 1), key="cod-switched-early", cod=True)
    payments._switch_method(early, "stripe", card)
    early = Order.objects.get(pk=early.pk)
    assert not early.pay_on_delivery and early.payment_due_at is not None
