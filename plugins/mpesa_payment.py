"""M-Pesa through Safaricom's Daraja API: Lipa na M-Pesa Online (STK push).

The customer gets a prompt on their phone and approves it with their M-Pesa PIN. Daraja then
posts a callback to the URL we gave, which carries a secret token (its callbacks are not signed).
A callback is only a signal: the platform asks the STK push query before believing it
(``confirm_webhooks``), and the same query settles payments whose callback never comes.

Amounts are whole shillings: Daraja takes an integer ``Amount``, so an order total with cents
is refused rather than rounded. Refunds are M-Pesa reversals, a separate Daraja product with its
own initiator credentials: staff reverse in the M-Pesa portal and record the refund by hand.

``environment`` picks Daraja's sandbox or production host; ``api_base`` replaces it (a proxy,
or a local fake of Daraja in tests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import requests
from django.core.cache import cache

from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField, api_base_errors, configured_api_base
from backoffice.plugin_host.errors import (
    PaymentProviderError,
    WebhookVerificationError,
)
from backoffice.plugin_host.protocols import (
    NextAction,
    PaymentInitiation,
    PaymentRequest,
    PaymentStatus,
    ProviderEvent,
    ProviderPaymentStatus,
    RefundRequest,
    RefundResult,
    WebhookRequest,
)

hookspec_version = ">=1.0,<2"
label = "M-Pesa (Safaricom Daraja STK push)"

BASE_URLS = {
    "sandbox": "https://sandbox.safaricom.co.ke",
    "production": "https://api.safaricom.co.ke",
}
TIMEOUT = (5, 30)  # connect, read: Daraja is slow to answer an STK push at busy times
NAIROBI = ZoneInfo("Africa/Nairobi")

config_fields = [
    ConfigField("environment", "Environment", kind="choice", default="sandbox",
                choices=(("sandbox", "Sandbox (testing)"), ("production", "Production")),
                help_text="Sandbox: https://sandbox.safaricom.co.ke with your sandbox app's "
                          "key; production: https://api.safaricom.co.ke."),
    ConfigField("api_base", "API base URL", kind="url",
                help_text="Leave blank for the environment's Daraja host. Another address (a "
                          "proxy, a local fake for tests) must be https; plain http only on "
                          "127.0.0.1 or localhost."),
    ConfigField("consumer_key", "Consumer key", kind="secret", required=True),
    ConfigField("consumer_secret", "Consumer secret", kind="secret", required=True),
    ConfigField("shortcode", "Business short code (paybill or store number)", required=True),
    ConfigField("passkey", "Lipa na M-Pesa Online passkey", kind="secret", required=True),
    ConfigField("callback_token", "Callback token", kind="secret", required=True,
                help_text="A long random string: Daraja's callbacks are not signed, so only a "
                          "callback carrying this token in its URL is listened to."),
    ConfigField("transaction_type", "Transaction type", kind="choice",
                default="CustomerPayBillOnline",
                choices=(("CustomerPayBillOnline", "Paybill"),
                         ("CustomerBuyGoodsOnline", "Buy goods (till)"))),
    ConfigField("till_number", "Till number (buy goods)",
                help_text="Where buy-goods payments go (PartyB); the short code if empty."),
    ConfigField("account_reference", "Account reference", default="{order_number}",
                help_text="Shown to the customer in the PIN prompt; {order_number} is filled in. "
                          "Letters, digits and spaces; cut to 12 characters."),
    ConfigField("transaction_desc", "Transaction description", default="Order {order_number}",
                help_text="{order_number} is filled in. Letters, digits and spaces; cut to 13 "
                          "characters."),
]
# Daraja's documented limits; AccountReference is alphanumeric, and other characters (&, #...)
# are known to make it refuse the push.
ACCOUNT_REFERENCE_MAX = 12
TRANSACTION_DESC_MAX = 13
_UNSAFE = re.compile(r"[^A-Za-z0-9 \-]")
# The STK query's answer while the customer has not answered the prompt yet.
BEING_PROCESSED = "500.001.1001"

# Daraja's ResultCodes, as a customer or a clerk should read them.
RESULTS: dict[str, tuple[PaymentStatus, str]] = {
    "0": ("succeeded", ""),
    "1": ("failed", "The M-Pesa balance is too low for this payment."),
    "1001": ("failed", "Another M-Pesa transaction is in progress on this phone; try again."),
    "1019": ("failed", "The payment expired before it was approved."),
    "1025": ("failed", "M-Pesa could not send the prompt; try again."),
    "1032": ("cancelled", "The payment was cancelled on the phone."),
    "1036": ("failed", "The phone did not answer the prompt in time."),
    "1037": ("failed", "The phone could not be reached; check it is on and try again."),
    "2001": ("failed", "The M-Pesa PIN was wrong."),
    # The query's answer while the transaction is still being worked on.
    "4999": ("pending", "The payment is still being processed."),
}
_PHONE = re.compile(r"^(?:\+?254|0)?([17]\d{8})$")


def normalise_phone(raw: str) -> str:
    """``0712 345 678``, ``+254712345678``, ``712345678`` → ``254712345678``."""
    digits = re.sub(r"[\s\-().]", "", raw or "")
    match = _PHONE.match(digits)
    if not match:
        raise PaymentProviderError(
            f"{raw!r} is not a Kenyan mobile number (e.g. 0712 345 678).", "invalid_phone")
    return "254" + match.group(1)


def validate_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Problems across settings, as ``{field: message}``."""
    errors: dict[str, str] = {}
    environment = values.get("environment") or "sandbox"
    if environment not in BASE_URLS:
        errors["environment"] = f"{environment!r} is neither sandbox nor production."
    errors.update(api_base_errors(values))
    return errors


def _base(config: Mapping[str, Any]) -> str:
    """Daraja's address for these settings (``PluginConfigError`` if they are wrong)."""
    return configured_api_base("mpesa", config, validate=validate_config,
                               default=BASE_URLS.get(config.get("environment") or "sandbox", ""))


def _token_key(config: Mapping[str, Any]) -> str:
    # Per host and key: a token of the sandbox (or of a fake) is never sent to another host.
    digest = hashlib.sha256(f"{_base(config)} {config['consumer_key']}".encode()).hexdigest()
    return f"mpesa-token:{digest[:24]}"


def _token(config: Mapping[str, Any], *, fresh: bool = False) -> str:
    """An OAuth access token, cached until a minute before Daraja says it expires."""
    key = _token_key(config)
    if not fresh:
        cached = cache.get(key)
        if cached:
            return cached
    response = requests.get(
        f"{_base(config)}/oauth/v1/generate", params={"grant_type": "client_credentials"},
        auth=(config["consumer_key"], config["consumer_secret"]), timeout=TIMEOUT,
    )
    if response.status_code in (400, 401, 403):
        raise PaymentProviderError("Daraja refused the consumer key and secret.",
                                   "invalid_credentials")
    response.raise_for_status()
    body = response.json()
    lifetime = int(body.get("expires_in") or 3599)
    cache.set(key, body["access_token"], max(lifetime - 60, 1))
    return body["access_token"]


def _password(config: Mapping[str, Any], timestamp: str) -> str:
    raw = f"{config['shortcode']}{config['passkey']}{timestamp}"
    return base64.b64encode(raw.encode()).decode()


def _timestamp() -> str:
    return datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S")


def _post(config: Mapping[str, Any], path: str, payload: dict[str, Any]) -> requests.Response:
    """POST with a bearer token; a 401 (token revoked early) fetches a new one once."""
    url = f"{_base(config)}{path}"
    response = requests.post(url, json=payload, timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {_token(config)}"})
    if response.status_code == 401:
        response = requests.post(url, json=payload, timeout=TIMEOUT, headers={
            "Authorization": f"Bearer {_token(config, fresh=True)}"})
    return response


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.text, parse_float=Decimal)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refusal(response: requests.Response) -> PaymentProviderError | None:
    """Daraja's 4xx error body as a refusal; 5xx and other failures are temporary."""
    if 400 <= response.status_code < 500:
        body = _json(response)
        message = body.get("errorMessage") or body.get("ResponseDescription") or response.reason
        code = f" ({body['errorCode']})" if body.get("errorCode") else ""
        return PaymentProviderError(f"M-Pesa refused: {message}{code}", "provider_refused")
    return None


def _with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "token"] + [("token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _result(code: Any, description: str = "") -> tuple[PaymentStatus, str]:
    status, message = RESULTS.get(str(code).strip(), ("failed", ""))
    return status, message or description or f"M-Pesa result {code}."


def _fill(template: str, order_number: str, limit: int) -> str:
    """A merchant's template with the order number in it, in the characters Daraja takes."""
    text = template.replace("{order_number}", order_number)
    return _UNSAFE.sub("", text).strip()[:limit].strip() or order_number[:limit]


def _payment_id(raw: Any) -> int | None:
    text = str(raw or "")
    return int(text) if text.isdigit() else None


def _whole_shillings(request: PaymentRequest) -> int:
    if request.currency.upper() != "KES":
        raise PaymentProviderError(f"M-Pesa takes Kenyan shillings (KES), not {request.currency}.",
                                   "currency_not_supported")
    if request.amount != request.amount.to_integral_value():
        raise PaymentProviderError(
            f"M-Pesa takes whole shillings; {request.amount} KES has cents.", "amount_not_whole")
    if request.amount < 1:
        raise PaymentProviderError(
            f"M-Pesa takes 1 KES at least, not {request.amount} KES.", "amount_not_whole")
    return int(request.amount)


class MpesaProvider:
    code = "mpesa"
    name = "M-Pesa"
    supports_refunds = False
    confirm_webhooks = True
    unpaid_orders_expire = True

    def customer_instructions(self, *, order_number: str, amount: Decimal, currency: str,
                              config: Mapping[str, Any]) -> str:
        return (f"Approve the M-Pesa prompt on your phone to pay {currency} {amount:,} for order "
                f"{order_number}. No prompt? Pay again from the order page.")

    def initiate(self, request: PaymentRequest, config: Mapping[str, Any]) -> PaymentInitiation:
        amount = _whole_shillings(request)
        phone = normalise_phone(request.customer_phone)
        if not request.callback_url.startswith("https://"):
            raise PaymentProviderError(
                "M-Pesa needs an https callback URL: set PUBLIC_URL to this back office's "
                "public https address.", "callback_not_https")
        timestamp = _timestamp()
        paybill = config.get("transaction_type") != "CustomerBuyGoodsOnline"
        payload = {
            "BusinessShortCode": config["shortcode"],
            "Password": _password(config, timestamp),
            "Timestamp": timestamp,
            "TransactionType": config.get("transaction_type") or "CustomerPayBillOnline",
            "Amount": amount,
            "PartyA": phone,
            "PartyB": config["shortcode"] if paybill else (config.get("till_number")
                                                          or config["shortcode"]),
            "PhoneNumber": phone,
            "CallBackURL": _with_token(request.callback_url, config["callback_token"]),
            "AccountReference": _fill(config.get("account_reference") or "{order_number}",
                                      request.order_number, ACCOUNT_REFERENCE_MAX),
            "TransactionDesc": _fill(config.get("transaction_desc") or "Order {order_number}",
                                     request.order_number, TRANSACTION_DESC_MAX),
        }
        response = _post(config, "/mpesa/stkpush/v1/processrequest", payload)
        refusal = _refusal(response)
        if refusal:
            raise refusal
        response.raise_for_status()
        body = _json(response)
        if str(body.get("ResponseCode")) != "0" or not body.get("CheckoutRequestID"):
            raise PaymentProviderError(
                f"M-Pesa refused: {body.get('ResponseDescription') or body}", "provider_refused")
        return PaymentInitiation(
            provider_reference=body["CheckoutRequestID"],
            status="requires_action",
            next_action=NextAction(
                kind="approve_on_phone",
                message=f"Check your phone ({phone}) and enter your M-Pesa PIN to pay KES "
                        f"{amount:,}.",
            ),
            raw=body,
        )

    def verify_webhook(
        self, request: WebhookRequest, config: Mapping[str, Any]
    ) -> Sequence[ProviderEvent]:
        token = str(request.query.get("token") or "")
        if not token or not hmac.compare_digest(token.encode(),
                                                str(config["callback_token"]).encode()):
            raise WebhookVerificationError("the callback does not carry our token")
        try:
            body = json.loads(request.body, parse_float=Decimal)
            callback = body["Body"]["stkCallback"]
            checkout_id = str(callback["CheckoutRequestID"])
            result_code = callback["ResultCode"]
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookVerificationError(f"not an STK push callback: {exc}") from None
        status, message = _result(result_code, str(callback.get("ResultDesc") or ""))
        metadata = callback.get("CallbackMetadata")
        listed = metadata.get("Item") if isinstance(metadata, dict) else None
        # An item may come without a Value (Balance does); failures have no metadata at all.
        items = {
            item.get("Name"): item.get("Value")
            for item in (listed if isinstance(listed, list) else [])
            if isinstance(item, dict)
        }
        amount = None
        if items.get("Amount") not in (None, ""):
            try:
                amount = Decimal(str(items["Amount"]))
            except InvalidOperation:
                raise WebhookVerificationError("the callback's amount is not a number") from None
        return [ProviderEvent(
            event_id=checkout_id, provider_reference=checkout_id, status=status,
            amount=amount, currency="KES" if amount is not None else "",
            provider_payment_id=str(items.get("MpesaReceiptNumber") or ""),
            # The platform's payment id, from the callback URL it gave (the token vouches for
            # it): a push whose answer was lost in a timeout still finds its payment.
            payment_id=_payment_id(request.query.get("payment")),
            message="" if status == "succeeded" else message, raw=body,
        )]

    def query_status(
        self, provider_reference: str, config: Mapping[str, Any]
    ) -> ProviderPaymentStatus:
        timestamp = _timestamp()
        response = _post(config, "/mpesa/stkpushquery/v1/query", {
            "BusinessShortCode": config["shortcode"],
            "Password": _password(config, timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": provider_reference,
        })
        body = _json(response)
        if (body.get("errorCode") == BEING_PROCESSED
                or "being processed" in str(body.get("errorMessage", "")).lower()):
            return ProviderPaymentStatus(status="pending", raw=body)
        refusal = _refusal(response)
        if refusal:
            raise refusal
        response.raise_for_status()
        if "ResultCode" not in body:
            return ProviderPaymentStatus(status="pending", raw=body)
        status, message = _result(body["ResultCode"], str(body.get("ResultDesc") or ""))
        return ProviderPaymentStatus(status=status, raw=body,
                                     message="" if status == "succeeded" else message)

    def refund(self, request: RefundRequest, config: Mapping[str, Any]) -> RefundResult:
        raise PaymentProviderError(
            "M-Pesa payments are refunded by a reversal in the M-Pesa org portal; do that, then "
            "record the refund as given back by hand.", "refunds_not_supported")


@hookimpl
def register_payment_providers() -> list[MpesaProvider]:
    return [MpesaProvider()]
