"""The Stripe plugin against Stripe's HTTP API, mocked with ``responses`` using the payloads of
Stripe's API reference; webhooks are signed exactly as Stripe signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
import stripe

from backoffice.plugin_host.errors import (
    PaymentProviderError,
    PluginConfigError,
    WebhookVerificationError,
)
from backoffice.plugin_host.protocols import (
    PaymentLine,
    PaymentProvider,
    PaymentRequest,
    RefundRequest,
    WebhookRequest,
)
from plugins.stripe_payment import StripeProvider, expires_at, validate_config

API = "https://api.stripe.com/v1"
SESSION_ID = "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY"
INTENT_ID = "pi_3MtwBwLkdIwHu7ix28a3tqPa"
CHARGE_ID = "ch_3MtwBwLkdIwHu7ix0snN0B15"
WEBHOOK_SECRET = "whsec_test_5f1d2c3b4a"
CONFIG: dict[str, Any] = {
    "secret_key": "sk_test_51MzSecretKey",
    "webhook_secret": WEBHOOK_SECRET,
    "payment_method_types": None,
    "session_minutes": 60,
}

provider = StripeProvider()


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


def payment_request(**overrides: Any) -> PaymentRequest:
    values: dict[str, Any] = {
        "payment_id": 42,
        "order_number": "1001",
        "amount": Decimal("30.00"),
        "currency": "USD",
        "idempotency_key": "pay-6f1c0d7e9b2a4c3d",
        "customer_email": "jenny.rosen@example.com",
        "description": "Order 1001",
        "return_url": "https://shop.example.com/orders/1001/paid",
        "cancel_url": "https://shop.example.com/orders/1001/cancelled",
        "lines": (
            PaymentLine(name="Blue mug", quantity=2, amount=Decimal("25.00")),
            PaymentLine(name="Shipping: Standard", quantity=1, amount=Decimal("5.00")),
        ),
    }
    values.update(overrides)
    return PaymentRequest(**values)


def checkout_session(**overrides: Any) -> dict[str, Any]:
    """A Checkout Session as Stripe's API reference shows it."""
    session: dict[str, Any] = {
        "id": SESSION_ID,
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": 3000,
        "amount_total": 3000,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": "https://shop.example.com/orders/1001/cancelled",
        "client_reference_id": "42",
        "consent": None,
        "consent_collection": None,
        "created": 1679600215,
        "currency": "usd",
        "custom_fields": [],
        "custom_text": {"shipping_address": None, "submit": None},
        "customer": None,
        "customer_creation": "if_required",
        "customer_details": None,
        "customer_email": "jenny.rosen@example.com",
        "expires_at": 1679603815,
        "invoice": None,
        "invoice_creation": None,
        "livemode": False,
        "locale": None,
        "metadata": {"payment_id": "42", "order_number": "1001"},
        "mode": "payment",
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "always",
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_details": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": "https://shop.example.com/orders/1001/paid",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "url": f"https://checkout.stripe.com/c/pay/{SESSION_ID}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
    }
    session.update(overrides)
    return session


def paid_session(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"status": "complete", "payment_status": "paid",
                              "payment_intent": INTENT_ID, "url": None}
    return checkout_session(**{**values, **overrides})


def refund_object(status: str = "succeeded", **overrides: Any) -> dict[str, Any]:
    """A Refund as Stripe's API reference shows it."""
    refund: dict[str, Any] = {
        "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ",
        "object": "refund",
        "amount": 1000,
        "balance_transaction": "txn_1Nispe2eZvKYlo2CYezqFhEx",
        "charge": CHARGE_ID,
        "created": 1692942318,
        "currency": "usd",
        "destination_details": {"card": {"reference_status": "pending", "type": "refund"},
                                "type": "card"},
        "metadata": {"reason": "damaged in transit"},
        "payment_intent": INTENT_ID,
        "reason": None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }
    refund.update(overrides)
    return refund


def stripe_error(type_: str, message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_QX5mQ2f3NRP0",
        "type": type_,
    }
    if code:
        error.update(code=code, doc_url=f"https://stripe.com/docs/error-codes/{code}")
    return {"error": error}


def sent(call: Any) -> dict[str, str]:
    """The form fields of a request the plugin sent."""
    body = call.request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return dict(parse_qsl(body, keep_blank_values=True))


# --- Starting a payment ---------------------------------------------------------------------


def test_the_provider_has_the_protocols_shape():
    assert isinstance(provider, PaymentProvider)
    assert (provider.code, provider.name, provider.supports_refunds) == ("stripe", "Stripe", True)
    assert provider.confirm_webhooks is False


def test_initiate_creates_a_checkout_session_and_redirects_to_it(api):
    api.post(f"{API}/checkout/sessions", json=checkout_session())
    before = int(time.time())

    result = provider.initiate(payment_request(), CONFIG)

    call = api.calls[0]
    body = sent(call)
    assert call.request.headers["Idempotency-Key"] == "pay-6f1c0d7e9b2a4c3d"
    assert call.request.headers["Authorization"] == "Bearer sk_test_51MzSecretKey"
    assert body["mode"] == "payment"
    assert body["line_items[0][price_data][currency]"] == "usd"
    assert body["line_items[0][price_data][unit_amount]"] == "1250"
    assert body["line_items[0][price_data][product_data][name]"] == "Blue mug"
    assert body["line_items[0][quantity]"] == "2"
    assert body["line_items[1][price_data][unit_amount]"] == "500"
    assert body["line_items[1][price_data][product_data][name]"] == "Shipping: Standard"
    assert body["line_items[1][quantity]"] == "1"
    assert "line_items[2][quantity]" not in body
    assert body["success_url"] == "https://shop.example.com/orders/1001/paid"
    assert body["cancel_url"] == "https://shop.example.com/orders/1001/cancelled"
    assert body["client_reference_id"] == "42"
    assert body["customer_email"] == "jenny.rosen@example.com"
    assert body["metadata[payment_id]"] == "42"
    assert body["metadata[order_number]"] == "1001"
    assert body["payment_intent_data[metadata][payment_id]"] == "42"
    assert body["payment_intent_data[metadata][order_number]"] == "1001"
    assert body["payment_intent_data[description]"] == "Order 1001"
    # Unset: Stripe offers the methods switched on in its dashboard.
    assert not any(key.startswith("payment_method_types") for key in body)
    expires = int(body["expires_at"])
    assert before + 55 * 60 <= expires <= before + 60 * 60 + 5

    assert result.provider_reference == SESSION_ID
    assert result.status == "requires_action"
    assert result.next_action.kind == "redirect"
    assert result.next_action.url.startswith(f"https://checkout.stripe.com/c/pay/{SESSION_ID}")
    assert result.raw["id"] == SESSION_ID


def test_a_line_total_that_does_not_split_into_units_is_one_line(api):
    api.post(f"{API}/checkout/sessions", json=checkout_session(amount_total=1000))

    provider.initiate(payment_request(
        amount=Decimal("10.00"),
        lines=(PaymentLine(name="Tea towel", quantity=3, amount=Decimal("10.00")),),
    ), CONFIG)

    body = sent(api.calls[0])
    assert body["line_items[0][price_data][product_data][name]"] == "3 × Tea towel"
    assert body["line_items[0][price_data][unit_amount]"] == "1000"
    assert body["line_items[0][quantity]"] == "1"
    assert "line_items[1][quantity]" not in body


@pytest.mark.parametrize("lines", [
    # The lines miss a cent of the amount: Stripe would charge the wrong total.
    (PaymentLine(name="Blue mug", quantity=2, amount=Decimal("25.00")),
     PaymentLine(name="Shipping: Standard", quantity=1, amount=Decimal("4.99"))),
    (),
    # Stripe takes no negative unit amounts (a discount line).
    (PaymentLine(name="Blue mug", quantity=1, amount=Decimal("35.00")),
     PaymentLine(name="Coupon", quantity=1, amount=Decimal("-5.00"))),
], ids=["lines-miss-the-amount", "no-lines", "negative-line"])
def test_lines_that_do_not_add_up_to_the_amount_become_one_order_line(api, lines):
    api.post(f"{API}/checkout/sessions", json=checkout_session())

    provider.initiate(payment_request(lines=lines), CONFIG)

    body = sent(api.calls[0])
    assert body["line_items[0][price_data][product_data][name]"] == "Order 1001"
    assert body["line_items[0][price_data][unit_amount]"] == "3000"
    assert body["line_items[0][quantity]"] == "1"
    assert "line_items[1][quantity]" not in body


def test_a_zero_decimal_currency_is_sent_in_whole_units(api):
    api.post(f"{API}/checkout/sessions",
             json=checkout_session(currency="jpy", amount_total=1500, amount_subtotal=1500))

    provider.initiate(payment_request(
        amount=Decimal("1500.00"), currency="JPY",
        lines=(PaymentLine(name="Matcha", quantity=3, amount=Decimal("1500.00")),),
    ), CONFIG)

    body = sent(api.calls[0])
    assert body["line_items[0][price_data][currency]"] == "jpy"
    assert body["line_items[0][price_data][unit_amount]"] == "500"
    assert body["line_items[0][quantity]"] == "3"


@pytest.mark.parametrize(("currency", "amount", "units"), [
    # No minor unit, but Stripe's API still counts ISK in hundredths.
    ("ISK", "4990", "499000"),
    # Three-decimal dinars go in thousandths (the last digit 0, as Stripe asks).
    ("KWD", "12.35", "12350"),
    # Stripe takes MGA with no decimals.
    ("MGA", "5000.00", "5000"),
])
def test_currencies_stripe_counts_its_own_way(api, currency, amount, units):
    api.post(f"{API}/checkout/sessions", json=checkout_session(currency=currency.lower()))

    provider.initiate(payment_request(amount=Decimal(amount), currency=currency, lines=()),
                      CONFIG)

    assert sent(api.calls[0])["line_items[0][price_data][unit_amount]"] == units


def test_an_amount_stripe_cannot_take_is_refused_before_calling_it(api):
    with pytest.raises(PaymentProviderError) as caught:
        provider.initiate(payment_request(amount=Decimal("5000.50"), currency="MGA", lines=()),
                          CONFIG)

    assert caught.value.code == "amount_not_supported"
    assert len(api.calls) == 0


def test_payment_methods_and_the_page_lifetime_come_from_the_settings(api):
    api.post(f"{API}/checkout/sessions", json=checkout_session())
    api.post(f"{API}/checkout/sessions", json=checkout_session())
    now = int(time.time())

    provider.initiate(payment_request(),
                      {**CONFIG, "payment_method_types": "card, link,", "session_minutes": 5})
    provider.initiate(payment_request(), {**CONFIG, "session_minutes": 60 * 48})

    short, long = sent(api.calls[0]), sent(api.calls[1])
    assert short["payment_method_types[0]"] == "card"
    assert short["payment_method_types[1]"] == "link"
    assert "payment_method_types[2]" not in short
    # Stripe's window is 30 minutes to 24 hours after it receives the request.
    assert now + 30 * 60 < int(short["expires_at"]) <= now + 36 * 60
    assert now + 23 * 60 * 60 < int(long["expires_at"]) < now + 24 * 60 * 60


def test_a_start_retried_a_moment_later_sends_the_same_expiry():
    # Stripe refuses an idempotency key reused with other parameters: expires_at must not move
    # between a start and its retry, so it is rounded down to 5 minutes.
    start = 1_700_000_100  # a multiple of 300
    first = expires_at(CONFIG, now=start)

    assert first == start + 60 * 60
    assert expires_at(CONFIG, now=start + 299) == first
    assert expires_at(CONFIG, now=start + 300) == first + 300


@pytest.mark.parametrize(("status", "body", "code"), [
    (400, stripe_error("invalid_request_error", "Invalid email address: jenny@",
                       "email_invalid"), "email_invalid"),
    (401, stripe_error("invalid_request_error", "Invalid API Key provided: sk_test_***Key"),
     "invalid_request_error"),
    (400, stripe_error("idempotency_error", "Keys for idempotent requests can only be used "
                       "with the same parameters they were first used with."),
     "idempotency_error"),
], ids=["bad-request", "bad-key", "idempotency-key-reused"])
def test_a_refusal_by_stripe_is_a_provider_error(api, status, body, code):
    api.post(f"{API}/checkout/sessions", status=status, json=body)

    with pytest.raises(PaymentProviderError) as caught:
        provider.initiate(payment_request(), CONFIG)

    assert str(caught.value) == body["error"]["message"]
    assert caught.value.code == code


def test_a_stripe_outage_propagates_after_one_quick_retry(api):
    api.post(f"{API}/checkout/sessions", status=500,
             json=stripe_error("api_error", "Sorry, something went wrong."))

    with pytest.raises(stripe.APIError):
        provider.initiate(payment_request(), CONFIG)

    assert len(api.calls) == 2
    assert {call.request.headers["Idempotency-Key"] for call in api.calls} == {
        "pay-6f1c0d7e9b2a4c3d"}


def test_a_connection_error_propagates(api):
    api.post(f"{API}/checkout/sessions", body=requests.ConnectionError("connection refused"))

    with pytest.raises(stripe.APIConnectionError):
        provider.initiate(payment_request(), CONFIG)


def test_a_rate_limit_propagates(api):
    api.post(f"{API}/checkout/sessions", status=429,
             json=stripe_error("invalid_request_error", "Too many requests.", "rate_limit"))

    with pytest.raises(stripe.RateLimitError):
        provider.initiate(payment_request(), CONFIG)


# --- Webhooks -------------------------------------------------------------------------------


def envelope(type_: str, obj: dict[str, Any], event_id: str = "evt_1NG8Du2eZvKYlo2CUI79vXWy"
             ) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1686089970,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def signed(event: dict[str, Any] | str, *, secret: str = WEBHOOK_SECRET,
           timestamp: int | None = None, header: str = "Stripe-Signature") -> WebhookRequest:
    """A webhook as Stripe sends it: ``t=<ts>,v1=<HMAC-SHA256 of "<ts>.<body>">``."""
    body = event if isinstance(event, str) else json.dumps(event, indent=2)
    ts = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    return WebhookRequest(body=body.encode(), headers={
        "Content-Type": "application/json; charset=utf-8", header: f"t={ts},v1={signature}",
    })


def payment_intent(**overrides: Any) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "id": INTENT_ID,
        "object": "payment_intent",
        "amount": 3000,
        "amount_received": 0,
        "capture_method": "automatic",
        "client_secret": f"{INTENT_ID}_secret_YrKJUKribcBjcG8HVhfZluoGH",
        "confirmation_method": "automatic",
        "created": 1680800504,
        "currency": "usd",
        "customer": None,
        "description": "Order 1001",
        "last_payment_error": {
            "charge": CHARGE_ID,
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "message": "Your card has insufficient funds.",
            "type": "card_error",
        },
        "latest_charge": CHARGE_ID,
        "livemode": False,
        "metadata": {"payment_id": "42", "order_number": "1001"},
        "payment_method": None,
        "payment_method_types": ["card"],
        "status": "requires_payment_method",
    }
    intent.update(overrides)
    return intent


def charge(**overrides: Any) -> dict[str, Any]:
    refunds = [refund_object("succeeded"),
               refund_object("pending", id="re_3MtwBwLkdIwHu7ix1ZcLkR2e", amount=500)]
    data: dict[str, Any] = {
        "id": CHARGE_ID,
        "object": "charge",
        "amount": 3000,
        "amount_captured": 3000,
        "amount_refunded": 1500,
        "balance_transaction": "txn_3MtwBwLkdIwHu7ix0MZ4KsVo",
        "captured": True,
        "created": 1680800504,
        "currency": "usd",
        "description": "Order 1001",
        "livemode": False,
        "metadata": {"payment_id": "42", "order_number": "1001"},
        "paid": True,
        "payment_intent": INTENT_ID,
        "refunded": False,
        "refunds": {"object": "list", "data": refunds, "has_more": False, "total_count": 2,
                    "url": f"/v1/charges/{CHARGE_ID}/refunds"},
        "status": "succeeded",
    }
    data.update(overrides)
    return data


def test_a_paid_checkout_session_is_a_success():
    event = envelope("checkout.session.completed", paid_session())

    [result] = provider.verify_webhook(signed(event), CONFIG)

    assert result.event_id == "evt_1NG8Du2eZvKYlo2CUI79vXWy"
    assert result.status == "succeeded"
    assert result.provider_reference == SESSION_ID
    assert result.provider_payment_id == INTENT_ID
    assert result.amount == Decimal("30.00")
    assert result.currency == "USD"
    # Matched by the session id only: not by a payment number another store may also have.
    assert result.payment_id is None
    assert result.raw["type"] == "checkout.session.completed"


def test_a_completed_session_paid_by_a_delayed_method_waits():
    event = envelope("checkout.session.completed", paid_session(payment_status="unpaid"))

    [result] = provider.verify_webhook(signed(event), CONFIG)

    assert result.status == "pending"
    assert result.provider_reference == SESSION_ID


def test_a_zero_decimal_amount_comes_back_as_whole_units():
    event = envelope("checkout.session.completed",
                     paid_session(currency="jpy", amount_total=1500))

    [result] = provider.verify_webhook(signed(event), CONFIG)

    assert (result.amount, result.currency) == (Decimal("1500"), "JPY")


@pytest.mark.parametrize(("type_", "status"), [
    ("checkout.session.async_payment_succeeded", "succeeded"),
    ("checkout.session.async_payment_failed", "failed"),
    ("checkout.session.expired", "cancelled"),
])
def test_later_checkout_session_events(type_, status):
    session = paid_session() if status == "succeeded" else checkout_session(
        status="expired" if status == "cancelled" else "complete")
    [result] = provider.verify_webhook(signed(envelope(type_, session)), CONFIG)

    assert result.status == status
    assert result.provider_reference == SESSION_ID
    if status == "succeeded":
        assert (result.amount, result.currency, result.provider_payment_id) == (
            Decimal("30.00"), "USD", INTENT_ID)
    else:
        assert result.message


def test_a_declined_attempt_leaves_the_customer_on_the_checkout_page():
    event = envelope("payment_intent.payment_failed", payment_intent())

    [result] = provider.verify_webhook(signed(event), CONFIG)

    assert result.status == "requires_action"
    assert result.message == "Your card has insufficient funds."
    assert result.provider_payment_id == INTENT_ID
    assert result.provider_reference == ""
    assert result.payment_id == 42
    assert result.amount is None
    # Stored with the event, so without the secret that could confirm the PaymentIntent.
    assert "client_secret" not in result.raw["data"]["object"]
    assert result.raw["data"]["object"]["id"] == INTENT_ID


def test_a_partial_refund_names_the_refunds_that_went_through():
    [result] = provider.verify_webhook(signed(envelope("charge.refunded", charge())), CONFIG)

    assert result.status == "partially_refunded"
    assert result.amount_refunded == Decimal("15.00")
    assert result.amount == Decimal("30.00")
    assert result.currency == "USD"
    assert result.provider_payment_id == INTENT_ID
    assert result.provider_reference == ""
    assert result.payment_id is None
    assert list(result.refund_ids) == ["re_1Nispe2eZvKYlo2Cd31jOCgZ"]


def test_a_full_refund_without_the_refunds_list():
    # API versions since 2022-11-15 leave the charge's refunds out of the payload.
    obj = charge(refunded=True, amount_refunded=3000)
    del obj["refunds"]

    [result] = provider.verify_webhook(signed(envelope("charge.refunded", obj)), CONFIG)

    assert result.status == "refunded"
    assert result.amount_refunded == Decimal("30.00")
    assert list(result.refund_ids) == []


def test_an_event_type_we_do_not_use_is_acknowledged_with_nothing_to_do():
    event = envelope("customer.created", {"id": "cus_NffrFeUfNV2Hib", "object": "customer"})

    assert list(provider.verify_webhook(signed(event), CONFIG)) == []


def test_the_signature_header_is_found_whatever_its_case():
    event = envelope("checkout.session.completed", paid_session())

    [result] = provider.verify_webhook(signed(event, header="stripe-signature"), CONFIG)

    assert result.status == "succeeded"


def test_a_wrong_signature_is_refused():
    event = envelope("checkout.session.completed", paid_session())

    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(signed(event, secret="whsec_someone_else"), CONFIG)


def test_a_tampered_body_is_refused():
    request = signed(envelope("checkout.session.completed", paid_session()))
    tampered = request.body.replace(b'"amount_total": 3000', b'"amount_total": 1')

    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(WebhookRequest(body=tampered, headers=request.headers), CONFIG)


def test_a_stale_timestamp_is_refused():
    event = envelope("checkout.session.completed", paid_session())

    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(signed(event, timestamp=int(time.time()) - 301), CONFIG)


def test_a_missing_signature_header_is_refused():
    body = json.dumps(envelope("checkout.session.completed", paid_session())).encode()

    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(WebhookRequest(body=body, headers={}), CONFIG)


@pytest.mark.parametrize("body", ["not json", "[]", '{"id": "evt_1", "object": "event"}'])
def test_a_signed_body_that_is_not_an_event_is_refused(body):
    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(signed(body), CONFIG)


def test_without_a_webhook_secret_nothing_is_believed():
    event = envelope("checkout.session.completed", paid_session())

    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(signed(event), {**CONFIG, "webhook_secret": None})


# --- Asking where a payment stands ----------------------------------------------------------


@pytest.mark.parametrize(("session", "status", "amount", "intent"), [
    (paid_session(), "succeeded", Decimal("30.00"), INTENT_ID),
    (paid_session(payment_status="unpaid"), "pending", None, INTENT_ID),
    (checkout_session(), "requires_action", None, ""),
    (checkout_session(status="expired", url=None), "cancelled", None, ""),
], ids=["complete-paid", "complete-unpaid", "open", "expired"])
def test_query_status_reads_the_session(api, session, status, amount, intent):
    api.get(f"{API}/checkout/sessions/{SESSION_ID}", json=session)

    answer = provider.query_status(SESSION_ID, CONFIG)

    assert api.calls[0].request.method == "GET"
    assert answer.status == status
    assert answer.amount == amount
    assert answer.currency == "USD"
    assert answer.provider_payment_id == intent
    assert answer.raw["id"] == SESSION_ID


def test_query_status_of_an_unknown_session_is_a_provider_error(api):
    api.get(f"{API}/checkout/sessions/{SESSION_ID}", status=404, json=stripe_error(
        "invalid_request_error", f"No such checkout.session: '{SESSION_ID}'",
        "resource_missing"))

    with pytest.raises(PaymentProviderError) as caught:
        provider.query_status(SESSION_ID, CONFIG)

    assert caught.value.code == "resource_missing"


def test_query_status_without_a_session_asks_stripe_nothing(api):
    with pytest.raises(PaymentProviderError) as caught:
        provider.query_status("", CONFIG)

    assert caught.value.code == "no_reference"
    assert len(api.calls) == 0


# --- Refunds --------------------------------------------------------------------------------


def refund_request(**overrides: Any) -> RefundRequest:
    values: dict[str, Any] = {
        "provider_reference": SESSION_ID, "amount": Decimal("10.00"), "currency": "USD",
        "idempotency_key": "refund-7", "reason": "damaged in transit",
        "provider_payment_id": INTENT_ID,
    }
    values.update(overrides)
    return RefundRequest(**values)


def test_a_refund_that_succeeds(api):
    api.post(f"{API}/refunds", json=refund_object("succeeded"))

    result = provider.refund(refund_request(), CONFIG)

    call = api.calls[0]
    body = sent(call)
    assert call.request.headers["Idempotency-Key"] == "refund-7"
    assert body == {"payment_intent": INTENT_ID, "amount": "1000",
                    "metadata[reason]": "damaged in transit"}
    assert result.status == "succeeded"
    assert result.provider_refund_id == "re_1Nispe2eZvKYlo2Cd31jOCgZ"
    assert result.raw["object"] == "refund"


@pytest.mark.parametrize(("stripe_status", "status"), [
    ("pending", "pending"), ("requires_action", "pending"),
    ("failed", "failed"), ("canceled", "failed"),
])
def test_refund_statuses(api, stripe_status, status):
    api.post(f"{API}/refunds", json=refund_object(stripe_status))

    assert provider.refund(refund_request(), CONFIG).status == status


def test_a_refund_without_the_payment_intent_finds_it_on_the_session(api):
    api.get(f"{API}/checkout/sessions/{SESSION_ID}", json=paid_session())
    api.post(f"{API}/refunds", json=refund_object("pending"))

    result = provider.refund(refund_request(provider_payment_id="", reason=""), CONFIG)

    assert sent(api.calls[1]) == {"payment_intent": INTENT_ID, "amount": "1000"}
    assert result.status == "pending"


def test_a_refund_of_a_session_never_paid_is_refused(api):
    api.get(f"{API}/checkout/sessions/{SESSION_ID}", json=checkout_session())

    with pytest.raises(PaymentProviderError) as caught:
        provider.refund(refund_request(provider_payment_id=""), CONFIG)

    assert caught.value.code == "not_paid"
    assert len(api.calls) == 1


def test_a_refund_stripe_refuses_is_a_provider_error(api):
    api.post(f"{API}/refunds", status=400, json=stripe_error(
        "invalid_request_error",
        f"Charge {CHARGE_ID} has already been refunded.", "charge_already_refunded"))

    with pytest.raises(PaymentProviderError) as caught:
        provider.refund(refund_request(), CONFIG)

    assert caught.value.code == "charge_already_refunded"
    assert "already been refunded" in str(caught.value)


# --- Loading --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_plugin_loads_through_its_entry_point():
    from backoffice.plugin_host.loading import get_plugin_host

    host = get_plugin_host()

    assert "stripe" in host.plugins
    plugin = host.plugins["stripe"]
    assert {f.name for f in plugin.config_fields} == {
        "secret_key", "webhook_secret", "mode", "payment_method_types", "session_minutes",
        "api_base"}
    assert [f.env_name("stripe") for f in plugin.config_fields][:2] == [
        "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]
    assert [p.code for p in plugin.obj.register_payment_providers()] == ["stripe"]


# --- Mode, key and API base URL -------------------------------------------------------------


@pytest.mark.parametrize(("mode", "key", "field", "words"), [
    ("test", "sk_test_51Mz", None, ""),
    ("test", "rk_test_51Mz", None, ""),
    ("live", "sk_live_51Mz", None, ""),
    ("live", "rk_live_51Mz", None, ""),
    (None, "sk_test_51Mz", None, ""),  # test is the default mode
    ("test", "sk_live_51Mz", "mode", "is a live key (sk_live_...) but the mode is test"),
    ("live", "sk_test_51Mz", "mode", "is a test key (sk_test_...) but the mode is live"),
    ("live", "rk_test_51Mz", "mode", "is a test key (rk_test_...) but the mode is live"),
    ("test", "pk_test_51Mz", "secret_key", "publishable key"),
    ("live", "whsec_51Mz", "secret_key", "Not a Stripe secret key"),
])
def test_the_secret_key_must_belong_to_the_mode(mode, key, field, words):
    errors = validate_config({**CONFIG, "mode": mode, "secret_key": key})
    assert set(errors) == ({field} if field else set())
    if field:
        assert words in errors[field]
        assert key[8:] not in errors[field]  # the message never shows the secret itself


def test_a_key_of_the_other_mode_is_refused_before_stripe_is_called(api):
    with pytest.raises(PluginConfigError) as refused:
        provider.initiate(payment_request(), {**CONFIG, "mode": "live"})
    assert set(refused.value.errors) == {"mode"}
    with pytest.raises(PluginConfigError):
        provider.query_status(SESSION_ID, {**CONFIG, "secret_key": "sk_live_51Mz"})
    assert len(api.calls) == 0


def test_the_api_base_url_sends_every_call_there(api):
    base = "https://stripe-proxy.example.com/stripe"
    api.post(f"{base}/v1/checkout/sessions", json=checkout_session())
    api.get(f"{base}/v1/checkout/sessions/{SESSION_ID}", json=paid_session())

    config = {**CONFIG, "api_base": base + "/"}
    assert provider.initiate(payment_request(), config).provider_reference == SESSION_ID
    assert provider.query_status(SESSION_ID, config).status == "succeeded"
    assert [call.request.url.split("?")[0] for call in api.calls] == [
        f"{base}/v1/checkout/sessions", f"{base}/v1/checkout/sessions/{SESSION_ID}"]


@pytest.mark.parametrize("url", [
    "http://stripe-proxy.example.com", "http://10.0.0.5:8080", "ftp://api.stripe.com",
    "https://user:pw@api.stripe.com", "https://api.stripe.com/?debug=1", "api.stripe.com",
])
def test_an_api_base_url_that_is_not_https_or_loopback_is_refused(api, url):
    assert "api_base" in validate_config({**CONFIG, "api_base": url})
    with pytest.raises(PluginConfigError) as refused:
        provider.initiate(payment_request(), {**CONFIG, "api_base": url})
    message = refused.value.errors["api_base"]
    # It names the address, never a login, a query or a fragment in it.
    parts = urlsplit(url)
    assert (f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
            if parts.hostname else url) in message
    assert "pw@" not in message and "debug" not in message
    assert len(api.calls) == 0


@pytest.mark.django_db
def test_the_admin_shows_mode_and_api_base_and_refuses_a_key_of_the_other_mode(staff_client):
    from backoffice.plugin_host.config import sync_plugin_configs
    from backoffice.plugin_host.models import PluginConfig
    from backoffice.plugin_host.services import update_plugin_config

    sync_plugin_configs()
    row = PluginConfig.objects.get(identifier="stripe")
    page = f"/admin/plugins/pluginconfig/{row.pk}/change/"
    html = staff_client.get(page).content.decode()
    assert 'name="setting__mode"' in html and 'name="setting__api_base"' in html

    response = staff_client.post(page, {
        "active": "on", "setting__mode": "test", "setting__secret_key": "sk_live_51Mz",
        "setting__webhook_secret": WEBHOOK_SECRET, "setting__session_minutes": "60",
        "setting__api_base": "http://stripe.example.com"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "is a live key (sk_live_...) but the mode is test" in html
    assert "must use https" in html
    row.refresh_from_db()
    assert row.active is False and "secret_key" not in row.settings

    with pytest.raises(PluginConfigError) as refused:
        update_plugin_config(identifier="stripe", active=True, changes={
            "secret_key": "sk_live_51Mz", "webhook_secret": WEBHOOK_SECRET})
    assert set(refused.value.errors) == {"mode"}
    update_plugin_config(identifier="stripe", active=True, changes={
        "mode": "live", "secret_key": "sk_live_51Mz", "webhook_secret": WEBHOOK_SECRET,
        "api_base": "http://127.0.0.1:12111"})
    row.refresh_from_db()
    assert row.active and row.settings["api_base"] == "http://127.0.0.1:12111"
