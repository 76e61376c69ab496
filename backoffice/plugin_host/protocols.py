"""What a plugin hands the platform: payment providers, notification channels, shipping methods.

Each is a plain object with a few attributes and methods (``typing.Protocol``: no base class to
inherit). The platform passes every call the plugin's resolved configuration (``config``), so a
provider object holds no secrets of its own. Amounts are ``Decimal`` in ``currency``; never float.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from backoffice.plugin_host.config import ConfigField

# --- Payments -----------------------------------------------------------------------------------

PaymentStatus = Literal[
    "pending", "requires_action", "succeeded", "failed", "cancelled", "refunded",
    "partially_refunded",
]


@dataclass(frozen=True)
class PaymentLine:
    """One line of what is paid for, as the customer sees it: ``amount`` is the line's total
    (its coupon share taken off); the lines of a request add up to its ``amount``."""

    name: str
    quantity: int
    amount: Decimal


@dataclass(frozen=True)
class PaymentRequest:
    """What a provider needs to start taking a payment.

    ``idempotency_key`` is the same every time this payment is started again (a retried job, a
    customer pressing twice): pass it to providers that take one. ``callback_url`` is where the
    provider's webhooks for this store go (``/api/v1/payments/webhooks/<code>/``).
    """

    payment_id: int
    order_number: str
    amount: Decimal
    currency: str
    idempotency_key: str
    customer_email: str = ""
    customer_phone: str = ""
    description: str = ""
    return_url: str = ""
    cancel_url: str = ""
    callback_url: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    lines: Sequence[PaymentLine] = ()
    # When the order stops waiting for this payment (its stock is released): a hosted page
    # should close by then. None: the order waits (cash on delivery).
    pay_by: datetime | None = None


@dataclass(frozen=True)
class NextAction:
    """What the storefront does next: redirect, wait for the phone, show instructions, nothing."""

    kind: Literal["redirect", "approve_on_phone", "instructions", "none"]
    url: str = ""
    message: str = ""


@dataclass(frozen=True)
class PaymentInitiation:
    provider_reference: str
    status: PaymentStatus
    next_action: NextAction
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookRequest:
    """An incoming webhook as received: the raw body (signatures are over the raw bytes)."""

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderEvent:
    """One event from a provider's webhook. ``event_id`` is unique per provider: the same id
    again is a replay and changes nothing.

    The payment is found by ``provider_reference`` (what ``initiate`` returned), else by
    ``provider_payment_id`` (the provider's id of the money itself: a Stripe PaymentIntent, an
    M-Pesa receipt), else by ``payment_id`` (ours, when the provider echoes metadata back).
    ``amount`` and ``currency`` are what the provider says was paid; a success whose amount or
    currency differs from the payment's is refused. For refunds, ``amount_refunded`` is the
    provider's running total refunded on the payment and ``refund_ids`` the refunds it knows
    of. ``message`` says why, for a failure (shown to staff and the customer).
    """

    event_id: str
    provider_reference: str
    status: PaymentStatus
    amount: Decimal | None = None
    currency: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)
    provider_payment_id: str = ""
    payment_id: int | None = None
    amount_refunded: Decimal | None = None
    refund_ids: Sequence[str] = ()
    message: str = ""


@dataclass(frozen=True)
class ProviderPaymentStatus:
    """Where a payment stands, as the provider answers a query (reconciliation)."""

    status: PaymentStatus
    amount: Decimal | None = None
    currency: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)
    provider_payment_id: str = ""
    message: str = ""


@dataclass(frozen=True)
class RefundRequest:
    """Give back ``amount`` of a settled payment. ``idempotency_key`` is one per refund."""

    provider_reference: str
    amount: Decimal
    currency: str
    idempotency_key: str
    reason: str = ""
    provider_payment_id: str = ""


@dataclass(frozen=True)
class RefundResult:
    status: Literal["succeeded", "pending", "failed"]
    provider_refund_id: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class PaymentProvider(Protocol):
    """A way to get paid. Payments are routed to exactly one provider by ``code``.

    Optional attributes:

    - ``unpaid_orders_expire`` (default True): False for methods paid on delivery, whose orders
      hold their stock until staff act rather than for the payment window.
    - ``confirm_webhooks`` (default False): True when a webhook is only a signal (unsigned
      M-Pesa callbacks, Chapa's advice to verify): before a webhook's success is believed, the
      platform asks ``query_status`` and acts on that answer.

    Errors: raise ``PaymentProviderError`` when the provider refuses (a bad phone number, an
    amount it cannot take): the customer or clerk sees its message. Any other exception (a
    timeout, a 5xx) is temporary: nothing is recorded as failed, and the call is retried.
    """

    code: str
    name: str
    supports_refunds: bool

    def initiate(self, request: PaymentRequest, config: Mapping[str, Any]) -> PaymentInitiation:
        """Start a payment; say what the customer does next."""

    def verify_webhook(
        self, request: WebhookRequest, config: Mapping[str, Any]
    ) -> Sequence[ProviderEvent]:
        """Verify a webhook (raise ``WebhookVerificationError`` if it is not genuine)."""

    def query_status(
        self, provider_reference: str, config: Mapping[str, Any]
    ) -> ProviderPaymentStatus:
        """Ask the provider where a payment stands (reconciliation)."""

    def refund(self, request: RefundRequest, config: Mapping[str, Any]) -> RefundResult:
        """Refund all or part of a payment."""


# --- Notifications ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One message to one recipient, rendered and ready: an email address, or a phone number in
    E.164 form (``+254712345678``) for channels whose ``recipient_kind`` is ``"phone"``.

    ``notification_id`` is ours and the same every time this message is tried again: pass it to
    providers that take an idempotency key. ``context`` is what the message was rendered from
    (plain JSON: the order number, the customer's name and language, the refund amount...).
    ``html`` is set for email only.
    """

    recipient: str
    subject: str
    body: str
    event: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)
    html: str = ""
    notification_id: int | None = None
    language: str = ""


@dataclass(frozen=True)
class DeliveryResult:
    """What a channel says of one message it took.

    ``sent``: the provider accepted it (a delivery report may follow); ``delivered``: it
    arrived; ``failed``: it never will (an invalid number, a blacklisted one, a bad address), so
    it is not tried again. A temporary failure is an exception instead: the message is retried
    with backoff. ``cost`` is what the provider says it charged, as it says it ("KES 0.8000").
    """

    status: Literal["sent", "queued", "delivered", "failed"]
    provider_message_id: str = ""
    error: str = ""
    cost: str = ""


@dataclass(frozen=True)
class DeliveryReport:
    """A provider's later word on a message it took (``parse_delivery_report``)."""

    provider_message_id: str
    status: Literal["sent", "delivered", "failed"]
    error: str = ""
    cost: str = ""


@runtime_checkable
class NotificationChannel(Protocol):
    """A way to reach a customer or the merchant (email, SMS, WhatsApp...).

    ``recipient_kind`` says what it sends to: ``"email"`` (an address) or ``"phone"`` (an E.164
    number). Email-kind channels get a subject, plain text and HTML; phone-kind channels get
    text (by default the SMS template, unless templates exist for the channel's own code).

    Optional: ``parse_delivery_report(request: WebhookRequest, config) -> list[DeliveryReport]``
    for providers that call back with delivery reports (at
    ``/api/v1/notifications/delivery-reports/<code>/<token>/``); raise
    ``WebhookVerificationError`` for a body that is not a report.
    """

    code: str
    name: str
    recipient_kind: Literal["email", "phone"]

    def send(self, notification: Notification, config: Mapping[str, Any]) -> DeliveryResult:
        """Send one notification; raise on a temporary failure so the job retries."""


# --- Shipping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShippingMethod:
    """A shipping option the storefront can offer; the ``shipping_rate`` hook prices it."""

    code: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class ShippingRequest:
    """What is being shipped, and where: enough for a rate, nothing that identifies a person."""

    subtotal: Decimal
    currency: str
    item_count: int
    weight_grams: int = 0
    country: str = ""
    postal_code: str = ""


@dataclass(frozen=True)
class ShippingRate:
    method_code: str
    amount: Decimal
    currency: str
    label: str = ""


# --- Admin --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardWidget:
    """A number on the admin dashboard: ``value(request)`` is called when the page renders."""

    title: str
    value: Any  # Callable[[HttpRequest], str | int]
    link: str = ""
    description: str = ""


@dataclass(frozen=True)
class ScheduledJob:
    """A job to run on a schedule: ``func`` is a dotted path; ``cron`` or ``minutes`` says when."""

    name: str
    func: str
    minutes: int | None = None
    cron: str = ""


__all__ = [
    "ConfigField", "DashboardWidget", "DeliveryReport", "DeliveryResult", "NextAction",
    "Notification", "NotificationChannel", "PaymentInitiation", "PaymentLine", "PaymentProvider",
    "PaymentRequest",
    "PaymentStatus", "ProviderEvent", "ProviderPaymentStatus", "RefundRequest", "RefundResult",
    "ScheduledJob", "ShippingMethod", "ShippingRate", "ShippingRequest", "WebhookRequest",
]
