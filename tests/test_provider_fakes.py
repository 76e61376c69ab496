"""One whole purchase per provider over real HTTP, against a local fake of its API.

No ``responses`` here: each plugin is pointed at a fake server on 127.0.0.1 with its
``api_base`` setting, and really talks HTTP to it (Stripe through its SDK). The purchase goes
through the storefront API: cart, checkout, start the payment; the fake "pays" and hands back the
provider's webhook or callback, signed as the provider signs it, which is posted to the webhook
endpoint; the job (synchronous in tests) acts on it, asking the fake first where the provider
confirms (M-Pesa's STK query, Chapa's verify). A replay of the webhook changes nothing.
"""

import base64
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from backoffice.catalog.models import Product, Variant
from backoffice.inventory.models import Warehouse
from backoffice.inventory.services import adjust_stock
from backoffice.orders.models import Order, OrderEvent
from backoffice.payments.models import Payment, PaymentEvent
from backoffice.plugin_host.services import activate_plugins, update_plugin_config
from tests.fake_providers import FakeChapa, FakeDaraja, FakeStripe, deliver, order_is_paid

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://shop.example.com"
ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "0712 345 678"}


@pytest.fixture(autouse=True)
def shop(settings):
    settings.PUBLIC_URL = PUBLIC_URL
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    activate_plugins(["flat_rate_shipping"])
    product = Product.objects.create(name="Mug", slug="mug")
    mug = Variant.objects.create(product=product, sku="MUG", name="", price="300.00")
    adjust_stock(variant_id=mug.pk, quantity_change=5)


def hook(provider):
    return f"{PUBLIC_URL}/api/v1/payments/webhooks/{provider}/"


def buy_two_mugs(client, payment_method):
    """Cart → checkout over the API (2 × 300.00 + 5.00 shipping); the placed order's JSON."""
    token = client.post("/api/v1/cart").json()["token"]
    headers = {"HTTP_X_CART_TOKEN": token}
    client.post("/api/v1/cart/lines", {"sku": "MUG", "quantity": 2},
                content_type="application/json", **headers)
    response = client.post("/api/v1/checkout", {
        "shipping_method": "flat_rate", "shipping_address": ADDRESS,
        "email": "amina@example.com", "payment_method": payment_method,
    }, content_type="application/json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()), **headers)
    assert response.status_code == 201, response.json()
    return response.json()


def start(client, order, provider):
    response = client.post(f"/api/v1/orders/by-token/{order['token']}/payments",
                           {"provider": provider}, content_type="application/json")
    assert response.status_code == 201, response.json()
    return response.json()


def assert_delivered_once(client, webhook, capture):
    """The webhook is taken (and its job run); a replay is stored once and changes nothing."""
    with capture(execute=True):
        first = deliver(client, webhook)
    assert (first.status_code, first.json()) == (200, {"received": 1, "new": 1})
    payment = Payment.objects.get()
    order_events = OrderEvent.objects.count()
    with capture(execute=True):
        replay = deliver(client, webhook)
    assert (replay.status_code, replay.json()) == (200, {"received": 1, "new": 0})
    assert PaymentEvent.objects.count() == 1
    assert OrderEvent.objects.count() == order_events
    again = Payment.objects.get()
    assert (again.status, again.updated_at) == (payment.status, payment.updated_at)


def test_stripe_purchase_against_a_fake_stripe(client, django_capture_on_commit_callbacks):
    with FakeStripe(secret_key="sk_test_fake51", webhook_secret="whsec_fake",
                    webhook_url=hook("stripe")) as fake:
        update_plugin_config(identifier="stripe", active=True, changes={
            "mode": "test", "secret_key": "sk_test_fake51", "webhook_secret": "whsec_fake",
            "api_base": fake.url})
        order = buy_two_mugs(client, "stripe")
        started = start(client, order, "stripe")

        [create] = fake.sent("POST", "/v1/checkout/sessions")
        payment = Payment.objects.get(pk=started["id"])
        assert create.headers["authorization"] == "Bearer sk_test_fake51"
        assert create.headers["idempotency-key"] == payment.idempotency_key
        assert create.headers["content-type"].startswith("application/x-www-form-urlencoded")
        form = create.form
        # Minor units, per line: 2 × 30000 cents, and the shipping line.
        assert (form["line_items[0][price_data][unit_amount]"],
                form["line_items[0][quantity]"]) == ("30000", "2")
        assert (form["line_items[1][price_data][unit_amount]"],
                form["line_items[1][quantity]"]) == ("500", "1")
        assert form["line_items[0][price_data][currency]"] == "usd"
        assert form["metadata[payment_id]"] == str(payment.pk)
        assert form["metadata[order_number]"] == order["number"]
        session = fake.sessions[payment.provider_reference]
        assert session["amount_total"] == 60500
        assert started["status"] == "requires_action"
        assert started["next_action"] == {"kind": "redirect", "url": session["url"],
                                          "message": ""}

        webhook = fake.pay(session["id"])
        assert_delivered_once(client, webhook, django_capture_on_commit_callbacks)
        # Stripe's signed word is believed: nothing more was asked of Stripe.
        assert len(fake.requests) == 1 and fake.problems == []

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.provider_payment_id == session["payment_intent"]
    assert order_is_paid(Order.objects.get(number=order["number"]))


def test_mpesa_purchase_against_a_fake_daraja(client, settings,
                                              django_capture_on_commit_callbacks):
    settings.STORE_CURRENCY = "KES"
    callback_token = "cb-" + "x" * 30
    with FakeDaraja(consumer_key="ck", consumer_secret="cs", shortcode="174379",
                    passkey="the-passkey") as fake:
        update_plugin_config(identifier="mpesa", active=True, changes={
            "environment": "sandbox", "api_base": fake.url, "consumer_key": "ck",
            "consumer_secret": "cs", "shortcode": "174379", "passkey": "the-passkey",
            "callback_token": callback_token})
        order = buy_two_mugs(client, "mpesa")
        started = start(client, order, "mpesa")
        assert started["next_action"]["kind"] == "approve_on_phone"

        [push] = fake.sent("POST", "/mpesa/stkpush/v1/processrequest")
        sent = push.json
        assert sent["Amount"] == 605 and isinstance(sent["Amount"], int)  # whole KES
        assert (sent["PartyA"], sent["PhoneNumber"], sent["PartyB"]) == (
            "254712345678", "254712345678", "174379")
        assert sent["Password"] == base64.b64encode(
            f"174379the-passkey{sent['Timestamp']}".encode()).decode()
        callback_url = urlsplit(sent["CallBackURL"])
        assert f"{callback_url.scheme}://{callback_url.netloc}{callback_url.path}" == hook(
            "mpesa")
        assert parse_qs(callback_url.query)["token"] == [callback_token]
        payment = Payment.objects.get(pk=started["id"])
        assert payment.provider_reference in fake.pushes

        callback = fake.pay(payment.provider_reference)
        assert_delivered_once(client, callback, django_capture_on_commit_callbacks)

        # The callback was confirmed by one STK query, with a fresh password.
        [query] = fake.sent("POST", "/mpesa/stkpushquery/v1/query")
        assert query.json["CheckoutRequestID"] == payment.provider_reference
        assert query.json["Password"] == base64.b64encode(
            f"174379the-passkey{query.json['Timestamp']}".encode()).decode()
        # One OAuth token, fetched with Basic auth, kept for the push and the query.
        [oauth] = fake.sent("GET", "/oauth/v1/generate")
        assert oauth.headers["authorization"] == "Basic " + base64.b64encode(b"ck:cs").decode()
        assert push.headers["authorization"] == query.headers["authorization"]
        assert fake.problems == []

    payment.refresh_from_db()
    assert (payment.status, payment.provider_payment_id) == ("succeeded", "NLJ7RT61SV")
    assert order_is_paid(Order.objects.get(number=order["number"]))


def test_chapa_purchase_against_a_fake_chapa(client, settings,
                                             django_capture_on_commit_callbacks):
    settings.STORE_CURRENCY = "ETB"
    with FakeChapa(secret_key="CHASECK_TEST-fake", webhook_secret="chapa-hash",
                   webhook_url=hook("chapa")) as fake:
        update_plugin_config(identifier="chapa", active=True, changes={
            "mode": "test", "secret_key": "CHASECK_TEST-fake", "webhook_secret": "chapa-hash",
            "api_base": fake.url})
        order = buy_two_mugs(client, "chapa")
        started = start(client, order, "chapa")

        [initialize] = fake.sent("POST", "/v1/transaction/initialize")
        payment = Payment.objects.get(pk=started["id"])
        assert initialize.headers["authorization"] == "Bearer CHASECK_TEST-fake"
        sent = initialize.json
        assert (sent["amount"], sent["currency"], sent["tx_ref"], sent["email"]) == (
            "605.00", "ETB", payment.provider_reference, "amina@example.com")
        assert started["next_action"]["url"].startswith("https://checkout.chapa.co/")

        webhook = fake.pay(payment.provider_reference)
        assert_delivered_once(client, webhook, django_capture_on_commit_callbacks)

        # Believed only once Chapa's verify said so; once, not again for the replay.
        [verify] = fake.sent("GET", r"/v1/transaction/verify/.+")
        assert verify.path == f"/v1/transaction/verify/{payment.provider_reference}"
        assert verify.headers["authorization"] == "Bearer CHASECK_TEST-fake"
        assert fake.problems == []

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.provider_payment_id == fake.transactions[payment.provider_reference][
        "reference"]
    assert order_is_paid(Order.objects.get(number=order["number"]))
