"""A customer's orders: list, detail with shipments and tracking, cancel while unpaid.

Each order answers with its overall ``status`` (open, cancelled, completed) and the two states
it is derived from: ``payment_status`` (unpaid, paid, partially_refunded, refunded, overpaid)
and ``fulfilment_status`` (unfulfilled, partially_shipped, shipped, partially_delivered,
delivered). A cancel is decided by the order service under the order's row lock: an order paid
a moment before is not cancelled (409), whatever the page the customer looked at said.

Guests see their order by the ``token`` checkout gave them (``/orders/by-token/{token}``).
Another customer's order is a 404, never visible.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from backoffice.inventory.services import Actor
from backoffice.orders import services
from backoffice.orders.models import Order, Shipment
from backoffice.orders.status import FulfilmentStatus, OrderStatus, PaymentStatus
from shop_api.auth import customer_auth
from shop_api.errors import ApiError
from shop_api.pagination import MAX_PAGE, MAX_PAGE_SIZE
from shop_api.schemas import ERROR_RESPONSES, AddressValues, InCurrency, Money

router = Router(tags=["orders"])


class OrderLineOut(Schema):
    id: int
    sku: str
    product_name: str
    variant_name: str
    options: dict[str, str]
    unit_price: Money
    quantity: int
    discount: Money
    total: Money
    quantity_shipped: int
    quantity_refunded: int


class ShipmentLineOut(Schema):
    sku: str
    quantity: int


class ShipmentOut(Schema):
    carrier: str
    tracking_number: str
    tracking_url: str
    shipped_at: datetime
    delivered_at: datetime | None
    lines: list[ShipmentLineOut]


class OrderOut(InCurrency):
    number: str
    token: str = Field(description="A guest's key to this order: /orders/by-token/{token}.")
    status: str = Field(description="The overall state, derived from the two below and "
                                    f"cancellation: one of {', '.join(OrderStatus.values)}.")
    status_label: str
    payment_status: str = Field(
        description=f"Where the money stands: one of {', '.join(PaymentStatus.values)}.")
    payment_status_label: str
    fulfilment_status: str = Field(
        description=f"Where the goods are: one of {', '.join(FulfilmentStatus.values)}.")
    fulfilment_status_label: str
    placed_at: datetime
    email: str
    subtotal: Money
    discount_total: Money
    coupon_code: str
    shipping_total: Money
    shipping_method: str
    total: Money
    refunded_total: Money
    payment_method: str
    pay_by: datetime | None = Field(description="Unpaid after this, the order is cancelled.")
    paid_at: datetime | None
    can_cancel: bool = Field(description="Unpaid, not cancelled, nothing shipped: "
                                         "POST .../cancel would be accepted now.")
    shipping_address: AddressValues
    billing_address: AddressValues
    lines: list[OrderLineOut]
    shipments: list[ShipmentOut]


def _address(data: dict) -> dict:
    return {name: str(data.get(name) or "") for name in AddressValues.model_fields}


def with_details(queryset: QuerySet[Order]) -> QuerySet[Order]:
    """Orders with their lines and shipments (with lines) in three more queries."""
    return queryset.prefetch_related(
        "lines",
        Prefetch("shipments", queryset=Shipment.objects.prefetch_related("lines__line")),
    )


def order_out(order: Order) -> dict:
    lines = list(order.lines.all())
    return {
        "number": order.number, "token": str(order.token), "status": order.status,
        "status_label": order.get_status_display(),
        "payment_status": order.payment_status,
        "payment_status_label": order.get_payment_status_display(),
        "fulfilment_status": order.fulfilment_status,
        "fulfilment_status_label": order.get_fulfilment_status_display(),
        "placed_at": order.created_at,
        "email": order.email, "currency": order.currency, "subtotal": order.subtotal,
        "discount_total": order.discount_total, "coupon_code": order.coupon_code,
        "shipping_total": order.shipping_total, "shipping_method": order.shipping_method_name,
        "total": order.total, "refunded_total": order.refunded_total,
        "payment_method": order.payment_method, "pay_by": order.payment_due_at,
        "paid_at": order.paid_at,
        "can_cancel": not services.refusal(order, "cancel_unpaid"),
        "shipping_address": _address(order.shipping_address),
        "billing_address": _address(order.billing_address),
        "lines": [
            {"id": ln.pk, "sku": ln.sku, "product_name": ln.product_name,
             "variant_name": ln.variant_name,
             "options": {str(k): str(v) for k, v in (ln.options or {}).items()},
             "unit_price": ln.unit_price, "quantity": ln.quantity,
             "discount": ln.discount_amount, "total": ln.total,
             "quantity_shipped": ln.quantity_shipped, "quantity_refunded": ln.quantity_refunded}
            for ln in lines
        ],
        "shipments": [
            {"carrier": s.carrier, "tracking_number": s.tracking_number,
             "tracking_url": s.tracking_url, "shipped_at": s.shipped_at,
             "delivered_at": s.delivered_at,
             "lines": [{"sku": sl.line.sku, "quantity": sl.quantity} for sl in s.lines.all()]}
            for s in order.shipments.all()
        ],
    }


def _own_order(request: HttpRequest, number: str) -> Order:
    order = with_details(Order.objects.filter(user=request.auth, number=number)).first()
    if order is None:
        raise ApiError(404, "not_found", "Not found.")
    return order


def order_by_token(token: str, queryset: QuerySet[Order] | None = None) -> Order:
    """The order a guest's token names, or a 404 (a malformed token too)."""
    try:
        token = str(uuid.UUID(token))
    except ValueError:
        raise ApiError(404, "not_found", "Not found.") from None
    order = (Order.objects.all() if queryset is None else queryset).filter(token=token).first()
    if order is None:
        raise ApiError(404, "not_found", "Not found.")
    return order


def _guest_order(token: str) -> Order:
    return order_by_token(token, with_details(Order.objects.all()))


def _cancel(order: Order, actor: Actor) -> dict:
    # Decided by the service from the order as read under its row lock (not from ``order``,
    # read before): a payment that landed meanwhile wins, and the answer is a 409.
    try:
        services.cancel_order(order.pk, actor=actor, note="Cancelled by the customer.",
                              only_if_unpaid=True)
    except services.OrderError as exc:
        raise ApiError(409, "not_cancellable", str(exc)) from exc
    return order_out(with_details(Order.objects.filter(pk=order.pk)).get())


class OrderPageOut(Schema):
    items: list[OrderOut]
    count: int


@router.get("/orders", auth=customer_auth, response={200: OrderPageOut, **ERROR_RESPONSES})
def my_orders(request: HttpRequest, page: int = Query(1, ge=1, le=MAX_PAGE),
              page_size: int = Query(20, ge=1, le=MAX_PAGE_SIZE)):
    """Your orders, newest first, with lines and shipments (five queries a page)."""
    mine = Order.objects.filter(user=request.auth)
    start = (page - 1) * page_size
    orders = with_details(mine.order_by("-created_at", "-id"))[start:start + page_size]
    return {"items": [order_out(o) for o in orders], "count": mine.count()}


@router.get("/orders/by-token/{token}", response={200: OrderOut, **ERROR_RESPONSES})
def guest_order(request: HttpRequest, token: str):
    """An order by the token checkout answered with (for guests; no login)."""
    return order_out(_guest_order(token))


@router.post("/orders/by-token/{token}/cancel", response={200: OrderOut, **ERROR_RESPONSES})
def cancel_guest_order(request: HttpRequest, token: str):
    """Cancel an unpaid order by its token: its stock goes back on the shelf."""
    order = _guest_order(token)
    return _cancel(order, Actor(label=f"guest {order.email}"))


@router.get("/orders/{number}", auth=customer_auth, response={200: OrderOut, **ERROR_RESPONSES})
def my_order(request: HttpRequest, number: str):
    """One of your orders: lines, totals, and shipments with tracking."""
    return order_out(_own_order(request, number))


@router.post("/orders/{number}/cancel", auth=customer_auth,
             response={200: OrderOut, **ERROR_RESPONSES})
def cancel_my_order(request: HttpRequest, number: str):
    """Cancel one of your orders while it is unpaid: its stock goes back on the shelf."""
    return _cancel(_own_order(request, number), Actor(user=request.auth))
