"""Checkout: shipping methods with their rates, a quote, and placing the order.

``POST /checkout`` needs an ``Idempotency-Key`` header (any unique string, e.g. a UUID the
client makes per checkout attempt): sending the same key again returns the same order, so a
retry after a timeout never orders twice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from django.http import HttpRequest
from ninja import Field, Header, Router, Schema, Status
from pydantic import ConfigDict, StringConstraints, model_validator

from backoffice.checkout import services as checkout
from backoffice.customers.models import Address
from backoffice.money import money_text, store_currency
from backoffice.orders.models import Order
from backoffice.plugin_host import services as plugins
from backoffice.plugin_host.errors import PluginError
from backoffice.plugin_host.protocols import ShippingRequest
from shop_api import examples
from shop_api.auth import customer_or_checkout_guest, customer_or_guest
from shop_api.errors import ApiError
from shop_api.examples import example
from shop_api.routers.cart import _cart
from shop_api.routers.orders import OrderOut, order_out, with_details
from shop_api.schemas import (
    ERROR_RESPONSES,
    AddressFields,
    InCurrency,
    InputSchema,
    Money,
    NotBlank,
    Phone,
)

router = Router(tags=["checkout"], auth=customer_or_guest)

Code = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]


def _present(name: str) -> dict:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _absent(name: str) -> dict:
    return {"properties": {name: {"type": "null"}}}  # not sent, or null


# What ``_one_shipping_address`` checks, in the schema: one shipping address (given or saved),
# and at most one billing address.
_ONE_ADDRESS_EACH = {"allOf": [
    {"anyOf": [{"allOf": [_present("shipping_address"), _absent("shipping_address_id")]},
               {"allOf": [_present("shipping_address_id"), _absent("shipping_address")]}]},
    {"anyOf": [_absent("billing_address"), _absent("billing_address_id")]},
]}


class CheckoutIn(InputSchema):
    model_config = ConfigDict(json_schema_extra={
        **example(examples.CHECKOUT)["json_schema_extra"], **_ONE_ADDRESS_EACH})

    shipping_method: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                      max_length=64), NotBlank]
    shipping_address: AddressFields | None = None
    shipping_address_id: int | None = Field(None, description="One of your saved addresses.")
    billing_address: AddressFields | None = None
    billing_address_id: int | None = None
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)] = Field(
        "", description="Needed for guests; your account's by default.")
    phone: Phone = ""
    coupon_code: Code = ""
    payment_method: Code = Field("", description="A payment method's code (e.g. manual).")
    note: Annotated[str, StringConstraints(max_length=1000)] = ""

    @model_validator(mode="after")
    def _one_shipping_address(self):
        if (self.shipping_address is None) == (self.shipping_address_id is None):
            raise ValueError("give shipping_address or shipping_address_id (one of them)")
        if self.billing_address is not None and self.billing_address_id is not None:
            raise ValueError("give billing_address or billing_address_id, not both")
        return self


class QuoteLineOut(Schema):
    sku: str
    quantity: int
    unit_price: Money
    discount: Money


class QuoteOut(InCurrency):
    item_count: int
    subtotal: Money
    discount_total: Money
    coupon_code: str
    shipping_total: Money
    shipping_method: str
    total: Money
    lines: list[QuoteLineOut]


class ShippingOptionOut(Schema):
    code: str
    name: str
    amount: Money | None = Field(description="None when this method cannot ship the cart.")
    available: bool
    reason: str


_STATUS_BY_CODE = {
    "insufficient_stock": 409, "price_changed": 409, "cart_closed": 409, "total_changed": 409,
    "idempotency_key_reused": 409, "unavailable": 409,
    "empty_cart": 400, "email_required": 400, "invalid_email": 400, "idempotency_key_required": 400,
}


def _error(exc: checkout.CheckoutError) -> ApiError:
    status = _STATUS_BY_CODE.get(exc.code, 422 if exc.code.startswith("coupon") else 400)
    errors = []
    for line in exc.lines:
        if "available" in line:
            message = f"{line['sku']}: {line['available']} left, {line['requested']} asked."
        else:
            message = (f"{line['sku']}: {money_text(line['current_price'])} now, "
                       f"{money_text(line['unit_price'])} when added.")
        current = line.get("current_price")
        errors.append({
            "field": "lines", "message": message, "code": exc.code, "sku": line["sku"],
            "available": line.get("available"),
            "current_price": money_text(current) if current is not None else None,
        })
    if exc.code.startswith("coupon"):
        errors.append({"field": "coupon_code", "message": str(exc), "code": exc.code})
    return ApiError(status, exc.code, str(exc), errors)


def _saved_address(request: HttpRequest, address_id: int, field: str) -> dict:
    user = request.auth if request.auth.is_authenticated else None
    address = Address.objects.filter(pk=address_id, user=user).values(
        *checkout.ADDRESS_FIELDS).first() if user else None
    if address is None:
        raise ApiError(404, "not_found", "No such address.",
                       [{"field": field, "message": "No such address.", "code": "not_found"}])
    return address


def _request(request: HttpRequest, payload: CheckoutIn) -> checkout.CheckoutRequest:
    shipping = (payload.shipping_address.model_dump() if payload.shipping_address
                else _saved_address(request, payload.shipping_address_id, "shipping_address_id"))
    billing = None
    if payload.billing_address is not None:
        billing = payload.billing_address.model_dump()
    elif payload.billing_address_id is not None:
        billing = _saved_address(request, payload.billing_address_id, "billing_address_id")
    return checkout.CheckoutRequest(
        shipping_address=shipping, billing_address=billing,
        shipping_method=payload.shipping_method, email=payload.email or "",
        phone=payload.phone, coupon_code=payload.coupon_code,
        payment_method=payload.payment_method, customer_note=payload.note,
    )


def _user(request: HttpRequest):
    return request.auth if request.auth.is_authenticated else None


@router.get("/checkout/shipping-methods", response={200: list[ShippingOptionOut],
                                                    **ERROR_RESPONSES})
def shipping_methods(request: HttpRequest,
                     country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")],
                     postal_code: Annotated[str, StringConstraints(max_length=20)] = ""):
    """The shipping methods for your cart and a destination, with their rates."""
    view = checkout.cart_summary(_cart(request))
    options = []
    for method in plugins.shipping_methods():
        try:
            rate = plugins.quote_shipping(method_code=method.code, request=ShippingRequest(
                subtotal=view.subtotal, currency=store_currency(), item_count=view.item_count,
                weight_grams=view.weight_grams, country=country.upper(), postal_code=postal_code,
            ))
        except PluginError as exc:
            options.append({"code": method.code, "name": method.name, "amount": None,
                            "available": False, "reason": str(exc)})
            continue
        options.append({"code": method.code, "name": method.name, "amount": rate.amount,
                        "available": True, "reason": ""})
    return options


@router.post("/checkout/quote", response={200: QuoteOut, **ERROR_RESPONSES})
def quote(request: HttpRequest, payload: CheckoutIn):
    """What the order would cost: subtotal, coupon discount, shipping and total. Writes
    nothing; the same checks as placing the order (stock is checked when placing)."""
    try:
        result = checkout.quote(_cart(request), _request(request, payload), user=_user(request))
    except checkout.CheckoutError as exc:
        raise _error(exc) from exc
    shares = result.discount.per_line if result.discount else {}
    return {
        "currency": result.currency, "item_count": result.item_count,
        "subtotal": result.subtotal, "discount_total": result.discount_total,
        "coupon_code": result.discount.coupon.code if result.discount else "",
        "shipping_total": result.shipping, "shipping_method": result.shipping_label,
        "total": result.total,
        "lines": [{"sku": variant.sku, "quantity": line.quantity, "unit_price": line.unit_price,
                   "discount": shares.get(line.pk, Decimal("0"))}
                  for line, variant in result.lines],
    }


@router.post("/checkout", auth=customer_or_checkout_guest,
             response={200: OrderOut, 201: OrderOut, **ERROR_RESPONSES})
def place_order(
    request: HttpRequest, payload: CheckoutIn,
    idempotency_key: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                      max_length=255), NotBlank] = Header(
        ..., alias="Idempotency-Key",
        description="Unique per checkout attempt; a retry with it returns the same order."),
):
    """Place the order: stock is allocated, the coupon redeemed, and the order waits for payment
    (``pay_by``). 201 with the order; 200 with the same order when the key was used before.

    Refusals name the lines at fault: ``insufficient_stock`` (with what is ``available``),
    ``price_changed`` (accept the new prices with ``POST /cart/prices/accept``), ``unavailable``,
    and coupon errors (``coupon_expired``, ``coupon_used_up``...) say why.
    """
    try:
        order, created = checkout.place_order(
            _cart(request), _request(request, payload), user=_user(request),
            idempotency_key=idempotency_key,
        )
    except checkout.CheckoutError as exc:
        raise _error(exc) from exc
    if not created:  # an earlier request's order, read as it is now
        order = with_details(Order.objects.filter(pk=order.pk)).get()
    return Status(201 if created else 200, order_out(order))

