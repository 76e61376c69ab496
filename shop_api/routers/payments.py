"""Paying for an order: the methods on offer, starting a payment, its status, and webhooks.

A customer pays their own orders (``/orders/{number}/payments``); a guest pays by the order's
token (``/orders/by-token/{token}/payments``). Another customer's order or payment is a 404.
The answer to a start says what the storefront does next (``next_action``): go to ``url``,
tell the customer to approve on their phone, or show ``message`` (instructions).

Providers post their webhooks to ``/payments/webhooks/{provider}/``: the raw body is verified
(an unverifiable request is a 400 and changes nothing), stored, and acted on by a job.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import StringConstraints

from backoffice.orders.models import Order
from backoffice.payments import services
from backoffice.payments.models import Payment
from backoffice.payments.status import PaymentStatus
from backoffice.plugin_host import services as plugins
from backoffice.plugin_host.errors import WebhookVerificationError
from shop_api import examples
from shop_api.auth import customer_auth
from shop_api.errors import ApiError, ErrorOut
from shop_api.examples import example
from shop_api.pagination import MAX_PAGE, MAX_PAGE_SIZE
from shop_api.routers.orders import order_by_token
from shop_api.schemas import (
    ERROR_RESPONSES,
    InCurrency,
    InputSchema,
    Money,
    NotBlank,
    Phone,
)

logger = logging.getLogger(__name__)
router = Router(tags=["payments"])
RESPONSES = {**ERROR_RESPONSES, 503: ErrorOut}


class PaymentMethodOut(Schema):
    code: str
    name: str


class NextActionOut(Schema):
    kind: Literal["redirect", "approve_on_phone", "instructions", "none"] = Field(
        description="redirect: send the customer to `url`; approve_on_phone: ask them to "
                    "approve on their phone, then poll; instructions: show `message`.")
    url: str = ""
    message: str = ""


class PaymentOut(InCurrency):
    id: int
    order_number: str
    provider: str
    status: str = Field(description=f"One of {', '.join(PaymentStatus.values)}.")
    status_label: str
    amount: Money
    amount_refunded: Money
    next_action: NextActionOut | None = Field(
        description="What to do next while the payment is open; null once it is settled.")
    message: str = Field(description="Why it failed, or what the provider last said.")
    created_at: datetime
    paid_at: datetime | None


class StartPaymentIn(InputSchema):
    model_config = example(examples.START_PAYMENT)

    provider: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=64), NotBlank] = Field(
        description="A payment method's code, from GET /payments/methods.")
    phone: Phone = Field("", description="For M-Pesa: the phone to send the prompt to "
                                         "(the order's phone by default).")


class PaymentPageOut(Schema):
    items: list[PaymentOut]
    count: int


def payment_out(payment: Payment) -> dict:
    open_ = payment.status in {PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION}
    action = payment.next_action or {}
    return {
        "id": payment.pk, "order_number": payment.order.number or "",
        "provider": payment.provider, "status": payment.status,
        "status_label": payment.get_status_display(), "amount": payment.amount,
        "currency": payment.currency, "amount_refunded": payment.amount_refunded,
        "next_action": ({"kind": action.get("kind") or "none", "url": action.get("url", ""),
                         "message": action.get("message", "")} if open_ and action else None),
        "message": payment.message, "created_at": payment.created_at,
        "paid_at": payment.succeeded_at,
    }


def _start(order: Order, payload: StartPaymentIn, user) -> Status:
    try:
        payment, created = services.start_payment(order, payload.provider, phone=payload.phone,
                                                  user=user)
    except services.PaymentError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from exc
    payment.order = order
    return Status(201 if created else 200, payment_out(payment))


def _own_order(request: HttpRequest, number: str) -> Order:
    order = Order.objects.filter(user=request.auth, number=number).first()
    if order is None:
        raise ApiError(404, "not_found", "Not found.")
    return order


_guest_order = order_by_token


def _payment(queryset, payment_id: int) -> dict:
    payment = queryset.select_related("order").filter(pk=payment_id).first()
    if payment is None:
        raise ApiError(404, "not_found", "Not found.")
    return payment_out(payment)


@router.get("/payments/methods", response={200: list[PaymentMethodOut], 429: ErrorOut})
def payment_methods(request: HttpRequest):
    """The payment methods the store offers (the active payment plugins)."""
    return [{"code": p.code, "name": p.name} for p in plugins.payment_providers()]


@router.post("/orders/{number}/payments", auth=customer_auth,
             response={200: PaymentOut, 201: PaymentOut, **RESPONSES})
def pay_my_order(request: HttpRequest, number: str, payload: StartPaymentIn):
    """Start paying one of your orders. 201 with a new payment; 200 with the open one when
    the order already has an open payment with this provider (pressing twice is safe)."""
    return _start(_own_order(request, number), payload, request.auth)


@router.post("/orders/by-token/{token}/payments",
             response={200: PaymentOut, 201: PaymentOut, **RESPONSES})
def pay_guest_order(request: HttpRequest, token: str, payload: StartPaymentIn):
    """Start paying an order by its token (guests)."""
    return _start(_guest_order(token), payload, None)


@router.get("/orders/by-token/{token}/payments/{payment_id}",
            response={200: PaymentOut, **ERROR_RESPONSES})
def guest_payment(request: HttpRequest, token: str, payment_id: int):
    """A payment of an order, by the order's token: poll it until it is settled."""
    return _payment(Payment.objects.filter(order=_guest_order(token)), payment_id)


@router.get("/payments", auth=customer_auth, response={200: PaymentPageOut, **ERROR_RESPONSES})
def my_payments(request: HttpRequest, page: int = Query(1, ge=1, le=MAX_PAGE),
                page_size: int = Query(20, ge=1, le=MAX_PAGE_SIZE)):
    """Your payments, newest first."""
    mine = Payment.objects.filter(order__user=request.auth)
    start = (page - 1) * page_size
    items = mine.select_related("order").order_by("-created_at", "-id")[start:start + page_size]
    return {"items": [payment_out(p) for p in items], "count": mine.count()}


@router.get("/payments/{payment_id}", auth=customer_auth,
            response={200: PaymentOut, **ERROR_RESPONSES})
def my_payment(request: HttpRequest, payment_id: int):
    """One of your payments: poll it until it is settled."""
    return _payment(Payment.objects.filter(order__user=request.auth), payment_id)


class WebhookOut(Schema):
    received: int
    new: int


@router.post("/payments/webhooks/{provider}/", url_name="payment_webhook",
             response={200: WebhookOut, 413: ErrorOut, **RESPONSES}, include_in_schema=False)
def payment_webhook(request: HttpRequest, provider: str):
    """A provider's webhook: verified on the raw body, stored, processed by a job.

    A body over the upload limit is read by no one: a 413 (and a warning in the log), which a
    provider does not retry as it retries a 5xx; nothing is stored."""
    body = request.body  # over DATA_UPLOAD_MAX_MEMORY_SIZE: RequestDataTooBig, answered 413
    try:
        received, new = services.receive_webhook(
            provider, body=body, headers=dict(request.headers),
            query={key: request.GET.get(key, "") for key in request.GET},
        )
    except services.PaymentError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from exc
    except WebhookVerificationError as exc:
        raise ApiError(400, "invalid_webhook", f"The webhook could not be verified: {exc}") \
            from exc
    except Exception as exc:
        # The plugin failed on it (a bug, or its settings): the provider sends it again later.
        logger.exception("the %s plugin failed on a webhook", provider)
        raise ApiError(503, "webhook_error", "The webhook could not be handled now.") from exc
    return {"received": received, "new": new}
