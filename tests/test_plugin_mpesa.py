"""The M-Pesa plugin against Daraja at the HTTP level (``responses``), with the payloads of
Safaricom's documentation: what is sent (auth, password, timestamp, amount, phone, callback),
the token cache, refusals and temporary failures, callbacks for each result, and the query.

The token cache is Django's cache (file-based in the test settings, cleared around every test
by conftest): no database is needed except to load the plugins."""

import base64
import json
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from backoffice.plugin_host.errors import (
    PaymentProviderError,
    PluginConfigError,
    WebhookVerificationError,
)
from backoffice.plugin_host.protocols import PaymentRequest, RefundRequest, WebhookRequest
from plugins.mpesa_payment import MpesaProvider, validate_config

BASE = "https://sandbox.safaricom.co.ke"
OAUTH = f"{BASE}/oauth/v1/generate"
PUSH = f"{BASE}/mpesa/stkpush/v1/processrequest"
QUERY = f"{BASE}/mpesa/stkpushquery/v1/query"
CHECKOUT = "ws_CO_191220191020363925"
TOKEN = "t" * 40
CONFIG = {"environment": "sandbox", "consumer_key": "ck", "consumer_secret": "cs",
          "shortcode": "174379", "passkey": "test-passkey", "callback_token": TOKEN,
          "transaction_type": "CustomerPayBillOnline", "till_number": None,
          "account_reference": "{order_number}", "transaction_desc": "Order {order_number}"}
HOOK = "https://shop.example.com/api/v1/payments/webhooks/mpesa/"
PROVIDER = MpesaProvider()


def pay(amount="605", phone="0712 345 678", currency="KES", number="10001", callback=HOOK):
    return PaymentRequest(
        payment_id=1, order_number=number, amount=Decimal(amount), currency=currency,
        idempotency_key="pay-1", customer_phone=phone, callback_url=callback)


def oauth(count=1):
    for i in range(count):
        responses.add(responses.GET, OAUTH, json={"access_token": f"tok{i}",
                                                  "expires_in": "3599"})


def accepted():
    responses.add(responses.POST, PUSH, json={
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": CHECKOUT,
        "ResponseCode": "0", "ResponseDescription": "Success. Request accepted for processing",
        "CustomerMessage": "Success. Request accepted for processing"})


def sent(url=PUSH):
    """The JSON body of the last request to ``url``."""
    return json.loads([c for c in responses.calls if c.request.url == url][-1].request.body)


def callback(code, items="", token=TOKEN, desc="done"):
    """A callback as Daraja posts it: raw JSON text, so that ``1.00`` stays ``1.00``."""
    metadata = f', "CallbackMetadata": {{"Item": {items}}}' if items else ""
    raw = ('{"Body": {"stkCallback": {"MerchantRequestID": "29115-34620561-1", '
           f'"CheckoutRequestID": "{CHECKOUT}", "ResultCode": {json.dumps(code)}, '
           f'"ResultDesc": "{desc}"{metadata}}}}}}}')
    return WebhookRequest(body=raw.encode(), headers={"Content-Type": "application/json"},
                          query={"token": token} if token is not None else {})


# --- Starting a payment ---------------------------------------------------------------------


@responses.activate
def test_stk_push_sends_what_daraja_documents_and_the_token_is_fetched_once():
    oauth()
    accepted()
    accepted()
    first = PROVIDER.initiate(pay(number="1000123456789"), CONFIG)
    PROVIDER.initiate(pay(), CONFIG)

    assert first.provider_reference == CHECKOUT and first.raw["MerchantRequestID"]
    assert first.status == "requires_action" and first.next_action.kind == "approve_on_phone"
    assert first.next_action.message == ("Check your phone (254712345678) and enter your "
                                         "M-Pesa PIN to pay KES 605.")
    token_calls = [c for c in responses.calls if c.request.url.startswith(OAUTH)]
    assert len(token_calls) == 1
    assert "grant_type=client_credentials" in token_calls[0].request.url
    assert token_calls[0].request.headers["Authorization"] == (
        "Basic " + base64.b64encode(b"ck:cs").decode())
    push = responses.calls[1].request
    assert push.headers["Authorization"] == "Bearer tok0"
    body = json.loads(push.body)
    assert re.fullmatch(r"20\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])([01]\d|2[0-3])[0-5]\d[0-5]\d",
                        body["Timestamp"])
    assert body["Password"] == base64.b64encode(
        f"174379test-passkey{body['Timestamp']}".encode()).decode()
    assert body["BusinessShortCode"] == "174379"
    assert body["Amount"] == 605 and isinstance(body["Amount"], int)
    assert (body["PartyA"], body["PhoneNumber"], body["PartyB"]) == (
        "254712345678", "254712345678", "174379")
    assert body["TransactionType"] == "CustomerPayBillOnline"
    assert body["CallBackURL"] == f"{HOOK}?token={TOKEN}"
    assert body["AccountReference"] == "100012345678"  # 12 characters at most
    assert body["TransactionDesc"] == "Order 1000123"  # 13 characters at most
    assert sent()["AccountReference"] == "10001"


@responses.activate
def test_tokens_are_cached_per_consumer_key():
    oauth(2)
    accepted()
    accepted()
    PROVIDER.initiate(pay(), CONFIG)
    PROVIDER.initiate(pay(), {**CONFIG, "consumer_key": "other"})
    assert len([c for c in responses.calls if c.request.url.startswith(OAUTH)]) == 2
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer tok1"


@responses.activate
def test_a_revoked_token_is_fetched_again_once():
    oauth(2)
    responses.add(responses.POST, PUSH, status=401,
                  json={"requestId": "1", "errorCode": "404.001.03",
                        "errorMessage": "Invalid Access Token"})
    accepted()
    assert PROVIDER.initiate(pay(), CONFIG).provider_reference == CHECKOUT
    assert [c.request.headers["Authorization"] for c in responses.calls
            if c.request.url == PUSH] == ["Bearer tok0", "Bearer tok1"]


@responses.activate
def test_a_token_refused_twice_is_a_refusal_not_a_loop():
    oauth(2)
    for _ in range(2):
        responses.add(responses.POST, PUSH, status=401,
                      json={"requestId": "1", "errorCode": "404.001.03",
                            "errorMessage": "Invalid Access Token"})
    with pytest.raises(PaymentProviderError, match="Invalid Access Token"):
        PROVIDER.initiate(pay(), CONFIG)
    assert len([c for c in responses.calls if c.request.url == PUSH]) == 2


@responses.activate
def test_buy_goods_pays_the_till():
    oauth()
    accepted()
    PROVIDER.initiate(pay(), {**CONFIG, "transaction_type": "CustomerBuyGoodsOnline",
                              "till_number": "5544332"})
    body = sent()
    assert (body["TransactionType"], body["BusinessShortCode"], body["PartyB"]) == (
        "CustomerBuyGoodsOnline", "174379", "5544332")


@responses.activate
def test_merchant_templates_are_filled_and_kept_to_what_daraja_takes():
    oauth()
    accepted()
    PROVIDER.initiate(pay(), {**CONFIG, "account_reference": "Shop&Co #{order_number}",
                              "transaction_desc": "{order} {order_number}"})
    body = sent()
    assert body["AccountReference"] == "ShopCo 10001"
    assert body["TransactionDesc"] == "order 10001"


@responses.activate
def test_the_callback_url_keeps_its_query_and_carries_the_token():
    oauth()
    accepted()
    PROVIDER.initiate(pay(callback=f"{HOOK}?store=main&token=old"), CONFIG)
    query = parse_qs(urlsplit(sent()["CallBackURL"]).query)
    assert query == {"store": ["main"], "token": [TOKEN]}


@pytest.mark.parametrize(("raw", "msisdn"), [
    ("0712 345 678", "254712345678"),
    ("+254712345678", "254712345678"),
    ("254712345678", "254712345678"),
    ("712345678", "254712345678"),
    ("0712-345-678", "254712345678"),
    ("+254 712 345 678", "254712345678"),
    ("0110 123 456", "254110123456"),
    ("+254-110-123-456", "254110123456"),
])
@responses.activate
def test_kenyan_numbers_in_every_usual_form_are_sent_as_254(raw, msisdn):
    oauth()
    accepted()
    PROVIDER.initiate(pay(phone=raw), CONFIG)
    body = sent()
    assert body["PartyA"] == body["PhoneNumber"] == msisdn


@pytest.mark.parametrize("raw", ["", "12345", "+255712345678", "0812345678", "07123456789",
                                 "0712 345 67", "254 0712 345 678", "0712345678x"])
@responses.activate
def test_other_numbers_are_refused_before_daraja_is_called(raw):
    with pytest.raises(PaymentProviderError) as refused:
        PROVIDER.initiate(pay(phone=raw), CONFIG)
    assert refused.value.code == "invalid_phone"
    assert len(responses.calls) == 0


@pytest.mark.parametrize(("amount", "currency", "code"), [
    ("605", "USD", "currency_not_supported"),
    ("605.50", "KES", "amount_not_whole"),
    ("0.40", "KES", "amount_not_whole"),
])
@responses.activate
def test_only_whole_kenyan_shillings(amount, currency, code):
    with pytest.raises(PaymentProviderError) as refused:
        PROVIDER.initiate(pay(amount=amount, currency=currency), CONFIG)
    assert refused.value.code == code and ("KES" in str(refused.value))
    assert len(responses.calls) == 0


@responses.activate
def test_whole_shillings_written_with_cents_are_sent_as_an_integer():
    oauth()
    accepted()
    PROVIDER.initiate(pay(amount="1500.00"), CONFIG)
    assert sent()["Amount"] == 1500 and isinstance(sent()["Amount"], int)


@responses.activate
def test_a_callback_url_that_is_not_https_is_refused():
    with pytest.raises(PaymentProviderError, match="https") as refused:
        PROVIDER.initiate(pay(callback="http://localhost:8000/api/v1/payments/webhooks/mpesa/"),
                          CONFIG)
    assert refused.value.code == "callback_not_https"
    assert len(responses.calls) == 0


@responses.activate
def test_daraja_error_body_is_a_refusal_with_its_message():
    oauth()
    responses.add(responses.POST, PUSH, status=400, json={
        "requestId": "12737-4545-1", "errorCode": "400.002.02",
        "errorMessage": "Bad Request - Invalid PhoneNumber"})
    with pytest.raises(PaymentProviderError, match="Bad Request - Invalid PhoneNumber"):
        PROVIDER.initiate(pay(), CONFIG)


@responses.activate
def test_a_response_code_other_than_0_is_a_refusal():
    oauth()
    responses.add(responses.POST, PUSH, json={
        "MerchantRequestID": "1", "CheckoutRequestID": CHECKOUT, "ResponseCode": "1",
        "ResponseDescription": "Rejected", "CustomerMessage": "Rejected"})
    with pytest.raises(PaymentProviderError, match="Rejected"):
        PROVIDER.initiate(pay(), CONFIG)


@responses.activate
def test_refused_credentials_are_a_refusal():
    responses.add(responses.GET, OAUTH, status=400, json={
        "requestId": "1", "errorCode": "400.008.01", "errorMessage": "Invalid Authentication"})
    with pytest.raises(PaymentProviderError) as refused:
        PROVIDER.initiate(pay(), CONFIG)
    assert refused.value.code == "invalid_credentials"


@responses.activate
def test_a_daraja_500_is_temporary_and_propagates():
    oauth()
    responses.add(responses.POST, PUSH, status=500, json={
        "requestId": "1", "errorCode": "500.001.1001",
        "errorMessage": "Unable to lock subscriber, a transaction is already in process for "
                        "the current subscriber"})
    with pytest.raises(requests.HTTPError):
        PROVIDER.initiate(pay(), CONFIG)


@responses.activate
def test_a_timeout_propagates():
    oauth()
    responses.add(responses.POST, PUSH, body=requests.exceptions.ConnectTimeout())
    with pytest.raises(requests.exceptions.ConnectTimeout):
        PROVIDER.initiate(pay(), CONFIG)


# --- Callbacks ------------------------------------------------------------------------------

PAID = ('[{"Name": "Amount", "Value": %s}, {"Name": "MpesaReceiptNumber", '
        '"Value": "NLJ7RT61SV"}, {"Name": "Balance"}, {"Name": "TransactionDate", '
        '"Value": 20191219102115}, {"Name": "PhoneNumber", "Value": 254708374149}]')


@pytest.mark.parametrize(("value", "amount"), [("1.00", Decimal("1.00")), ("1", Decimal("1"))])
@pytest.mark.parametrize("code", [0, "0"])
def test_a_successful_callback_carries_the_amount_and_the_receipt(value, amount, code):
    (event,) = PROVIDER.verify_webhook(callback(code, PAID % value), CONFIG)
    assert (event.event_id, event.provider_reference) == (CHECKOUT, CHECKOUT)
    assert (event.status, event.amount, event.currency) == ("succeeded", amount, "KES")
    assert isinstance(event.amount, Decimal)
    assert event.provider_payment_id == "NLJ7RT61SV" and event.message == ""


@pytest.mark.parametrize(("code", "status", "words"), [
    (1032, "cancelled", "cancelled on the phone"),
    ("1032", "cancelled", "cancelled on the phone"),
    (1037, "failed", "could not be reached"),
    (2001, "failed", "PIN was wrong"),
    (1, "failed", "balance is too low"),
    (1001, "failed", "Another M-Pesa transaction"),
    (1019, "failed", "expired"),
    (1036, "failed", "did not answer"),
    (9999, "failed", "something odd"),
])
def test_failed_callbacks_say_why(code, status, words):
    (event,) = PROVIDER.verify_webhook(callback(code, desc="something odd"), CONFIG)
    assert (event.event_id, event.status) == (CHECKOUT, status)
    assert words in event.message
    assert event.amount is None and event.provider_payment_id == ""


@pytest.mark.parametrize("token", ["guess", "", None, TOKEN[:-1], TOKEN + "x"])
def test_a_callback_without_our_token_is_refused(token):
    with pytest.raises(WebhookVerificationError):
        PROVIDER.verify_webhook(callback(0, PAID % "1.00", token=token), CONFIG)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"Body": {}}',
                                  b'{"Body": {"stkCallback": "x"}}',
                                  b'{"Body": {"stkCallback": {"ResultCode": 0}}}',
                                  b'{"Result": {"ResultCode": 0}}'])
def test_a_body_that_is_not_an_stk_callback_is_refused(body):
    with pytest.raises(WebhookVerificationError):
        PROVIDER.verify_webhook(WebhookRequest(body=body, headers={}, query={"token": TOKEN}),
                                CONFIG)


# --- The STK push query ---------------------------------------------------------------------


def answered(code, desc):
    responses.add(responses.POST, QUERY, json={
        "ResponseCode": "0", "ResponseDescription": "The service request has been accepted "
        "successsfully", "MerchantRequestID": "22205-34066-1", "CheckoutRequestID": CHECKOUT,
        "ResultCode": code, "ResultDesc": desc})


@responses.activate
def test_the_query_confirms_a_payment():
    oauth()
    answered("0", "The service request is processed successfully.")
    answer = PROVIDER.query_status(CHECKOUT, CONFIG)
    assert (answer.status, answer.amount, answer.message) == ("succeeded", None, "")
    body = sent(QUERY)
    assert set(body) == {"BusinessShortCode", "Password", "Timestamp", "CheckoutRequestID"}
    assert body["CheckoutRequestID"] == CHECKOUT and body["BusinessShortCode"] == "174379"
    assert body["Password"] == base64.b64encode(
        f"174379test-passkey{body['Timestamp']}".encode()).decode()
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer tok0"


@responses.activate
def test_the_query_says_cancelled():
    oauth()
    answered("1032", "Request cancelled by user")
    answer = PROVIDER.query_status(CHECKOUT, CONFIG)
    assert answer.status == "cancelled" and "cancelled on the phone" in answer.message


@responses.activate
def test_the_query_says_failed_for_a_wrong_pin():
    oauth()
    answered("2001", "The initiator information is invalid.")
    assert PROVIDER.query_status(CHECKOUT, CONFIG).status == "failed"


@responses.activate
def test_the_query_while_the_customer_has_not_answered_is_pending():
    oauth()
    responses.add(responses.POST, QUERY, status=500, json={
        "requestId": "ws_CO_20022018230142206", "errorCode": "500.001.1001",
        "errorMessage": "The transaction is being processed"})
    assert PROVIDER.query_status(CHECKOUT, CONFIG).status == "pending"


@responses.activate
def test_the_query_failing_otherwise_propagates():
    oauth()
    responses.add(responses.POST, QUERY, status=503, body="Service Unavailable")
    with pytest.raises(requests.HTTPError):
        PROVIDER.query_status(CHECKOUT, CONFIG)


# --- Refunds and loading --------------------------------------------------------------------


def test_refunds_are_reversals_made_by_hand():
    with pytest.raises(PaymentProviderError, match="M-Pesa org portal") as refused:
        PROVIDER.refund(RefundRequest(provider_reference=CHECKOUT, amount=Decimal("5"),
                                      currency="KES", idempotency_key="r"), CONFIG)
    assert refused.value.code == "refunds_not_supported"
    assert (PROVIDER.code, PROVIDER.supports_refunds, PROVIDER.confirm_webhooks,
            PROVIDER.unpaid_orders_expire) == ("mpesa", False, True, True)


@pytest.mark.django_db
def test_the_plugin_loads_through_its_entry_point():
    from backoffice.plugin_host.loading import get_plugin_host

    assert "mpesa" in get_plugin_host().plugins


# --- Environment and API base URL -----------------------------------------------------------


@responses.activate
def test_production_uses_safaricoms_production_host():
    live = "https://api.safaricom.co.ke"
    responses.add(responses.GET, f"{live}/oauth/v1/generate",
                  json={"access_token": "live-tok", "expires_in": "3599"})
    responses.add(responses.POST, f"{live}/mpesa/stkpush/v1/processrequest", json={
        "MerchantRequestID": "1", "CheckoutRequestID": CHECKOUT, "ResponseCode": "0",
        "ResponseDescription": "Success. Request accepted for processing"})
    PROVIDER.initiate(pay(), {**CONFIG, "environment": "production"})
    assert [c.request.url.split("?")[0] for c in responses.calls] == [
        f"{live}/oauth/v1/generate", f"{live}/mpesa/stkpush/v1/processrequest"]


@responses.activate
def test_the_api_base_url_replaces_the_host_and_tokens_never_cross_hosts():
    proxy = "https://daraja-proxy.example.com/mpesa-gw"
    responses.add(responses.GET, f"{proxy}/oauth/v1/generate",
                  json={"access_token": "proxy-tok", "expires_in": "3599"})
    responses.add(responses.POST, f"{proxy}/mpesa/stkpush/v1/processrequest", json={
        "MerchantRequestID": "1", "CheckoutRequestID": CHECKOUT, "ResponseCode": "0",
        "ResponseDescription": "Success. Request accepted for processing"})
    oauth()
    accepted()
    PROVIDER.initiate(pay(), {**CONFIG, "api_base": proxy + "/"})
    PROVIDER.initiate(pay(), CONFIG)  # same consumer key, the sandbox: a token of its own
    assert [(c.request.url.split("?")[0], c.request.headers.get("Authorization"))
            for c in responses.calls if c.request.method == "POST"] == [
        (f"{proxy}/mpesa/stkpush/v1/processrequest", "Bearer proxy-tok"),
        (PUSH, "Bearer tok0")]


@pytest.mark.parametrize(("url", "accepted_as"), [
    ("https://daraja.example.com", "https://daraja.example.com"),
    ("https://daraja.example.com/prefix/", "https://daraja.example.com/prefix"),
    ("http://127.0.0.1:8089", "http://127.0.0.1:8089"),
    ("http://localhost:8089/", "http://localhost:8089"),
    ("http://[::1]:8089", "http://[::1]:8089"),
    ("http://daraja.example.com", None),
    ("http://192.168.1.20:8089", None),
    ("http://127.0.0.1.example.com", None),
    ("http://localhost.example.com", None),
    ("https://ck:cs@daraja.example.com", None),
    ("https://daraja.example.com/#top", None),
    ("http://127.0.0.1:port", None),
    ("127.0.0.1:8089", None),
])
def test_an_api_base_url_must_be_https_or_loopback(url, accepted_as):
    from backoffice.plugin_host.config import api_base_url

    errors = validate_config({**CONFIG, "api_base": url})
    if accepted_as:
        assert errors == {} and api_base_url(url) == accepted_as
    else:
        assert set(errors) == {"api_base"}
        # It names the address, never a login, a query or a fragment in it.
        parts = urlsplit(url)
        named = (f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
                 if parts.hostname else url)
        assert named in errors["api_base"]
        assert "cs@" not in errors["api_base"] and "#top" not in errors["api_base"]


@responses.activate
def test_a_refused_api_base_url_is_a_config_error_before_daraja_is_called():
    with pytest.raises(PluginConfigError, match="must use https"):
        PROVIDER.initiate(pay(), {**CONFIG, "api_base": "http://daraja.example.com"})
    with pytest.raises(PluginConfigError, match="neither sandbox nor production"):
        PROVIDER.query_status(CHECKOUT, {**CONFIG, "environment": "live"})
    assert len(responses.calls) == 0
