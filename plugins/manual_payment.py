"""Manual payment: cash on delivery or bank transfer.

Checkout shows the merchant's instructions; staff mark the payment as received in the admin.
There is no provider to call, so there are no webhooks, and refunds are recorded as done by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField
from backoffice.plugin_host.errors import WebhookVerificationError
from backoffice.plugin_host.protocols import (
    NextAction,
    PaymentInitiation,
    PaymentRequest,
    ProviderEvent,
    ProviderPaymentStatus,
    RefundRequest,
    RefundResult,
    WebhookRequest,
)

hookspec_version = ">=1.0,<2"
label = "Manual payment (cash on delivery, bank transfer)"

config_fields = [
    ConfigField("display_name", "Name at checkout", default="Cash on delivery"),
    ConfigField(
        "instructions", "Instructions for the customer", kind="text",
        default="Pay in cash when your order arrives.",
        help_text="Shown after the order is placed: bank details, paybill number, etc. "
                  "{order_number} and {amount} are filled in.",
    ),
]


class ManualPaymentProvider:
    code = "manual"
    name = "Manual payment"
    supports_refunds = True
    # Paid on delivery or by a transfer staff confirm: the order waits for them, not a timer.
    unpaid_orders_expire = False

    def customer_instructions(self, *, order_number: str, amount: Decimal, currency: str,
                              config: Mapping[str, Any]) -> str:
        """The merchant's instructions, filled in (checkout and the order confirmation)."""
        return (config.get("instructions") or "").format_map(
            {"order_number": order_number, "amount": f"{amount} {currency}"}
        )

    def initiate(self, request: PaymentRequest, config: Mapping[str, Any]) -> PaymentInitiation:
        message = self.customer_instructions(
            order_number=request.order_number, amount=request.amount,
            currency=request.currency, config=config,
        )
        return PaymentInitiation(
            provider_reference=f"manual-{request.payment_id}",
            status="pending",
            next_action=NextAction(kind="instructions", message=message),
        )

    def verify_webhook(
        self, request: WebhookRequest, config: Mapping[str, Any]
    ) -> Sequence[ProviderEvent]:
        raise WebhookVerificationError("manual payments have no webhooks")

    def query_status(
        self, provider_reference: str, config: Mapping[str, Any]
    ) -> ProviderPaymentStatus:
        # Only staff know whether the money came: nothing to ask.
        return ProviderPaymentStatus(status="pending")

    def refund(self, request: RefundRequest, config: Mapping[str, Any]) -> RefundResult:
        # The money goes back by hand; recording it is the refund.
        return RefundResult(
            status="succeeded", provider_refund_id=f"manual-{request.idempotency_key}"
        )


@hookimpl
def register_payment_providers() -> list[ManualPaymentProvider]:
    return [ManualPaymentProvider()]
