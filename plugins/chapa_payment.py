"""Chapa (Ethiopia): the hosted checkout (telebirr, CBE Birr, cards...), in ETB or USD.

The customer is sent to Chapa's checkout page. Chapa's webhook is signed (``x-chapa-signature``:
hex HMAC-SHA256 of the raw body with the webhook secret), but Chapa's own guidance is that only
its verify endpoint proves a payment, so the platform asks it before believing a webhook
(``confirm_webhooks``); the same query settles payments whose webhook never comes.
``callback_url`` is not sent: Chapa calls it with an unsigned GET.

``mode`` (test or live) must agree with the secret key's prefix (``CHASECK_TEST-`` or
``CHASECK-``); Chapa has one host for both, and ``api_base`` replaces it (a proxy, or a local
fake of Chapa's API in tests).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from django.conf import settings

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
label = "Chapa (Ethiopia)"

DEFAULT_API_BASE = "https://api.chapa.co"
TIMEOUT = (5, 30)
CURRENCIES = {"ETB", "USD"}
TITLE_MAX = 16  # Chapa refuses a longer customization title

config_fields = [
    ConfigField("mode", "Mode", kind="choice", default="test",
                choices=(("test", "Test (CHASECK_TEST- keys, no real money)"),
                         ("live", "Live (CHASECK- keys, real payments)")),
                help_text="Must match the secret key: a test key in test mode, a live key in "
                          "live mode."),
    ConfigField("secret_key", "Secret key", kind="secret", required=True,
                help_text="CHASECK-... (CHASECK_TEST-... in test mode)."),
    ConfigField("webhook_secret", "Webhook secret", kind="secret", required=True,
                help_text="The secret hash set in Chapa's dashboard under Webhooks."),
    ConfigField("title", "Checkout title", default="",
                help_text="Shown on Chapa's page; the store's name if empty (16 characters)."),
    ConfigField("api_base", "API base URL", kind="url",
                help_text=f"Leave blank for Chapa itself ({DEFAULT_API_BASE}). Another address "
                          "(a proxy, a local fake for tests) must be https; plain http only on "
                          "127.0.0.1 or localhost."),
]


def _key_mode(key: str) -> str | None:
    """The mode of a Chapa secret key by its documented prefix; None if not a secret key."""
    if key.startswith("CHASECK_TEST-"):
        return "test"
    if key.startswith("CHASECK-"):
        return "live"
    return None


def _key_problem(key: str, mode: str) -> tuple[str, str] | None:
    """``(field, message)`` when the secret key is not a secret key of ``mode``."""
    key_mode = _key_mode(key)
    if key.startswith("CHAPUBK"):
        return "secret_key", ("This is the public key (CHAPUBK...): use the secret key "
                              "(CHASECK...).")
    if key_mode is None:
        return "secret_key", ("Not a Chapa secret key: it starts with CHASECK_TEST- (test) or "
                              "CHASECK- (live).")
    if key_mode != mode:
        prefix = "CHASECK_TEST-" if key_mode == "test" else "CHASECK-"
        return "mode", (f"The secret key is a {key_mode} key ({prefix}...) but the mode is "
                        f"{mode}: use a {mode} key, or set the mode to {key_mode}.")
    return None


def validate_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Problems across settings, as ``{field: message}``: a key of the other mode, a public
    key, an API base URL that is not https."""
    errors: dict[str, str] = {}
    key = str(values.get("secret_key") or "")
    problem = _key_problem(key, values.get("mode") or "test") if key else None
    if problem:
        errors[problem[0]] = problem[1]
    errors.update(api_base_errors(values))
    return errors


def _api(config: Mapping[str, Any]) -> str:
    """Chapa's ``/v1`` address for these settings (``PluginConfigError`` if they are wrong)."""
    base = configured_api_base("chapa", config, validate=validate_config,
                               default=DEFAULT_API_BASE)
    return f"{base}/v1"

STATUSES: dict[str, PaymentStatus] = {
    "success": "succeeded", "successful": "succeeded", "pending": "pending",
    "failed": "failed", "failure": "failed", "cancelled": "cancelled", "canceled": "cancelled",
    "refunded": "refunded", "reversed": "refunded",
}


def tx_ref(request: PaymentRequest) -> str:
    """Ours, unique per payment and the same each time it is started again."""
    digest = hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:12]
    return f"bo-{request.payment_id}-{digest}"


def _headers(config: Mapping[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {config['secret_key']}"}


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.text, parse_float=Decimal)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(body: Mapping[str, Any]) -> str:
    """Chapa's ``message``: a string, or field errors ``{"email": ["..."]}``."""
    message = body.get("message")
    if isinstance(message, dict):
        return "; ".join(
            f"{field}: {' '.join(map(str, errors)) if isinstance(errors, list) else errors}"
            for field, errors in message.items())
    return str(message or "no reason given")


def _refused(response: requests.Response) -> None:
    """A 4xx is Chapa saying no (the customer or clerk sees why); a 5xx is temporary."""
    if 400 <= response.status_code < 500:
        raise PaymentProviderError(f"Chapa refused: {_message(_json(response))}",
                                   "provider_refused")
    response.raise_for_status()


def _amount(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _local_phone(raw: str) -> str:
    """Chapa takes Ethiopian numbers as ``09XXXXXXXX`` / ``07XXXXXXXX``; others are left out
    (the email is enough)."""
    digits = re.sub(r"\D", "", raw or "")
    if digits.startswith("251") and len(digits) == 12:
        digits = "0" + digits[3:]
    elif len(digits) == 9 and digits[0] in "79":
        digits = "0" + digits
    return digits if re.fullmatch(r"0[79]\d{8}", digits) else ""


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), "")


class ChapaProvider:
    code = "chapa"
    name = "Chapa"
    supports_refunds = True
    confirm_webhooks = True
    unpaid_orders_expire = True

    def initiate(self, request: PaymentRequest, config: Mapping[str, Any]) -> PaymentInitiation:
        currency = request.currency.upper()
        if currency not in CURRENCIES:
            raise PaymentProviderError(f"Chapa takes ETB or USD, not {currency}.",
                                       "currency_not_supported")
        reference = tx_ref(request)
        payload: dict[str, Any] = {
            "amount": f"{request.amount:.2f}", "currency": currency, "tx_ref": reference,
            "email": request.customer_email,
            "first_name": request.metadata.get("first_name", ""),
            "last_name": request.metadata.get("last_name", ""),
            "return_url": request.return_url,
            "customization": {
                "title": re.sub(r"[^\w .-]", "", config.get("title") or settings.STORE_NAME)
                [:TITLE_MAX],
                "description": re.sub(r"[^\w .-]", "", request.description)[:50],
            },
        }
        phone = _local_phone(request.customer_phone)
        if phone:
            payload["phone_number"] = phone
        response = requests.post(f"{_api(config)}/transaction/initialize", json=payload,
                                 headers=_headers(config), timeout=TIMEOUT)
        _refused(response)
        body = _json(response)
        url = (body.get("data") or {}).get("checkout_url")
        if body.get("status") != "success" or not url:
            raise PaymentProviderError(f"Chapa refused: {_message(body)}", "provider_refused")
        return PaymentInitiation(provider_reference=reference, status="requires_action",
                                 next_action=NextAction(kind="redirect", url=url), raw=body)

    def verify_webhook(
        self, request: WebhookRequest, config: Mapping[str, Any]
    ) -> Sequence[ProviderEvent]:
        expected = hmac.new(str(config["webhook_secret"]).encode(), request.body,
                            hashlib.sha256).hexdigest()
        given = _header(request.headers, "x-chapa-signature")
        if not given or not hmac.compare_digest(given.lower(), expected):
            raise WebhookVerificationError("the x-chapa-signature does not match the body")
        try:
            body = json.loads(request.body, parse_float=Decimal)
            reference = str(body["tx_ref"])
        except (ValueError, KeyError, TypeError):
            raise WebhookVerificationError("not a Chapa transaction webhook") from None
        status = STATUSES.get(str(body.get("status", "")).lower())
        if status is None:
            return []  # payouts and other events: nothing for a payment
        event = str(body.get("event") or body.get("status"))
        return [ProviderEvent(
            event_id=f"{reference}:{body.get('reference') or ''}:{event}",
            provider_reference=reference, status=status, amount=_amount(body.get("amount")),
            currency=str(body.get("currency") or "").upper(),
            provider_payment_id=str(body.get("reference") or ""), raw=body,
        )]

    def query_status(
        self, provider_reference: str, config: Mapping[str, Any]
    ) -> ProviderPaymentStatus:
        response = requests.get(f"{_api(config)}/transaction/verify/{provider_reference}",
                                headers=_headers(config), timeout=TIMEOUT)
        body = _json(response)
        if response.status_code in (400, 404):
            # Chapa has no such transaction: the customer never reached the payment page.
            return ProviderPaymentStatus(status="pending", raw=body,
                                         message=f"Chapa: {_message(body)}")
        response.raise_for_status()
        data = body.get("data") or {}
        status = STATUSES.get(str(data.get("status", "")).lower(), "pending")
        return ProviderPaymentStatus(
            status=status, amount=_amount(data.get("amount")),
            currency=str(data.get("currency") or "").upper(),
            provider_payment_id=str(data.get("reference") or ""), raw=body,
        )

    def refund(self, request: RefundRequest, config: Mapping[str, Any]) -> RefundResult:
        # Chapa's docs name the transaction by the reference Chapa gave it; ours works too.
        target = request.provider_payment_id or request.provider_reference
        response = requests.post(
            f"{_api(config)}/refund/{target}",
            data={"amount": f"{request.amount:.2f}", "reason": request.reason or "refund",
                  "reference": request.idempotency_key[:50]},
            headers=_headers(config), timeout=TIMEOUT,
        )
        _refused(response)
        body = _json(response)
        data = body.get("data") or {}
        state = str(data.get("status") or body.get("status") or "").lower()
        status = ("succeeded" if state in {"success", "refunded", "completed"}
                  else "failed" if state in {"failed", "failure"} else "pending")
        return RefundResult(status=status, raw=body, provider_refund_id=str(
            data.get("refund_reference") or data.get("reference") or ""))


@hookimpl
def register_payment_providers() -> list[ChapaProvider]:
    return [ChapaProvider()]
