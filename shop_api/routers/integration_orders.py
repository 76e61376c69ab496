"""Orders for ERPs, warehouse and delivery systems (API keys with ``orders:read`` or
``orders:write``): read orders changed since a time, move them through their statuses, record
shipments. Every write goes through the order services and is attributed to the key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from django.http import HttpRequest
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_aware, make_aware
from ninja import Field, Query, Router, Schema, Status
from pydantic import StringConstraints

from backoffice.integrations.models import Scope
from backoffice.integrations.services import key_actor
from backoffice.orders import services
from backoffice.orders.models import Order
from backoffice.orders.selectors import awaiting_payment_q, refund_due_q, to_fulfil_q
from backoffice.orders.status import FulfilmentStatus, OrderStatus, PaymentStatus
from backoffice.payments import services as payments
from shop_api import examples
from shop_api.auth import integration_auth, require_scope
from shop_api.errors import ApiError
from shop_api.examples import example
from shop_api.pagination import MAX_PAGE, MAX_PAGE_SIZE
from shop_api.routers.orders import OrderOut, order_out, with_details
from shop_api.schemas import ERROR_RESPONSES, InputSchema, NotBlank

router = Router(tags=["integrations"], auth=integration_auth)

def _one_of(values) -> str:
    return "^(" + "|".join(values) + ")$"


# What an order may be asked to become (``services.move_to``).
StatusValue = Annotated[str, StringConstraints(pattern=_one_of(services.MOVES))]
# The lists ``?status=`` offers beside the overall states.
LISTS = {"to_fulfil": to_fulfil_q, "awaiting_payment": awaiting_payment_q,
         "refund_due": refund_due_q}
StatusFilter = Annotated[str, StringConstraints(pattern=_one_of([*OrderStatus.values, *LISTS]))]
PaymentFilter = Annotated[str, StringConstraints(pattern=_one_of(PaymentStatus.values))]
FulfilmentFilter = Annotated[str, StringConstraints(pattern=_one_of(FulfilmentStatus.values))]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]


class IntegrationOrderOut(OrderOut):
    updated_at: datetime


class IntegrationOrderPageOut(Schema):
    items: list[IntegrationOrderOut]
    count: int


class OrderFilters(Schema):
    status: StatusFilter | None = Field(
        None, description="The overall state (open, cancelled, completed), or a list: "
                          "to_fulfil (open, paid or paid on delivery, something left to ship), "
                          "awaiting_payment (open and unpaid), refund_due (money held for a "
                          "cancelled order, or paid twice).")
    payment_status: PaymentFilter | None = Field(
        None, description=f"One of {', '.join(PaymentStatus.values)}.")
    fulfilment_status: FulfilmentFilter | None = Field(
        None, description=f"One of {', '.join(FulfilmentStatus.values)}.")
    updated_since: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        None, description="Only orders changed at or after this time (ISO 8601, e.g. "
                        "2026-11-22T08:00:00Z), for syncing.",
        json_schema_extra={"format": "date-time"},
    )
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(50, ge=1, le=MAX_PAGE_SIZE)


class StatusIn(InputSchema):
    model_config = example(examples.ORDER_STATUS)

    status: StatusValue = Field(description="paid (records a manual payment), shipped (ships "
                                       "everything left), delivered (once everything "
                                       "shipped) or cancelled (releases stock; refused once "
                                       "anything shipped).")
    note: Note = ""


class ShipmentLineIn(InputSchema):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
                   NotBlank]
    quantity: int = Field(ge=1, le=100_000)


class ShipmentIn(InputSchema):
    model_config = example(examples.SHIPMENT)

    carrier: Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)] = ""
    tracking_number: Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)] = ""
    tracking_url: Annotated[str, StringConstraints(
        strip_whitespace=True, max_length=500, pattern=r"^(https?://[^\s\x00]+)?$")] = ""
    lines: list[ShipmentLineIn] = Field(
        default_factory=list, max_length=500, description="Empty ships everything left."
    )


def _out(order: Order) -> dict:
    return {**order_out(order), "updated_at": order.updated_at}


def _order(number: str) -> Order:
    order = with_details(Order.objects.filter(number=number)).first()
    if order is None:
        raise ApiError(404, "not_found", "Not found.")
    return order


def _moment(text: str) -> datetime:
    """The time ``updated_since`` names, in UTC. RFC 3339 takes any offset up to ±23:59, and
    PostgreSQL none beyond ±15:59 (a DataError, a 500): the database is given UTC only."""
    try:
        moment = parse_datetime(text)
        if moment is not None:
            moment = (moment if is_aware(moment) else make_aware(moment, UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # no such date; or before year 1 or after 9999 in UTC
        moment = None
    if moment is None:
        message = "Not an ISO 8601 date and time (e.g. 2026-11-22T08:00:00Z)."
        raise ApiError(422, "validation_error", "The request is not valid.", [
            {"field": "updated_since", "message": message, "code": "invalid"}])
    return moment


def _refused(exc: Exception) -> ApiError:
    return ApiError(409, getattr(exc, "code", "illegal_transition"), str(exc))


@router.get("/integrations/orders", response={200: IntegrationOrderPageOut, **ERROR_RESPONSES})
def list_orders(request: HttpRequest, filters: Query[OrderFilters]):
    """Orders, least recently changed first (page through with ``updated_since`` to sync)."""
    require_scope(request, Scope.ORDERS_READ)
    orders = Order.objects.all()
    if filters.status in LISTS:
        orders = orders.filter(LISTS[filters.status]())
    elif filters.status:
        orders = orders.filter(status=filters.status)
    if filters.payment_status:
        orders = orders.filter(payment_status=filters.payment_status)
    if filters.fulfilment_status:
        orders = orders.filter(fulfilment_status=filters.fulfilment_status)
    if filters.updated_since:
        orders = orders.filter(updated_at__gte=_moment(filters.updated_since))
    start = (filters.page - 1) * filters.page_size
    page = with_details(orders.order_by("updated_at", "id"))[start:start + filters.page_size]
    return {"items": [_out(o) for o in page], "count": orders.count()}


@router.get("/integrations/orders/{number}", response={200: IntegrationOrderOut,
                                                       **ERROR_RESPONSES})
def get_order(request: HttpRequest, number: str):
    require_scope(request, Scope.ORDERS_READ)
    return _out(_order(number))


@router.post("/integrations/orders/{number}/status",
             response={200: IntegrationOrderOut, **ERROR_RESPONSES})
def move_order(request: HttpRequest, number: str, payload: StatusIn):
    """Mark an order paid, shipped, delivered or cancelled, through the order services (under
    the order's row lock). A move its states do not allow is a 409 and changes nothing."""
    require_scope(request, Scope.ORDERS_WRITE)
    order = _order(number)
    try:
        payments.move_to(order, payload.status, actor=key_actor(request.auth),
                         note=payload.note)
    except (services.OrderError, services.IllegalTransition) as exc:
        raise _refused(exc) from exc
    return _out(_order(number))


@router.post("/integrations/orders/{number}/shipments",
             response={201: IntegrationOrderOut, **ERROR_RESPONSES})
def ship(request: HttpRequest, number: str, payload: ShipmentIn):
    """Record a shipment (all that is left, or some lines by SKU) with its tracking. Stock
    leaves the warehouse; the order is *shipped* when nothing is left to ship."""
    require_scope(request, Scope.ORDERS_WRITE)
    order = _order(number)
    by_sku = {line.sku: line.pk for line in order.lines.all()}
    unknown = [ln.sku for ln in payload.lines if ln.sku not in by_sku]
    if unknown:
        raise ApiError(422, "unknown_line", "Some SKUs are not in this order.", [
            {"field": "lines", "message": f"{sku} is not in this order.", "code": "unknown_line",
             "sku": sku} for sku in unknown])
    wanted: dict[int, int] = {}
    for line in payload.lines:
        wanted[by_sku[line.sku]] = wanted.get(by_sku[line.sku], 0) + line.quantity
    try:
        services.create_shipment(order, services.ShipmentRequest(
            carrier=payload.carrier, tracking_number=payload.tracking_number,
            tracking_url=payload.tracking_url, lines=wanted or None,
        ), actor=key_actor(request.auth))
    except (services.OrderError, services.IllegalTransition) as exc:
        raise _refused(exc) from exc
    return Status(201, _out(_order(number)))
