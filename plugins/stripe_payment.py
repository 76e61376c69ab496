"""Stripe: cards and the other methods of a Stripe account, on Stripe's hosted Checkout page.

``initiate`` creates a Checkout Session and sends the customer to its URL; what happened comes
back as signed webhooks (so ``confirm_webhooks`` is False) and can be asked with
``query_status``. Refunds are made through Stripe's Refunds API.

``mode`` (test or live) must agree with the secret key's prefix (``sk_test_``/``rk_test_``,
``sk_live_``/``rk_live_``); ``api_base`` sends the API calls elsewhere than api.stripe.com (a
proxy, or a local fake of Stripe's API in tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Literal

import stripe

from backoffice.hookspecs import hookimpl
from backoffice.money import currency_exponent, quantize, to_minor_units
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
label = "Stripe (cards and more, on Stripe Checkout)"

DEFAULT_API_BASE = "https://api.stripe.com"
# Stripe's documented key prefixes: secret (sk_) and restricted (rk_) keys, per mode.
KEY_MODES = {"sk_test_": "test", "rk_test_": "test", "sk_live_": "live", "rk_live_": "live"}

config_fields = [
    ConfigField(
        "secret_key", "Secret key", kind="secret", required=True,
        help_text="sk_live_... (or sk_test_... to test), or a restricted key that may write "
                  "Checkout Sessions and Refunds. Dashboard > Developers > API keys.",
    ),
    ConfigField(
        "webhook_secret", "Webhook signing secret", kind="secret", required=True,
        help_text="whsec_..., shown on the webhook endpoint's page in the Stripe Dashboard.",
    ),
    ConfigField(
        "mode", "Mode", kind="choice", default="test",
        choices=(("test", "Test (sk_test_ keys, no real money)"),
                 ("live", "Live (sk_live_ keys, real payments)")),
        help_text="Must match the secret key: a test key in test mode, a live key in live mode.",
    ),
    ConfigField(
        "payment_method_types", "Payment methods",
        help_text="Comma-separated Stripe payment method types (e.g. card, link). Leave blank "
                  "to offer the methods switched on in the Stripe Dashboard.",
    ),
    ConfigField(
        "session_minutes", "Minutes to pay", kind="int", default=60,
        help_text="How long the Stripe payment page stays open: 30 minutes to 24 hours.",
    ),
    ConfigField(
        "api_base", "API base URL", kind="url",
        help_text=f"Leave blank for Stripe itself ({DEFAULT_API_BASE}). Another address (a "
                  "proxy, a local fake for tests) must be https; plain http only on 127.0.0.1 "
                  "or localhost.",
    ),
]


def _key_problem(key: str, mode: str) -> tuple[str, str] | None:
    """``(field, message)`` when the secret key is not a secret key of ``mode``."""
    key_mode = next((m for prefix, m in KEY_MODES.items() if key.startswith(prefix)), None)
    if key.startswith("pk_"):
        return "secret_key", ("This is a publishable key (pk_...): use the secret key (sk_...) "
                              "or a restricted key (rk_...).")
    if key_mode is None:
        return "secret_key", ("Not a Stripe secret key: it starts with sk_test_, sk_live_, "
                              "rk_test_ or rk_live_.")
    if key_mode != mode:
        return "mode", (f"The secret key is a {key_mode} key ({key[:8]}...) but the mode is "
                        f"{mode}: use a {mode} key, or set the mode to {key_mode}.")
    return None


def validate_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Problems across settings, as ``{field: message}``: a key of the other mode, a key that
    is not a secret key, an API base URL that is not https."""
    errors: dict[str, str] = {}
    key = str(values.get("secret_key") or "")
    problem = _key_problem(key, values.get("mode") or "test") if key else None
    if problem:
        errors[problem[0]] = problem[1]
    errors.update(api_base_errors(values))
    return errors


def api_base(config: Mapping[str, Any]) -> str:
    """Where Stripe's API is, once the settings are checked (``PluginConfigError`` if not)."""
    return configured_api_base("stripe", config, validate=validate_config,
                               default=DEFAULT_API_BASE)


# Seconds: connecting, then waiting for Stripe's answer. One quick retry on a network blip or a
# 5xx is safe (every POST carries an idempotency key); anything longer is the platform's retry.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30
NETWORK_RETRIES = 1

# Stripe's limits on a Checkout Session: its page is open 30 min to 24 h; at most 100 lines.
MIN_SESSION_SECONDS = 30 * 60
MAX_SESSION_SECONDS = 24 * 60 * 60
# expires_at is rounded down to this step, so a start retried with the same idempotency key a
# moment later sends the same parameters (Stripe refuses a key reused with different ones).
EXPIRY_STEP = 5 * 60
MAX_LINE_ITEMS = 100

# Where Stripe's minor unit is not the ISO one money.py uses: ISK is still two-decimal in
# Stripe's API, MGA zero-decimal, and the three-decimal dinars are sent in thousandths.
_STRIPE_EXPONENTS = {"ISK": 2, "MGA": 0, "BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3}

_REFUND_STATUSES: dict[str, Literal["succeeded", "pending", "failed"]] = {
    "succeeded": "succeeded", "pending": "pending", "requires_action": "pending",
    "failed": "failed", "canceled": "failed",
}
_PAID = {"paid", "no_payment_required"}


def _stripe_exponent(currency: str) -> int:
    return _STRIPE_EXPONENTS.get(currency.upper(), currency_exponent(currency))


def to_stripe_amount(amount: Decimal, currency: str) -> int:
    """``amount`` as the integer Stripe's API takes for ``currency``."""
    units = to_minor_units(amount, currency)
    shift = _stripe_exponent(currency) - currency_exponent(currency)
    if shift >= 0:
        return units * 10**shift
    whole, rest = divmod(units, 10**-shift)
    if rest:
        raise PaymentProviderError(
            f"Stripe takes {currency.upper()} in whole units only, not {amount}.",
            "amount_not_supported",
        )
    return whole


def from_stripe_amount(value: int, currency: str) -> Decimal:
    """An integer amount from Stripe as a ``Decimal`` in ``currency``."""
    return quantize(Decimal(value).scaleb(-_stripe_exponent(currency)), currency)


@contextmanager
def _stripe(config: Mapping[str, Any]) -> Iterator[stripe.StripeClient]:
    """A client for one call: Stripe's refusals become ``PaymentProviderError``; network
    errors, rate limits, conflicts and 5xx propagate (they are temporary: the call is retried).
    """
    key = config.get("secret_key")
    if not key:
        raise PaymentProviderError("Stripe is not set up: the secret key is missing.",
                                   "not_configured")
    base = api_base(config)
    http = stripe.RequestsClient(timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    try:
        yield stripe.StripeClient(key, http_client=http, max_network_retries=NETWORK_RETRIES,
                                  base_addresses={"api": base})
    except stripe.StripeError as exc:
        status = exc.http_status
        if status is None or status in (409, 429) or status >= 500:
            raise
        error_type = exc.error.type if exc.error is not None else None
        raise PaymentProviderError(
            exc.user_message or f"Stripe refused the request (HTTP {status}).",
            exc.code or error_type or "provider_refused",
        ) from exc
    finally:
        http.close()


def _id(value: Any) -> str:
    """The id of a field Stripe sends either as an id or, when expanded, as the object."""
    if isinstance(value, Mapping):
        return str(value.get("id") or "")
    return str(value or "")


def _stored(value: Any) -> Any:
    """A Stripe payload fit to store: without client secrets (a PaymentIntent's lets whoever
    holds it confirm the payment, and Stripe asks that it is never stored or logged)."""
    if isinstance(value, Mapping):
        return {key: _stored(item) for key, item in value.items() if key != "client_secret"}
    if isinstance(value, list):
        return [_stored(item) for item in value]
    return value


def _payment_id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _amount(value: Any, currency: str) -> Decimal | None:
    return from_stripe_amount(value, currency) if value is not None and currency else None


def _line_item(name: str, unit_amount: int, quantity: int, currency: str) -> dict[str, Any]:
    return {
        "price_data": {"currency": currency.lower(), "unit_amount": unit_amount,
                       "product_data": {"name": name}},
        "quantity": quantity,
    }


def line_items(request: PaymentRequest) -> list[dict[str, Any]]:
    """The lines the customer sees on Stripe's page; what they add up to is exactly
    ``request.amount``, or there is one line for the whole order instead."""
    currency = request.currency
    total = to_stripe_amount(request.amount, currency)
    items: list[dict[str, Any]] = []
    charged = 0
    for line in request.lines:
        units = to_stripe_amount(line.amount, currency)
        if units < 0 or not line.name.strip():
            items = []
            break
        if line.quantity >= 1 and units % line.quantity == 0:
            items.append(_line_item(line.name, units // line.quantity, line.quantity, currency))
        elif line.quantity > 1:
            # A line total that does not split into equal units (a coupon share): one line.
            items.append(_line_item(f"{line.quantity} × {line.name}", units, 1, currency))
        else:
            items.append(_line_item(line.name, units, 1, currency))
        charged += units
    if not items or charged != total or len(items) > MAX_LINE_ITEMS:
        return [_line_item(f"Order {request.order_number}", total, 1, currency)]
    return items


def expires_at(config: Mapping[str, Any], now: float | None = None,
               pay_by: float | None = None) -> int:
    """When the Stripe page closes: ``session_minutes`` from now, or earlier when the order
    stops waiting (``pay_by``), kept inside Stripe's window (with room for clock drift) and
    rounded down to ``EXPIRY_STEP``."""
    now = time.time() if now is None else now
    minutes = config.get("session_minutes")
    seconds = (60 if minutes is None else int(minutes)) * 60
    if pay_by is not None:
        seconds = min(seconds, int(pay_by - now))
    seconds = min(max(seconds, MIN_SESSION_SECONDS + EXPIRY_STEP), MAX_SESSION_SECONDS - 60)
    deadline = int(now) + seconds
    return deadline - deadline % EXPIRY_STEP


def _payment_method_types(config: Mapping[str, Any]) -> list[str]:
    raw = config.get("payment_method_types") or ""
    return [part.strip() for part in str(raw).split(",") if part.strip()]


def _session(client: stripe.StripeClient, reference: str) -> dict[str, Any]:
    # An empty id would ask for the list of all sessions instead of one.
    if not reference:
        raise PaymentProviderError("There is no Stripe session to ask about.", "no_reference")
    return client.v1.checkout.sessions.retrieve(reference).to_dict()


class StripeProvider:
    code = "stripe"
    name = "Stripe"
    supports_refunds = True
    # Stripe signs its webhooks: their word is believed without asking again.
    confirm_webhooks = False

    def initiate(self, request: PaymentRequest, config: Mapping[str, Any]) -> PaymentInitiation:
        metadata = {"payment_id": str(request.payment_id), "order_number": request.order_number}
        intent_data: dict[str, Any] = {"metadata": metadata}
        if request.description:
            intent_data["description"] = request.description
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": line_items(request),
            "success_url": request.return_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": str(request.payment_id),
            "metadata": metadata,
            "payment_intent_data": intent_data,
            "expires_at": expires_at(
                config, pay_by=request.pay_by.timestamp() if request.pay_by else None),
        }
        if request.customer_email:
            params["customer_email"] = request.customer_email
        methods = _payment_method_types(config)
        if methods:
            params["payment_method_types"] = methods
        with _stripe(config) as client:
            session = client.v1.checkout.sessions.create(
                params=params,
                options={"idempotency_key": request.idempotency_key},
            )
        return PaymentInitiation(
            provider_reference=session.id,
            status="requires_action",
            next_action=NextAction(kind="redirect", url=session.url or ""),
            raw=_stored(session.to_dict()),
        )

    def verify_webhook(
        self, request: WebhookRequest, config: Mapping[str, Any]
    ) -> Sequence[ProviderEvent]:
        header = next(
            (value for key, value in request.headers.items()
             if key.lower() == "stripe-signature"), "",
        )
        if not header:
            raise WebhookVerificationError("no Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(
                request.body, header, config.get("webhook_secret") or ""
            ).to_dict()
        except stripe.SignatureVerificationError as exc:
            raise WebhookVerificationError(f"bad Stripe signature: {exc.user_message}") from exc
        except (ValueError, AttributeError) as exc:  # not UTF-8, not JSON, not a JSON object
            raise WebhookVerificationError("the body is not a Stripe event") from exc
        data = event.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        if not isinstance(obj, Mapping) or not event.get("id"):
            raise WebhookVerificationError("the body is not a Stripe event")
        return _events(_stored(event), obj)

    def query_status(
        self, provider_reference: str, config: Mapping[str, Any]
    ) -> ProviderPaymentStatus:
        with _stripe(config) as client:
            session = _session(client, provider_reference)
        currency = (session.get("currency") or "").upper()
        state, paid = session.get("status"), session.get("payment_status")
        status: PaymentStatus
        message = ""
        if state == "complete" and paid in _PAID:
            status = "succeeded"
        elif state == "complete":
            status, message = "pending", "Paid with a method that takes time to confirm."
        elif state == "expired":
            status, message = "cancelled", "The Stripe payment page expired."
        else:  # open: the customer has not paid yet
            status = "requires_action"
        return ProviderPaymentStatus(
            status=status,
            amount=_amount(session.get("amount_total"), currency) if status == "succeeded"
            else None,
            currency=currency,
            raw=_stored(session),
            provider_payment_id=_id(session.get("payment_intent")),
            message=message,
        )

    def refund(self, request: RefundRequest, config: Mapping[str, Any]) -> RefundResult:
        params: dict[str, Any] = {"amount": to_stripe_amount(request.amount, request.currency)}
        if request.reason:
            params["metadata"] = {"reason": request.reason[:500]}
        with _stripe(config) as client:
            intent = request.provider_payment_id
            if not intent:
                intent = _id(_session(client, request.provider_reference).get("payment_intent"))
            if not intent:
                raise PaymentProviderError("This Stripe session was never paid: there is "
                                           "nothing to refund.", "not_paid")
            params["payment_intent"] = intent
            refund = client.v1.refunds.create(
                params=params,
                options={"idempotency_key": request.idempotency_key},
            )
        status = _REFUND_STATUSES.get(refund.status or "", "pending")
        return RefundResult(
            status=status,
            provider_refund_id=refund.id,
            raw=_stored(refund.to_dict()),
        )


def _session_event(event: Mapping[str, Any], session: Mapping[str, Any],
                   status: PaymentStatus, message: str = "") -> ProviderEvent:
    # Found by the session id alone: on a Stripe account shared with another back office (or a
    # developer's), a session of theirs must not match one of our payments by its number.
    currency = (session.get("currency") or "").upper()
    return ProviderEvent(
        event_id=event["id"],
        provider_reference=str(session.get("id") or ""),
        status=status,
        amount=_amount(session.get("amount_total"), currency),
        currency=currency,
        raw=event,
        provider_payment_id=_id(session.get("payment_intent")),
        message=message,
    )


def _events(event: Mapping[str, Any], obj: Mapping[str, Any]) -> list[ProviderEvent]:
    """What one Stripe event says about our payments; nothing for the types we don't use."""
    kind = event.get("type")
    if kind == "checkout.session.completed":
        if obj.get("payment_status") in _PAID:
            return [_session_event(event, obj, "succeeded")]
        # A delayed method (a bank debit): the money is confirmed by a later event.
        return [_session_event(event, obj, "pending")]
    if kind == "checkout.session.async_payment_succeeded":
        return [_session_event(event, obj, "succeeded")]
    if kind == "checkout.session.async_payment_failed":
        return [_session_event(event, obj, "failed", "The delayed payment did not go through.")]
    if kind == "checkout.session.expired":
        return [_session_event(event, obj, "cancelled", "The Stripe payment page expired.")]
    if kind == "payment_intent.payment_failed":
        # The Checkout page stays open after a declined attempt: the customer may try again.
        # Our payment learns its PaymentIntent only once paid, so it is found by our id.
        error = obj.get("last_payment_error") or {}
        return [ProviderEvent(
            event_id=event["id"], provider_reference="", status="requires_action", raw=event,
            provider_payment_id=str(obj.get("id") or ""),
            payment_id=_payment_id((obj.get("metadata") or {}).get("payment_id")),
            message=str(error.get("message") or "The payment was declined."),
        )]
    if kind == "charge.refunded":
        currency = (obj.get("currency") or "").upper()
        refunds = obj.get("refunds")
        refund_ids = [
            str(refund["id"]) for refund in (refunds.get("data") or [])
            if refund.get("status") == "succeeded" and refund.get("id")
        ] if isinstance(refunds, Mapping) else []
        return [ProviderEvent(
            event_id=event["id"], provider_reference="",
            status="refunded" if obj.get("refunded") else "partially_refunded",
            amount=_amount(obj.get("amount"), currency), currency=currency, raw=event,
            provider_payment_id=_id(obj.get("payment_intent")),
            amount_refunded=_amount(obj.get("amount_refunded"), currency),
            refund_ids=refund_ids,
        )]
    return []


@hookimpl
def register_payment_providers() -> list[StripeProvider]:
    return [StripeProvider()]
