"""Payments end to end: cart to paid with every bundled provider, over the API, with the
providers answered at the HTTP level (``responses``) with the payloads their documentation
shows, and webhooks signed as the providers sign them.

The invariants: a webhook replayed ten times changes the payment once; a success whose amount
or currency differs is refused; an unverifiable webhook is a 400 and stores nothing; a late or
out-of-order event changes nothing it should not; only the order's owner sees or starts its
payments; a provider that times out leaves the order consistent and is asked again.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
import responses
from django.utils import timezone

from backoffice.catalog.models import Product, Variant
from backoffice.inventory.models import Stock, Warehouse
from backoffice.inventory.services import Actor, adjust_stock
from backoffice.orders import services as orders
from backoffice.orders.models import Order, OrderEvent, Refund
from backoffice.payments import services as payments
from backoffice.payments.models import Payment, PaymentEvent
from backoffice.payments.status import TRANSITIONS, PaymentStatus, can_move
from backoffice.plugin_host.models import PluginEvent
from backoffice.plugin_host.services import activate_plugins, update_plugin_config

pytestmark = pytest.mark.django_db

ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "0712 345 678"}
STRIPE_API = "https://api.stripe.com/v1"
STRIPE_SECRET = "whsec_test_secret"
DARAJA = "https://sandbox.safaricom.co.ke"
MPESA_TOKEN = "x" * 32
CHAPA_API = "https://api.chapa.co/v1"
CHAPA_SECRET = "chapa-webhook-secret"


@pytest.fixture(autouse=True)
def shop(settings):
    settings.PUBLIC_URL = "https://shop.example.com"
    # Transactional tests empty the tables after each test, the migration's warehouse too.
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    activate_plugins(["flat_rate_shipping", "manual_payment"])
    update_plugin_config(identifier="stripe", active=True, changes={
        "secret_key": "sk_test_123", "webhook_secret": STRIPE_SECRET})
    update_plugin_config(identifier="mpesa", active=True, changes={
        "consumer_key": "ck", "consumer_secret": "cs", "shortcode": "174379",
        "passkey": "passkey", "callback_token": MPESA_TOKEN})
    update_plugin_config(identifier="chapa", active=True, changes={
        "secret_key": "CHASECK_TEST-abc", "webhook_secret": CHAPA_SECRET})
    product = Product.objects.create(name="Mug", slug="mug")
    mug = Variant.objects.create(product=product, sku="MUG", name="", price="300.00")
    adjust_stock(variant_id=mug.pk, quantity_change=5)
    return mug


# --- helpers ------------------------------------------------------------------------------------


def guest_order(client, payment_method="stripe", quantity=2):
    token = client.post("/api/v1/cart").json()["token"]
    headers = {"HTTP_X_CART_TOKEN": token}
    client.post("/api/v1/cart/lines", {"sku": "MUG", "quantity": quantity},
                content_type="application/json", **headers)
    response = client.post("/api/v1/checkout", {
        "shipping_method": "flat_rate", "shipping_address": ADDRESS,
        "email": "amina@example.com", "payment_method": payment_method,
    }, content_type="application/json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()), **headers)
    assert response.status_code == 201, response.json()
    return response.json()


def start(client, order, provider, **body):
    return client.post(f"/api/v1/orders/by-token/{order['token']}/payments",
                       {"provider": provider, **body}, content_type="application/json")


def poll(client, order, payment_id):
    return client.get(f"/api/v1/orders/by-token/{order['token']}/payments/{payment_id}").json()


def stripe_session(session_id="cs_test_a1", amount=60500, currency="usd", **extra):
    return {
        "id": session_id, "object": "checkout.session", "amount_total": amount,
        "currency": currency, "mode": "payment", "status": "open", "payment_status": "unpaid",
        "payment_intent": None, "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        "client_reference_id": "1", "metadata": {}, "livemode": False, **extra,
    }


def stripe_webhook(client, event_type, obj, event_id=None, secret=STRIPE_SECRET):
    payload = json.dumps({
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}", "object": "event",
        "api_version": "2025-08-27.basil", "created": int(time.time()), "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
        "type": event_type, "data": {"object": obj},
    })
    timestamp = int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(),
                         hashlib.sha256).hexdigest()
    return client.post("/api/v1/payments/webhooks/stripe/", payload,
                       content_type="application/json",
                       HTTP_STRIPE_SIGNATURE=f"t={timestamp},v1={signature}")


def completed(session_id="cs_test_a1", amount=60500, currency="usd", intent="pi_test_1"):
    return stripe_session(session_id, amount, currency, status="complete",
                          payment_status="paid", payment_intent=intent)


def stripe_paid(client, django_capture_on_commit_callbacks, order=None):
    order = order or guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions", json=stripe_session())
    payment = start(client, order, "stripe").json()
    with django_capture_on_commit_callbacks(execute=True):
        assert stripe_webhook(client, "checkout.session.completed",
                              completed()).status_code == 200
    return order, Payment.objects.get(pk=payment["id"])


def status_events(payment_id):
    return [e.payload["new_status"] for e in PluginEvent.objects.filter(
        hook="payment_status_changed").order_by("id") if e.payload["payment_id"] == payment_id]


@pytest.fixture
def listener(register_plugin):
    """A plugin listening to payment_status_changed, so its outbox rows can be counted."""
    from backoffice.hookspecs import hookimpl

    class Listener:
        hookspec_version = ">=1.0,<2"

        @staticmethod
        @hookimpl
        def payment_status_changed(payment_id, new_status):
            return None

    register_plugin(Listener(), "payment_listener")


# --- the status machine -------------------------------------------------------------------------


def test_the_status_machine_knows_every_status_and_never_leaves_refunded():
    assert set(TRANSITIONS) == set(PaymentStatus.values)
    assert not TRANSITIONS[PaymentStatus.REFUNDED]
    assert can_move("failed", "succeeded") and not can_move("succeeded", "failed")
    assert not can_move("succeeded", "pending") and not can_move("cancelled", "failed")


def test_the_methods_on_offer_are_the_active_payment_plugins(client):
    methods = {m["code"] for m in client.get("/api/v1/payments/methods").json()}
    assert {"manual", "stripe", "mpesa", "chapa"} <= methods


# --- Stripe -------------------------------------------------------------------------------------


@responses.activate
def test_stripe_cart_to_paid_and_a_webhook_replayed_ten_times_counts_once(
    client, django_capture_on_commit_callbacks, listener
):
    order = guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions", json=stripe_session())
    started = start(client, order, "stripe")
    assert started.status_code == 201, started.json()
    body = started.json()
    assert body["status"] == "requires_action"
    assert body["next_action"] == {"kind": "redirect", "message": "",
                                   "url": "https://checkout.stripe.com/c/pay/cs_test_a1"}
    sent = responses.calls[0].request
    assert "line_items" in sent.body and "60500" not in sent.body  # per-line, in cents
    assert sent.headers["Idempotency-Key"].startswith("pay-")
    # Pressing "pay" again answers with the same open payment, no second session.
    again = start(client, order, "stripe")
    assert (again.status_code, again.json()["id"]) == (200, body["id"])
    assert len(responses.calls) == 1

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(10):
            answer = stripe_webhook(client, "checkout.session.completed", completed(),
                                    event_id="evt_paid_1")
            assert answer.status_code == 200
    assert PaymentEvent.objects.filter(provider="stripe").count() == 1
    payment = Payment.objects.get(pk=body["id"])
    assert (payment.status, payment.provider_payment_id) == ("succeeded", "pi_test_1")
    assert status_events(payment.pk) == ["requires_action", "succeeded"]
    placed = Order.objects.get(number=order["number"])
    assert placed.payment_status == "paid" and placed.paid_at is not None
    assert OrderEvent.objects.filter(order=placed, to_status="paid").count() == 1
    polled = poll(client, order, payment.pk)
    assert (polled["status"], polled["next_action"], polled["paid_at"] is not None) == (
        "succeeded", None, True)
    # Paid: the stock stays allocated and the expiry job leaves the order alone.
    assert orders.expire_unpaid_orders(now=timezone.now() + timedelta(days=2)) == 0
    assert Stock.objects.get().quantity_allocated == 2


@responses.activate
def test_an_unverifiable_stripe_webhook_is_a_400_and_stores_nothing(client):
    order = guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions", json=stripe_session())
    start(client, order, "stripe")
    forged = stripe_webhook(client, "checkout.session.completed", completed(),
                            secret="whsec_wrong")
    assert (forged.status_code, forged.json()["code"]) == (400, "invalid_webhook")
    unsigned = client.post("/api/v1/payments/webhooks/stripe/", "{}",
                           content_type="application/json")
    assert unsigned.status_code == 400
    unknown = client.post("/api/v1/payments/webhooks/paypal/", "{}",
                          content_type="application/json")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_payment_method")
    assert not PaymentEvent.objects.exists()
    assert Order.objects.get(number=order["number"]).paid_at is None


@responses.activate
def test_a_stripe_success_for_another_amount_or_currency_is_refused(
    client, django_capture_on_commit_callbacks
):
    order = guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions", json=stripe_session())
    payment_id = start(client, order, "stripe").json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        stripe_webhook(client, "checkout.session.completed", completed(amount=100))
        stripe_webhook(client, "checkout.session.completed", completed(currency="eur"))
    payment = Payment.objects.get(pk=payment_id)
    assert payment.status == "requires_action" and "Not accepted" in payment.message
    assert Order.objects.get(number=order["number"]).paid_at is None
    errors = list(PaymentEvent.objects.values_list("error", flat=True))
    assert len(errors) == 2 and all(errors)
    assert OrderEvent.objects.filter(note__contains="does not match").count() == 2


@responses.activate
def test_events_out_of_order_and_for_unknown_payments_change_nothing_they_should_not(
    client, django_capture_on_commit_callbacks
):
    order, payment = stripe_paid(client, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        late = stripe_webhook(client, "checkout.session.expired",
                              stripe_session(status="expired"))
        stranger = stripe_webhook(client, "checkout.session.completed",
                                  completed(session_id="cs_not_ours", intent="pi_other"))
    assert late.status_code == stranger.status_code == 200
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    expired = PaymentEvent.objects.get(claims__status="cancelled")
    assert expired.processed_at and "ignored" in expired.outcome
    unknown = PaymentEvent.objects.get(claims__provider_reference="cs_not_ours")
    assert unknown.processed_at and "no payment" in unknown.error and unknown.payment is None


@responses.activate
def test_stripe_timeout_on_start_keeps_the_order_and_the_retry_reuses_the_key(client):
    order = guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions",
                  body=requests.exceptions.ConnectionError("connection reset"))
    first = start(client, order, "stripe")
    assert (first.status_code, first.json()["code"]) == (503, "provider_unavailable")
    payment = Payment.objects.get()
    assert payment.status == "pending" and payment.provider_reference is None
    assert Order.objects.get(number=order["number"]).payment_status == "unpaid"
    responses.replace(responses.POST, f"{STRIPE_API}/checkout/sessions", json=stripe_session())
    second = start(client, order, "stripe")
    assert second.status_code == 200 and second.json()["id"] == payment.pk
    keys = {call.request.headers.get("Idempotency-Key") for call in responses.calls}
    assert keys == {payment.idempotency_key}


@responses.activate
def test_stripe_refusing_the_start_is_a_422_with_its_message(client):
    order = guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions", status=400, json={
        "error": {"type": "invalid_request_error", "message": "Invalid currency: xyz"}})
    refused = start(client, order, "stripe")
    assert refused.status_code == 422 and "Invalid currency" in refused.json()["detail"]
    assert Payment.objects.get().status == "failed"


@responses.activate
def test_an_admin_refunds_a_stripe_payment_through_stripe(
    client, staff_client, django_capture_on_commit_callbacks
):
    order, payment = stripe_paid(client, django_capture_on_commit_callbacks)
    placed = Order.objects.get(number=order["number"])
    responses.add(responses.POST, f"{STRIPE_API}/refunds", json={
        "id": "re_test_1", "object": "refund", "amount": 20000, "currency": "usd",
        "payment_intent": "pi_test_1", "status": "succeeded", "charge": "ch_test_1",
        "metadata": {}, "reason": None})
    page = staff_client.get(f"/admin/orders/order/{placed.pk}/refund/")
    assert b"goes back through stripe" in page.content
    response = staff_client.post(f"/admin/orders/order/{placed.pk}/refund/",
                                 {"amount": "200.00", "reason": "broken handle"})
    assert response.status_code == 302
    sent = responses.calls[-1].request
    assert "payment_intent=pi_test_1" in sent.body and "amount=20000" in sent.body
    assert sent.headers["Idempotency-Key"].startswith("refund-")
    refund = Refund.objects.get()
    assert (refund.status, refund.provider_refund_id, refund.payment_id) == (
        "succeeded", "re_test_1", payment.pk)
    payment.refresh_from_db()
    placed.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("200.00"))
    assert (placed.payment_status, placed.refunded_total) == (
        "partially_refunded", Decimal("200.00"))
    assert placed.fulfilment_status == "unfulfilled", "a refund never moves fulfilment"
    # Stripe's own charge.refunded for that refund changes nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        stripe_webhook(client, "charge.refunded", {
            "id": "ch_test_1", "object": "charge", "amount": 60500, "amount_refunded": 20000,
            "currency": "usd", "payment_intent": "pi_test_1", "refunded": False,
            "refunds": {"object": "list", "data": [
                {"id": "re_test_1", "object": "refund", "amount": 20000, "status": "succeeded"}
            ]}})
    assert Refund.objects.count() == 1
    assert Order.objects.get(pk=placed.pk).refunded_total == Decimal("200.00")


@responses.activate
def test_a_pending_stripe_refund_waits_for_charge_refunded_and_a_dashboard_refund_is_recorded(
    client, django_capture_on_commit_callbacks
):
    order, payment = stripe_paid(client, django_capture_on_commit_callbacks)
    placed = Order.objects.get(number=order["number"])
    responses.add(responses.POST, f"{STRIPE_API}/refunds", json={
        "id": "re_pending", "object": "refund", "amount": 10000, "currency": "usd",
        "payment_intent": "pi_test_1", "status": "pending", "metadata": {}})
    refund = payments.refund_order(placed, orders.RefundRequest(amount=Decimal("100.00")),
                                   actor=Actor(label="clerk"))
    assert (refund.status, refund.provider_refund_id) == ("pending", "re_pending")
    assert Order.objects.get(pk=placed.pk).refunded_total == 0
    charge = {"id": "ch_test_1", "object": "charge", "amount": 60500, "currency": "usd",
              "payment_intent": "pi_test_1", "refunded": False}
    with django_capture_on_commit_callbacks(execute=True):
        stripe_webhook(client, "charge.refunded", {**charge, "amount_refunded": 10000,
                       "refunds": {"object": "list", "data": [
                           {"id": "re_pending", "amount": 10000, "status": "succeeded"}]}})
        # Then the merchant refunds the rest from Stripe's dashboard.
        stripe_webhook(client, "charge.refunded", {**charge, "amount_refunded": 60500,
                       "refunded": True, "refunds": {"object": "list", "data": [
                           {"id": "re_pending", "amount": 10000, "status": "succeeded"},
                           {"id": "re_dash", "amount": 50500, "status": "succeeded"}]}})
    refunds = list(Refund.objects.order_by("id").values_list("status", "amount"))
    assert refunds == [("succeeded", Decimal("100.00")), ("succeeded", Decimal("505.00"))]
    placed.refresh_from_db()
    payment.refresh_from_db()
    assert (placed.payment_status, placed.refunded_total) == ("refunded", Decimal("605.00"))
    assert (payment.status, payment.amount_refunded) == ("refunded", Decimal("605.00"))
    assert Stock.objects.get().quantity_allocated == 0  # refunded in full: stock released


@responses.activate
def test_money_after_the_order_was_cancelled_is_kept_for_a_refund(
    client, django_capture_on_commit_callbacks
):
    order = guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions", json=stripe_session())
    payment_id = start(client, order, "stripe").json()["id"]
    assert orders.expire_unpaid_orders(now=timezone.now() + timedelta(hours=2)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        stripe_webhook(client, "checkout.session.completed", completed())
    placed = Order.objects.get(number=order["number"])
    assert placed.status == "cancelled" and placed.paid_at is not None
    assert placed.payment_status == "paid" and placed.refund_due, "kept, flagged for a refund"
    assert Payment.objects.get(pk=payment_id).status == "succeeded"
    assert OrderEvent.objects.filter(order=placed, note__contains="after the order was "
                                     "cancelled").exists()
    assert Stock.objects.get().quantity_allocated == 0


@responses.activate
def test_only_the_owner_starts_and_sees_payments(client, django_capture_on_commit_callbacks):
    def register(email):
        tokens = client.post("/api/v1/auth/register", {
            "email": email, "password": "correct-horse-battery-9"},
            content_type="application/json").json()
        return {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}

    amina, eve = register("amina@example.com"), register("eve@example.com")
    client.post("/api/v1/cart/lines", {"sku": "MUG", "quantity": 1},
                content_type="application/json", **amina)
    order = client.post("/api/v1/checkout", {
        "shipping_method": "flat_rate", "shipping_address": ADDRESS, "payment_method": "manual",
    }, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1", **amina).json()
    url = f"/api/v1/orders/{order['number']}/payments"
    assert client.post(url, {"provider": "manual"}, content_type="application/json",
                       **eve).status_code == 404
    assert client.post(url, {"provider": "manual"},
                       content_type="application/json").status_code == 401
    mine = client.post(url, {"provider": "manual"}, content_type="application/json", **amina)
    assert mine.status_code == 201
    body = mine.json()
    assert body["next_action"]["kind"] == "instructions"
    assert client.get(f"/api/v1/payments/{body['id']}", **eve).status_code == 404
    assert client.get(f"/api/v1/payments/{body['id']}", **amina).json()["id"] == body["id"]
    assert client.get("/api/v1/payments", **eve).json() == {"items": [], "count": 0}
    assert client.get("/api/v1/payments", **amina).json()["count"] == 1
    bad = client.post(url, {"provider": "paypal"}, content_type="application/json", **amina)
    assert (bad.status_code, bad.json()["code"]) == (404, "unknown_payment_method")


def test_polling_a_payment_is_a_fixed_number_of_queries(client, django_assert_max_num_queries):
    order = guest_order(client, payment_method="manual")
    payment_id = start(client, order, "manual").json()["id"]
    with django_assert_max_num_queries(3):
        assert poll(client, order, payment_id)["status"] == "pending"


def test_staff_mark_a_manual_payment_paid_with_an_order_event(client, staff_client):
    order = guest_order(client, payment_method="manual")
    payment_id = start(client, order, "manual").json()["id"]
    placed = Order.objects.get(number=order["number"])
    response = staff_client.post(f"/admin/orders/order/{placed.pk}/mark-paid/",
                                 {"note": "cash at the door"})
    assert response.status_code == 302
    payment = Payment.objects.get(pk=payment_id)
    placed.refresh_from_db()
    assert payment.status == "succeeded" and placed.payment_status == "paid"
    assert OrderEvent.objects.filter(order=placed, kind="payment",
                                     note__contains="succeeded").exists()
    assert Payment.objects.count() == 1
    page = staff_client.get(f"/admin/orders/order/{placed.pk}/change/")
    assert b"manual" in page.content and page.status_code == 200
    assert staff_client.get(f"/admin/payments/payment/{payment.pk}/change/").status_code == 200
    assert staff_client.get("/admin/payments/paymentevent/").status_code == 200
    # A refund of a manual payment is money given back by hand.
    refund = payments.refund_order(placed, orders.RefundRequest(), actor=Actor(label="clerk"))
    assert refund.status == "succeeded" and refund.payment_id == payment.pk
    assert Payment.objects.get(pk=payment.pk).status == "refunded"


# --- M-Pesa -------------------------------------------------------------------------------------


def daraja_token():
    responses.add(responses.GET, f"{DARAJA}/oauth/v1/generate",
                  json={"access_token": "tok", "expires_in": "3599"})


def stk_accepted(checkout_id="ws_CO_191220191020363925"):
    responses.add(responses.POST, f"{DARAJA}/mpesa/stkpush/v1/processrequest", json={
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout_id,
        "ResponseCode": "0", "ResponseDescription": "Success. Request accepted for processing",
        "CustomerMessage": "Success. Request accepted for processing"})


def stk_query(result_code="0", desc="The service request is processed successfully."):
    responses.add(responses.POST, f"{DARAJA}/mpesa/stkpushquery/v1/query", json={
        "ResponseCode": "0", "ResponseDescription": "The service request has been accepted "
        "successsfully", "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": "ws_CO_191220191020363925", "ResultCode": result_code,
        "ResultDesc": desc})


def mpesa_callback(client, result_code=0, amount="605.00", token=MPESA_TOKEN):
    body = {"Body": {"stkCallback": {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": "ws_CO_191220191020363925", "ResultCode": result_code,
        "ResultDesc": "The service request is processed successfully.",
    }}}
    if result_code == 0:
        body["Body"]["stkCallback"]["CallbackMetadata"] = {"Item": [
            {"Name": "Amount", "Value": "AMOUNT"}, {"Name": "MpesaReceiptNumber",
                                                    "Value": "NLJ7RT61SV"},
            {"Name": "Balance"}, {"Name": "TransactionDate", "Value": 20191219102115},
            {"Name": "PhoneNumber", "Value": 254712345678}]}
    raw = json.dumps(body).replace('"AMOUNT"', amount)  # a JSON number, as Daraja sends it
    return client.post(f"/api/v1/payments/webhooks/mpesa/?token={token}", raw,
                       content_type="application/json")


@pytest.fixture
def kes(settings):
    settings.STORE_CURRENCY = "KES"


@responses.activate
def test_mpesa_cart_to_paid_the_callback_confirmed_by_a_query(
    client, kes, django_capture_on_commit_callbacks
):
    order = guest_order(client, payment_method="mpesa")
    daraja_token()
    stk_accepted()
    started = start(client, order, "mpesa")
    assert started.status_code == 201, started.json()
    assert started.json()["next_action"]["kind"] == "approve_on_phone"
    push = json.loads(responses.calls[-1].request.body)
    assert (push["Amount"], push["PhoneNumber"]) == (605, "254712345678")
    assert push["CallBackURL"].startswith(
        "https://shop.example.com/api/v1/payments/webhooks/mpesa/")
    assert f"token={MPESA_TOKEN}" in push["CallBackURL"]
    stamp = push["Timestamp"]
    assert push["Password"] == base64.b64encode(f"174379passkey{stamp}".encode()).decode()

    assert mpesa_callback(client, token="guess").status_code == 400
    assert mpesa_callback(client, token="").status_code == 400
    assert not PaymentEvent.objects.exists()
    stk_query()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(10):
            assert mpesa_callback(client).status_code == 200
    event = PaymentEvent.objects.get()
    assert event.verified and event.processed_at and not event.error
    payment = Payment.objects.get()
    assert (payment.status, payment.provider_payment_id) == ("succeeded", "NLJ7RT61SV")
    assert Order.objects.get(number=order["number"]).payment_status == "paid"
    queries = [c for c in responses.calls if "stkpushquery" in c.request.url]
    assert len(queries) == 1


@responses.activate
def test_mpesa_cancelled_on_the_phone_then_paid_by_a_new_push(
    client, kes, django_capture_on_commit_callbacks
):
    order = guest_order(client, payment_method="mpesa")
    daraja_token()
    stk_accepted()
    first = start(client, order, "mpesa").json()
    stk_query("1032", "Request cancelled by user")
    with django_capture_on_commit_callbacks(execute=True):
        mpesa_callback(client, result_code=1032)
    assert poll(client, order, first["id"])["status"] == "cancelled"
    assert Order.objects.get(number=order["number"]).payment_status == "unpaid"
    responses.replace(responses.POST, f"{DARAJA}/mpesa/stkpush/v1/processrequest", json={
        "MerchantRequestID": "2", "CheckoutRequestID": "ws_CO_second", "ResponseCode": "0",
        "ResponseDescription": "ok", "CustomerMessage": "ok"})
    second = start(client, order, "mpesa", phone="+254 799 000 111")
    assert second.status_code == 201 and second.json()["id"] != first["id"]
    assert json.loads(responses.calls[-1].request.body)["PhoneNumber"] == "254799000111"


@responses.activate
def test_a_callback_that_never_comes_is_settled_by_reconciliation_even_after_a_timeout(
    client, kes
):
    order = guest_order(client, payment_method="mpesa")
    daraja_token()
    stk_accepted()
    payment_id = start(client, order, "mpesa").json()["id"]
    later = timezone.now() + timedelta(minutes=10)
    responses.add(responses.POST, f"{DARAJA}/mpesa/stkpushquery/v1/query",
                  body=requests.exceptions.ReadTimeout("Daraja is slow"))
    report = payments.reconcile(now=later)
    assert (report.payments, report.errors) == (1, 1)
    assert Payment.objects.get(pk=payment_id).status == "requires_action"
    assert Order.objects.get(number=order["number"]).payment_status == "unpaid"
    # Asked again at most every few minutes; then the provider answers.
    assert payments.reconcile(now=later + timedelta(seconds=30)).payments == 0
    responses.replace(responses.POST, f"{DARAJA}/mpesa/stkpushquery/v1/query", json={
        "ResponseCode": "0", "ResponseDescription": "accepted",
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": "ws_CO_191220191020363925", "ResultCode": "0",
        "ResultDesc": "The service request is processed successfully."})
    assert payments.reconcile(now=later + timedelta(minutes=10)).payments == 1
    assert Payment.objects.get(pk=payment_id).status == "succeeded"
    assert Order.objects.get(number=order["number"]).payment_status == "paid"
    assert PaymentEvent.objects.get().source == "query"


@responses.activate
def test_an_mpesa_refund_is_recorded_by_hand(client, kes, django_capture_on_commit_callbacks):
    order = guest_order(client, payment_method="mpesa")
    daraja_token()
    stk_accepted()
    start(client, order, "mpesa")
    stk_query()
    with django_capture_on_commit_callbacks(execute=True):
        mpesa_callback(client)
    placed = Order.objects.get(number=order["number"])
    with pytest.raises(payments.PaymentError) as refused:
        payments.refund_order(placed, orders.RefundRequest(amount=Decimal("5.00")))
    assert refused.value.code == "refund_by_hand" and not Refund.objects.exists()
    refund = payments.refund_order(placed, orders.RefundRequest(amount=Decimal("5.00")),
                                   by_hand=True)
    assert refund.status == "succeeded"
    assert Payment.objects.get().status == "partially_refunded"


# --- Chapa --------------------------------------------------------------------------------------


def chapa_webhook(client, tx_ref, status="success", amount="605.00", secret=CHAPA_SECRET):
    payload = json.dumps({
        "event": "charge.success" if status == "success" else "charge.failed",
        "first_name": "Amina", "last_name": "Otieno", "email": "amina@example.com",
        "mobile": None, "currency": "ETB", "amount": amount, "charge": "17.50",
        "status": status, "mode": "test", "reference": "AP634JFwMtVd", "tx_ref": tx_ref,
        "payment_method": "telebirr", "type": "API",
        "created_at": "2024-05-14T09:15:23.000000Z", "updated_at": "2024-05-14T09:15:23Z",
    })
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return client.post("/api/v1/payments/webhooks/chapa/", payload,
                       content_type="application/json", HTTP_X_CHAPA_SIGNATURE=signature)


@responses.activate
def test_chapa_cart_to_paid_the_webhook_verified_at_chapa(
    client, settings, django_capture_on_commit_callbacks
):
    settings.STORE_CURRENCY = "ETB"
    order = guest_order(client, payment_method="chapa")
    responses.add(responses.POST, f"{CHAPA_API}/transaction/initialize", json={
        "message": "Hosted Link", "status": "success",
        "data": {"checkout_url": "https://checkout.chapa.co/checkout/payment/V38JyhpTygC9"}})
    started = start(client, order, "chapa")
    assert started.status_code == 201, started.json()
    assert started.json()["next_action"]["url"].startswith("https://checkout.chapa.co/")
    sent = json.loads(responses.calls[-1].request.body)
    assert sent["amount"] == "605.00" and sent["currency"] == "ETB"
    tx_ref = Payment.objects.get().provider_reference
    assert sent["tx_ref"] == tx_ref

    assert chapa_webhook(client, tx_ref, secret="wrong").status_code == 400
    responses.add(responses.GET, f"{CHAPA_API}/transaction/verify/{tx_ref}", json={
        "message": "Payment details", "status": "success", "data": {
            "first_name": "Amina", "last_name": "Otieno", "email": "amina@example.com",
            "currency": "ETB", "amount": 605, "charge": 17.5, "mode": "test",
            "method": "telebirr", "type": "API", "status": "success",
            "reference": "AP634JFwMtVd", "tx_ref": tx_ref, "customization": {},
            "meta": None, "created_at": "2024-05-14T09:15:23.000000Z",
            "updated_at": "2024-05-14T09:15:23.000000Z"}})
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(10):
            assert chapa_webhook(client, tx_ref).status_code == 200
    payment = Payment.objects.get()
    assert (payment.status, payment.provider_payment_id) == ("succeeded", "AP634JFwMtVd")
    assert Order.objects.get(number=order["number"]).payment_status == "paid"
    assert PaymentEvent.objects.count() == 1
    assert len([c for c in responses.calls if "/verify/" in c.request.url]) == 1


@responses.activate
def test_a_chapa_webhook_claiming_success_that_chapa_does_not_confirm_changes_nothing(
    client, settings, django_capture_on_commit_callbacks
):
    settings.STORE_CURRENCY = "ETB"
    order = guest_order(client, payment_method="chapa")
    responses.add(responses.POST, f"{CHAPA_API}/transaction/initialize", json={
        "message": "Hosted Link", "status": "success",
        "data": {"checkout_url": "https://checkout.chapa.co/checkout/payment/abc"}})
    start(client, order, "chapa")
    tx_ref = Payment.objects.get().provider_reference
    responses.add(responses.GET, f"{CHAPA_API}/transaction/verify/{tx_ref}", json={
        "message": "Payment details", "status": "success", "data": {
            "currency": "ETB", "amount": 605, "status": "pending", "tx_ref": tx_ref,
            "reference": "AP634JFwMtVd"}})
    with django_capture_on_commit_callbacks(execute=True):
        chapa_webhook(client, tx_ref)
    assert Payment.objects.get().status == "requires_action"
    assert Order.objects.get(number=order["number"]).paid_at is None
    assert "still says pending" in PaymentEvent.objects.get().outcome


# --- under real concurrency (PostgreSQL) ---------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@responses.activate
def test_the_same_webhook_delivered_by_eight_threads_at_once_pays_the_order_once(listener):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections
    from django.test import Client

    client = Client()
    order = guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions", json=stripe_session())
    payment_id = start(client, order, "stripe").json()["id"]
    barrier = threading.Barrier(8)

    def deliver(_):
        try:
            barrier.wait(timeout=10)
            # Each thread commits, then runs the job itself (the test broker is synchronous).
            return stripe_webhook(Client(), "checkout.session.completed", completed(),
                                  event_id="evt_race").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(deliver, range(8)))
    assert codes == [200] * 8
    assert PaymentEvent.objects.count() == 1
    assert PaymentEvent.objects.get().processed_at is not None
    assert status_events(payment_id) == ["requires_action", "succeeded"]
    placed = Order.objects.get(number=order["number"])
    assert placed.payment_status == "paid"
    assert OrderEvent.objects.filter(order=placed, to_status="paid").count() == 1


# --- what the review found -----------------------------------------------------------------------


@responses.activate
def test_an_mpesa_push_whose_answer_timed_out_is_still_paid_by_its_callback(
    client, kes, django_capture_on_commit_callbacks
):
    order = guest_order(client, payment_method="mpesa")
    daraja_token()
    responses.add(responses.POST, f"{DARAJA}/mpesa/stkpush/v1/processrequest",
                  body=requests.exceptions.ReadTimeout("Daraja took too long"))
    assert start(client, order, "mpesa").status_code == 503
    payment = Payment.objects.get()
    assert payment.provider_reference is None
    # Safaricom had sent the prompt after all; the customer approves, the callback comes.
    push_url = json.loads(responses.calls[-1].request.body)["CallBackURL"]
    assert f"payment={payment.pk}" in push_url
    stk_query()
    body = {"Body": {"stkCallback": {
        "MerchantRequestID": "1", "CheckoutRequestID": "ws_CO_191220191020363925",
        "ResultCode": 0, "ResultDesc": "ok", "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": 605}, {"Name": "MpesaReceiptNumber",
                                               "Value": "NLJ7RT61SV"}]}}}}
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            f"/api/v1/payments/webhooks/mpesa/?payment={payment.pk}&token={MPESA_TOKEN}",
            json.dumps(body), content_type="application/json")
    assert answer.status_code == 200
    payment.refresh_from_db()
    assert (payment.status, payment.provider_reference) == (
        "succeeded", "ws_CO_191220191020363925")
    assert Order.objects.get(number=order["number"]).payment_status == "paid"


@responses.activate
def test_a_start_still_waiting_for_its_provider_is_not_started_twice(client, kes):
    order = guest_order(client, payment_method="mpesa")
    placed = Order.objects.get(number=order["number"])
    running = Payment.objects.create(order=placed, provider="mpesa", amount=placed.total,
                                     currency="KES", idempotency_key="pay-running")
    again = start(client, order, "mpesa")
    assert again.status_code == 200 and again.json()["id"] == running.pk
    assert len(responses.calls) == 0  # no second prompt on the customer's phone


@responses.activate
def test_a_refund_that_timed_out_is_not_counted_twice_when_stripe_reports_it(
    client, django_capture_on_commit_callbacks
):
    order, payment = stripe_paid(client, django_capture_on_commit_callbacks)
    placed = Order.objects.get(number=order["number"])
    responses.add(responses.POST, f"{STRIPE_API}/refunds",
                  body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(payments.PaymentError):
        payments.refund_order(placed, orders.RefundRequest(amount=Decimal("100.00")))
    responses.replace(responses.POST, f"{STRIPE_API}/refunds", json={
        "id": "re_b", "object": "refund", "amount": 5000, "currency": "usd",
        "payment_intent": "pi_test_1", "status": "succeeded", "metadata": {}})
    payments.refund_order(placed, orders.RefundRequest(amount=Decimal("50.00")))
    # Stripe had made the first refund: its charge.refunded says 100 in all (no refund list).
    with django_capture_on_commit_callbacks(execute=True):
        stripe_webhook(client, "charge.refunded", {
            "id": "ch_test_1", "object": "charge", "amount": 60500, "amount_refunded": 10000,
            "currency": "usd", "payment_intent": "pi_test_1", "refunded": False})
    assert Refund.objects.count() == 2
    # Reconciliation asks again with the same key; Stripe answers with the refund it made.
    responses.replace(responses.POST, f"{STRIPE_API}/refunds", json={
        "id": "re_a", "object": "refund", "amount": 10000, "currency": "usd",
        "payment_intent": "pi_test_1", "status": "succeeded", "metadata": {}})
    assert payments.reconcile(now=timezone.now() + timedelta(minutes=5)).refunds == 1
    assert sorted(Refund.objects.values_list("status", "amount")) == [
        ("succeeded", Decimal("50.00")), ("succeeded", Decimal("100.00"))]
    placed.refresh_from_db()
    assert placed.refunded_total == Decimal("150.00")
    keys = [c.request.headers["Idempotency-Key"] for c in responses.calls
            if c.request.url.endswith("/refunds")]
    # The first refund's key is the one asked again (Stripe then answers with what it made).
    assert keys[0] == keys[-1] and len(set(keys)) == 2


@responses.activate
def test_the_stripe_page_closes_when_the_order_stops_waiting(client, settings):
    settings.ORDER_PAYMENT_WINDOW_MINUTES = 40
    order = guest_order(client)
    responses.add(responses.POST, f"{STRIPE_API}/checkout/sessions", json=stripe_session())
    start(client, order, "stripe")
    sent = dict(pair.split("=", 1) for pair in responses.calls[0].request.body.split("&"))
    due = Order.objects.get(number=order["number"]).payment_due_at.timestamp()
    assert int(sent["expires_at"]) <= due


@responses.activate
def test_an_order_paid_twice_gives_the_second_payment_back_and_the_order_stands(
    client, staff_client, django_capture_on_commit_callbacks
):
    order, first = stripe_paid(client, django_capture_on_commit_callbacks)
    placed = Order.objects.get(number=order["number"])
    # A second Stripe payment of the same order (another tab), paid too.
    second = Payment.objects.create(order=placed, provider="stripe", amount=placed.total,
                                    currency="USD", idempotency_key="pay-second",
                                    provider_reference="cs_test_second")
    with django_capture_on_commit_callbacks(execute=True):
        stripe_webhook(client, "checkout.session.completed",
                       completed(session_id="cs_test_second", intent="pi_second"))
    second.refresh_from_db()
    assert second.status == "succeeded"
    assert OrderEvent.objects.filter(order=placed, note__startswith="Paid twice").exists()
    placed.refresh_from_db()
    assert (placed.payment_status, placed.status, placed.refund_due) == ("overpaid", "open", True)
    # The order's refunds go to the payment that paid it, never to the duplicate.
    assert payments.refund_payment_of(placed) == first
    url = f"/admin/payments/payment/{second.pk}/refund-duplicate/"
    assert b"paid by another payment first" in staff_client.get(url).content
    responses.add(responses.POST, f"{STRIPE_API}/refunds", json={
        "id": "re_dup", "object": "refund", "amount": 60500, "currency": "usd",
        "payment_intent": "pi_second", "status": "succeeded", "metadata": {}})
    assert staff_client.post(url).status_code == 302
    assert "payment_intent=pi_second" in responses.calls[-1].request.body
    second.refresh_from_db()
    assert (second.status, second.amount_refunded) == ("refunded", Decimal("605.00"))
    # Stripe's charge.refunded for it changes the order no more than the button did.
    with django_capture_on_commit_callbacks(execute=True):
        stripe_webhook(client, "charge.refunded", {
            "id": "ch_second", "object": "charge", "amount": 60500, "amount_refunded": 60500,
            "currency": "usd", "payment_intent": "pi_second", "refunded": True})
    placed.refresh_from_db()
    assert (placed.payment_status, placed.refunded_total) == ("paid", Decimal("0.00"))
    assert not placed.refund_due, "the second payment went back: paid, as before"
    assert not Refund.objects.exists() and Stock.objects.get().quantity_allocated == 2
    # The first payment is not a duplicate.
    with pytest.raises(payments.PaymentError):
        payments.refund_duplicate(first.pk)
    assert staff_client.get(f"/admin/payments/payment/{second.pk}/ask/").status_code == 200


def test_an_integration_marking_an_order_paid_records_a_manual_payment(client):
    from backoffice.integrations.services import create_api_key

    key = create_api_key(name="ERP", scopes=["orders:read", "orders:write"])[1]
    order = guest_order(client, payment_method="manual")
    moved = client.post(f"/api/v1/integrations/orders/{order['number']}/status",
                        {"status": "paid", "note": "M-Pesa paybill, receipt QK12"},
                        content_type="application/json", HTTP_X_API_KEY=key)
    assert moved.status_code == 200, moved.json()
    payment = Payment.objects.get()
    assert (payment.provider, payment.status) == ("manual", "succeeded")
    assert Order.objects.get(number=order["number"]).payment_status == "paid"
    # Cancelled orders cannot be marked paid: a 409, nothing recorded.
    other = guest_order(client, payment_method="manual", quantity=1)
    orders.cancel_order(Order.objects.get(number=other["number"]).pk)
    refused = client.post(f"/api/v1/integrations/orders/{other['number']}/status",
                          {"status": "paid"}, content_type="application/json",
                          HTTP_X_API_KEY=key)
    assert refused.status_code == 409 and Payment.objects.count() == 1
