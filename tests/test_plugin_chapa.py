"""The Chapa plugin against Chapa's API at the HTTP level (``responses``), with the payloads of
Chapa's documentation: initialize, verify, refund, and webhooks signed as Chapa signs them (hex
HMAC-SHA256 of the raw body with the webhook secret)."""

import hashlib
import hmac
import json
from decimal import Decimal

import pytest
import requests
import responses

from backoffice.plugin_host.errors import (
    PaymentProviderError,
    PluginConfigError,
    WebhookVerificationError,
)
from backoffice.plugin_host.protocols import PaymentRequest, RefundRequest, WebhookRequest
from plugins.chapa_payment import ChapaProvider, tx_ref, validate_config

API = "https://api.chapa.co/v1"
CONFIG = {"secret_key": "CHASECK_TEST-abc", "webhook_secret": "hush", "title": "Addis Shop"}
PROVIDER = ChapaProvider()
HOSTED = {"message": "Hosted Link", "status": "success",
          "data": {"checkout_url": "https://checkout.chapa.co/checkout/payment/V38Jyhp"}}


def request(currency="ETB", key="pay-abc"):
    return PaymentRequest(
        payment_id=7, order_number="10007", amount=Decimal("1250.50"), currency=currency,
        idempotency_key=key, customer_email="abebe@example.com",
        customer_phone="+251 911 234 567", description="Order 10007",
        return_url="https://shop.example.com/orders/10007/payment?payment=7",
        metadata={"first_name": "Abebe", "last_name": "Bikila"})


def webhook(status="success", key="hush", body=None, header="x-chapa-signature"):
    raw = body or json.dumps({
        "event": "charge.success" if status == "success" else f"charge.{status}",
        "first_name": "Abebe", "last_name": "Bikila", "email": "abebe@example.com",
        "mobile": "0911234567", "currency": "ETB", "amount": "1250.50", "charge": "43.77",
        "status": status, "mode": "test", "reference": "AP634JFwMtVd", "tx_ref": "bo-7-x",
        "payment_method": "telebirr", "type": "API",
        "created_at": "2024-05-14T09:15:23.000000Z", "updated_at": "2024-05-14T09:15:23Z",
    })
    signature = hmac.new(key.encode(), raw.encode(), hashlib.sha256).hexdigest()
    return WebhookRequest(body=raw.encode(), headers={header: signature} if header else {})


@responses.activate
def test_initialize_sends_a_stable_tx_ref_and_no_callback_url():
    responses.add(responses.POST, f"{API}/transaction/initialize", json=HOSTED)
    started = PROVIDER.initiate(request(), CONFIG)
    assert started.next_action.kind == "redirect"
    assert started.next_action.url == HOSTED["data"]["checkout_url"]
    assert started.provider_reference == tx_ref(request()) == tx_ref(request())
    assert tx_ref(request(key="pay-other")) != started.provider_reference
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer CHASECK_TEST-abc"
    body = json.loads(sent.body)
    assert (body["amount"], body["currency"], body["email"]) == ("1250.50", "ETB",
                                                                 "abebe@example.com")
    assert (body["first_name"], body["last_name"], body["phone_number"]) == (
        "Abebe", "Bikila", "0911234567")
    assert "callback_url" not in body and body["return_url"].startswith("https://shop.")
    assert len(body["customization"]["title"]) <= 16


def test_only_birr_and_dollars():
    with pytest.raises(PaymentProviderError) as refused:
        PROVIDER.initiate(request(currency="KES"), CONFIG)
    assert refused.value.code == "currency_not_supported"


@responses.activate
@pytest.mark.parametrize("message", [
    {"email": ["validation.email"]}, "Invalid currency", None,
])
def test_chapa_refusing_initialize_is_a_refusal_with_its_message(message):
    responses.add(responses.POST, f"{API}/transaction/initialize", status=400,
                  json={"message": message, "status": "failed", "data": None})
    with pytest.raises(PaymentProviderError) as refused:
        PROVIDER.initiate(request(), CONFIG)
    if isinstance(message, dict):
        assert "email: validation.email" in str(refused.value)
    elif message:
        assert message in str(refused.value)


@responses.activate
def test_chapa_outages_are_temporary():
    responses.add(responses.POST, f"{API}/transaction/initialize", status=502, body="bad gw")
    with pytest.raises(requests.HTTPError):
        PROVIDER.initiate(request(), CONFIG)
    responses.replace(responses.POST, f"{API}/transaction/initialize",
                      body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(requests.exceptions.ReadTimeout):
        PROVIDER.initiate(request(), CONFIG)


def test_signed_webhooks_become_events():
    (paid,) = PROVIDER.verify_webhook(webhook(), CONFIG)
    assert (paid.status, paid.amount, paid.currency, paid.provider_reference) == (
        "succeeded", Decimal("1250.50"), "ETB", "bo-7-x")
    assert paid.provider_payment_id == "AP634JFwMtVd"
    (failed,) = PROVIDER.verify_webhook(webhook(status="failed"), CONFIG)
    assert failed.status == "failed" and failed.event_id != paid.event_id
    payout = json.dumps({"event": "payout.success", "status": "queued", "tx_ref": "p-1"})
    assert PROVIDER.verify_webhook(webhook(body=payout), CONFIG) == []


def test_unsigned_wrongly_signed_or_tampered_webhooks_are_refused():
    tampered = webhook()
    tampered = WebhookRequest(body=tampered.body.replace(b"1250.50", b"1.00"),
                              headers=tampered.headers)
    for bad in (webhook(key="guess"), webhook(header=None), tampered,
                webhook(body="not json")):
        with pytest.raises(WebhookVerificationError):
            PROVIDER.verify_webhook(bad, CONFIG)
    # Header names arrive in any case.
    assert PROVIDER.verify_webhook(webhook(header="X-Chapa-Signature"), CONFIG)


@responses.activate
@pytest.mark.parametrize(("state", "expected"), [
    ("success", "succeeded"), ("pending", "pending"), ("failed", "failed"),
])
def test_verify_says_where_a_payment_stands(state, expected):
    responses.add(responses.GET, f"{API}/transaction/verify/bo-7-x", json={
        "message": "Payment details", "status": "success", "data": {
            "first_name": "Abebe", "last_name": "Bikila", "email": "abebe@example.com",
            "currency": "ETB", "amount": 1250.5, "charge": 43.77, "mode": "test",
            "method": "telebirr", "type": "API", "status": state, "reference": "AP634JFwMtVd",
            "tx_ref": "bo-7-x", "customization": {}, "meta": None,
            "created_at": "2024-05-14T09:15:23.000000Z"}})
    answer = PROVIDER.query_status("bo-7-x", CONFIG)
    assert answer.status == expected
    assert (answer.amount, answer.currency) == (Decimal("1250.5"), "ETB")
    assert responses.calls[0].request.headers["Authorization"] == "Bearer CHASECK_TEST-abc"


@responses.activate
def test_a_transaction_chapa_does_not_know_is_still_pending():
    responses.add(responses.GET, f"{API}/transaction/verify/bo-7-x", status=404, json={
        "message": "Invalid transaction or Transaction not found", "status": "failed",
        "data": None})
    answer = PROVIDER.query_status("bo-7-x", CONFIG)
    assert answer.status == "pending" and "not found" in answer.message


@responses.activate
def test_refunds_name_chapas_reference_and_refusals_say_why():
    responses.add(responses.POST, f"{API}/refund/AP634JFwMtVd", json={
        "message": "Refund initiated successfully", "status": "success",
        "data": {"status": "pending", "refund_reference": "RF-1", "amount": "100.00"}})
    result = PROVIDER.refund(RefundRequest(
        provider_reference="bo-7-x", provider_payment_id="AP634JFwMtVd",
        amount=Decimal("100"), currency="ETB", idempotency_key="refund-1-pay-abc",
        reason="broken"), CONFIG)
    assert (result.status, result.provider_refund_id) == ("pending", "RF-1")
    sent = responses.calls[0].request.body
    assert "amount=100.00" in sent and "reason=broken" in sent and "reference=refund-1" in sent
    responses.add(responses.POST, f"{API}/refund/bo-7-y", status=400, json={
        "message": "Refund amount exceeds the transaction amount", "status": "failed"})
    with pytest.raises(PaymentProviderError) as refused:
        PROVIDER.refund(RefundRequest(provider_reference="bo-7-y", amount=Decimal("1e6"),
                                      currency="ETB", idempotency_key="r2"), CONFIG)
    assert "exceeds" in str(refused.value)


@pytest.mark.django_db
def test_the_plugin_loads_through_its_entry_point():
    from backoffice.plugin_host.loading import get_plugin_host

    assert "chapa" in get_plugin_host().plugins


# --- Mode, key and API base URL -------------------------------------------------------------


@pytest.mark.parametrize(("mode", "key", "field", "words"), [
    ("test", "CHASECK_TEST-abc", None, ""),
    (None, "CHASECK_TEST-abc", None, ""),  # test is the default mode
    ("live", "CHASECK-abc", None, ""),
    ("live", "CHASECK_TEST-abc", "mode", "is a test key (CHASECK_TEST-...) but the mode is live"),
    ("test", "CHASECK-abc", "mode", "is a live key (CHASECK-...) but the mode is test"),
    ("test", "CHAPUBK_TEST-abc", "secret_key", "public key"),
    ("live", "sk_live_abc", "secret_key", "Not a Chapa secret key"),
])
def test_the_secret_key_must_belong_to_the_mode(mode, key, field, words):
    errors = validate_config({**CONFIG, "mode": mode, "secret_key": key})
    assert set(errors) == ({field} if field else set())
    if field:
        assert words in errors[field] and "abc" not in errors[field]


@responses.activate
def test_a_key_of_the_other_mode_or_a_bad_base_is_refused_before_chapa_is_called():
    with pytest.raises(PluginConfigError) as refused:
        PROVIDER.initiate(request(), {**CONFIG, "mode": "live"})
    assert set(refused.value.errors) == {"mode"}
    with pytest.raises(PluginConfigError, match="must use https"):
        PROVIDER.query_status("bo-7-x", {**CONFIG, "api_base": "http://chapa.example.com"})
    assert len(responses.calls) == 0


@responses.activate
def test_the_api_base_url_sends_every_call_there():
    base = "https://chapa-proxy.example.com"
    responses.add(responses.POST, f"{base}/v1/transaction/initialize", json=HOSTED)
    responses.add(responses.GET, f"{base}/v1/transaction/verify/bo-7-x", json={
        "message": "Payment details", "status": "success", "data": {
            "currency": "ETB", "amount": 1250.5, "status": "success", "tx_ref": "bo-7-x",
            "reference": "AP634JFwMtVd"}})
    config = {**CONFIG, "mode": "test", "api_base": base + "/"}
    PROVIDER.initiate(request(), config)
    assert PROVIDER.query_status("bo-7-x", config).status == "succeeded"
    assert [c.request.url for c in responses.calls] == [
        f"{base}/v1/transaction/initialize", f"{base}/v1/transaction/verify/bo-7-x"]
