"""The M-Pesa plugin against Daraja at the HTTP level (``responses``), with the payloads of
Safaricom's documentation: what is sent (auth, password, timestamp, amount, phone, callback),
the token cache, refusals and temporary failures, callbacks for each result, and the query."""

import base64
import json
import re
from decimal import Decimal

import pytest
import requests
import responses

from backoffice.plugin_host.errors import PaymentProviderError, WebhookVerificationError
from backoffice.plugin_host.protocols import PaymentRequest, RefundRequest, WebhookRequest
from plugins.mpesa_payment import MpesaProvider, normalise_phone

BASE = "https://sandbox.safaricom.co.ke"
CONFIG = {"environment": "sandbox", "consumer_key": "ck", "consumer_secret": "cs",
          "shortcode": "174379", "passkey": "bfb279f9aa9bdbcf", "callback_token": "t" * 32,
          "transaction_type": "CustomerPayBillOnline", "till_number": None,
          "account_reference": "{order_number}", "transaction_desc": "Order {order_number}"}
PROVIDER = MpesaProvider()


def request(amount="605", phone="0712 345 678", currency="KES", number="10001"):
    return PaymentRequest(
        payment_id=1, order_number=number, amount=Decimal(amount), currency=currency,
        idempotency_key="pay-1", customer_phone=phone,
        callback_url="https://shop.example.com/api/v1/payments/webhooks/mpesa/")


def token(count=1):
    for i in range(count):
        responses.add(responses.GET, f"{BASE}/oauth/v1/generate",
                      json={"access_token": f"tok{i}", "expires_in": "3599"})


def accepted():
    responses.add(responses.POST, f"{BASE}/mpesa/stkpush/v1/processrequest", json={
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": "ws_CO_191220191020363925",
        "ResponseCode": "0", "ResponseDescription": "Success. Request accepted for processing",
        "CustomerMessage": "Success. Request accepted for processing"})


def callback(code, items=None, token_=CONFIG["callback_token"], desc="done"):
    body = {"Body": {"stkCallback": {
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": "ws_CO_191220191020363925",
        "ResultCode": code, "ResultDesc": desc}}}
    raw = json.dumps(body)
    if items is not None:
        raw = raw[:-3] + ', "CallbackMetadata": {"Item": ' + items + "}}}}"
    return WebhookRequest(body=raw.encode(), headers={}, query={"token": token_} if token_
                          else {})


@pytest.fixture(autouse=True)
def _cache(db):
    """The token lives in Django's cache (cleared around every test by conftest)."""


@pytest.mark.parametrize("raw", ["0712 345 678", "+254712345678", "254712345678", "712345678",
                                 "0712-345-678", "(0712) 345678"])
def test_kenyan_numbers_in_every_usual_form_become_2547(raw):
    assert normalise_phone(raw) == "254712345678"
    assert normalise_phone("0110 123 456") == "254110123456"


@pytest.mark.parametrize("raw", ["", "12345", "+255712345678", "0812345678", "07123456789"])
def test_other_numbers_are_refused(raw):
    with pytest.raises(PaymentProviderError) as refused:
        normalise_phone(raw)
    assert refused.value.code == "invalid_phone"


@responses.activate
def test_stk_push_sends_what_daraja_documents_and_the_token_is_fetched_once():
    token()
    accepted()
    accepted()
    first = PROVIDER.initiate(request(number="1000123456789"), CONFIG)
    PROVIDER.initiate(request(), CONFIG)
    assert first.provider_reference == "ws_CO_191220191020363925"
    assert first.status == "requires_action" and first.next_action.kind == "approve_on_phone"
    assert "254712345678" in first.next_action.message
    oauth = [c for c in responses.calls if "oauth" in c.request.url]
    assert len(oauth) == 1
    assert oauth[0].request.headers["Authorization"] == "Basic " + base64.b64encode(
        b"ck:cs").decode()
    push = responses.calls[1].request
    assert push.headers["Authorization"] == "Bearer tok0"
    body = json.loads(push.body)
    assert re.fullmatch(r"\d{14}", body["Timestamp"])
    assert body["Password"] == base64.b64encode(
        f"174379bfb279f9aa9bdbcf{body['Timestamp']}".encode()).decode()
    assert (body["Amount"], body["PartyA"], body["PhoneNumber"], body["PartyB"]) == (
        605, "254712345678", "254712345678", "174379")
    assert body["TransactionType"] == "CustomerPayBillOnline"
    assert body["CallBackURL"] == ("https://shop.example.com/api/v1/payments/webhooks/mpesa/"
                                   f"?token={'t' * 32}")
    assert body["AccountReference"] == "100012345678"  # 12 characters at most


@responses.activate
def test_a_revoked_token_is_fetched_again_once():
    token(2)
    responses.add(responses.POST, f"{BASE}/mpesa/stkpush/v1/processrequest", status=401,
                  json={"errorCode": "404.001.03", "errorMessage": "Invalid Access Token"})
    accepted()
    assert PROVIDER.initiate(request(), CONFIG).provider_reference
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer tok1"


def test_only_whole_shillings_and_https_callbacks():
    with pytest.raises(PaymentProviderError) as cents:
        PROVIDER.initiate(request(amount="605.50"), CONFIG)
    assert cents.value.code == "amount_not_whole"
    with pytest.raises(PaymentProviderError) as usd:
        PROVIDER.initiate(request(currency="USD"), CONFIG)
    assert usd.value.code == "currency_not_supported"
    plain = PaymentRequest(payment_id=1, order_number="1", amount=Decimal("5"), currency="KES",
                           idempotency_key="k", customer_phone="0712345678",
                           callback_url="http://localhost:8000/api/v1/payments/webhooks/mpesa/")
    with pytest.raises(PaymentProviderError) as http:
        PROVIDER.initiate(plain, CONFIG)
    assert http.value.code == "callback_not_https"


@responses.activate
def test_daraja_refusing_is_a_refusal_and_its_outages_are_temporary():
    token()
    responses.add(responses.POST, f"{BASE}/mpesa/stkpush/v1/processrequest", status=400, json={
        "requestId": "12737-4545-1", "errorCode": "400.002.02",
        "errorMessage": "Bad Request - Invalid PhoneNumber"})
    with pytest.raises(PaymentProviderError) as refused:
        PROVIDER.initiate(request(), CONFIG)
    assert "Invalid PhoneNumber" in str(refused.value) and refused.value.code == "400.002.02"
    responses.replace(responses.POST, f"{BASE}/mpesa/stkpush/v1/processrequest", status=503,
                      body="Service Unavailable")
    with pytest.raises(requests.HTTPError):
        PROVIDER.initiate(request(), CONFIG)
    responses.replace(responses.POST, f"{BASE}/mpesa/stkpush/v1/processrequest",
                      body=requests.exceptions.ConnectTimeout("slow"))
    with pytest.raises(requests.exceptions.ConnectTimeout):
        PROVIDER.initiate(request(), CONFIG)


def test_a_successful_callback_carries_the_amount_and_the_receipt():
    items = ('[{"Name": "Amount", "Value": 1.00}, {"Name": "MpesaReceiptNumber", '
             '"Value": "NLJ7RT61SV"}, {"Name": "Balance"}, {"Name": "TransactionDate", '
             '"Value": 20191219102115}, {"Name": "PhoneNumber", "Value": 254708374149}]')
    (event,) = PROVIDER.verify_webhook(callback(0, items), CONFIG)
    assert (event.event_id, event.status, event.amount, event.currency) == (
        "ws_CO_191220191020363925", "succeeded", Decimal("1.00"), "KES")
    assert event.provider_payment_id == "NLJ7RT61SV" and event.message == ""


@pytest.mark.parametrize(("code", "status", "words"), [
    (1032, "cancelled", "cancelled on the phone"),
    ("1037", "failed", "could not be reached"),
    (2001, "failed", "PIN was wrong"),
    (1, "failed", "balance is too low"),
    (9999, "failed", "strange"),
])
def test_failed_callbacks_say_why(code, status, words):
    (event,) = PROVIDER.verify_webhook(callback(code, desc="strange"), CONFIG)
    assert event.status == status and words in event.message and event.amount is None


def test_a_callback_without_our_token_or_not_a_callback_is_refused():
    for bad in (callback(0, token_="guess"), callback(0, token_="")):
        with pytest.raises(WebhookVerificationError):
            PROVIDER.verify_webhook(bad, CONFIG)
    with pytest.raises(WebhookVerificationError):
        PROVIDER.verify_webhook(WebhookRequest(body=b'{"Body": {}}', headers={},
                                               query={"token": "t" * 32}), CONFIG)
    with pytest.raises(WebhookVerificationError):
        PROVIDER.verify_webhook(WebhookRequest(body=b"not json", headers={},
                                               query={"token": "t" * 32}), CONFIG)


@responses.activate
def test_the_stk_query_settles_or_says_it_is_still_being_processed():
    token()
    url = f"{BASE}/mpesa/stkpushquery/v1/query"
    responses.add(responses.POST, url, json={
        "ResponseCode": "0", "ResponseDescription": "The service request has been accepted "
        "successsfully", "MerchantRequestID": "22205-34066-1",
        "CheckoutRequestID": "ws_CO_13012021093521236557", "ResultCode": "0",
        "ResultDesc": "The service request is processed successfully."})
    assert PROVIDER.query_status("ws_CO_13012021093521236557", CONFIG).status == "succeeded"
    sent = json.loads(responses.calls[-1].request.body)
    assert sent["CheckoutRequestID"] == "ws_CO_13012021093521236557" and sent["Password"]
    responses.replace(responses.POST, url, json={
        "ResponseCode": "0", "ResultCode": "1032", "ResultDesc": "Request cancelled by user"})
    assert PROVIDER.query_status("ws_CO_1", CONFIG).status == "cancelled"
    responses.replace(responses.POST, url, status=500, json={
        "requestId": "ab", "errorCode": "500.001.1001",
        "errorMessage": "The transaction is being processed"})
    assert PROVIDER.query_status("ws_CO_1", CONFIG).status == "pending"


def test_refunds_are_reversals_made_by_hand():
    with pytest.raises(PaymentProviderError) as refused:
        PROVIDER.refund(RefundRequest(provider_reference="ws", amount=Decimal("5"),
                                      currency="KES", idempotency_key="r"), CONFIG)
    assert refused.value.code == "refunds_not_supported"
    assert PROVIDER.supports_refunds is False and PROVIDER.confirm_webhooks is True


def test_the_plugin_loads_through_its_entry_point():
    from backoffice.plugin_host.loading import get_plugin_host

    assert "mpesa" in get_plugin_host().plugins
