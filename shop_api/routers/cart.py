"""The cart: a customer's (with a bearer token) or a guest's (with ``X-Cart-Token``).

A guest creates a cart with ``POST /cart`` and sends its token back in ``X-Cart-Token``. When the
guest logs in or registers with that header, the guest cart's lines move into the customer's cart.
"""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import StringConstraints

from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart, CartLine
from shop_api import examples
from shop_api.auth import customer_or_guest, optional_customer
from shop_api.errors import ApiError
from shop_api.examples import example
from shop_api.schemas import ERROR_RESPONSES, InCurrency, InputSchema, Money, NotBlank

router = Router(tags=["cart"], auth=customer_or_guest)


class CartLineOut(Schema):
    id: int
    sku: str
    product_name: str
    product_slug: str
    variant_name: str
    quantity: int
    unit_price: Money = Field(description="The price when the line was added.")
    current_price: Money
    price_changed: bool
    line_total: Money
    available: int
    purchasable: bool


class CartOut(InCurrency):
    token: str = Field(description="Send it as X-Cart-Token on a guest's later requests.")
    lines: list[CartLineOut]
    item_count: int
    subtotal: Money
    has_price_changes: bool


class AddLineIn(InputSchema):
    model_config = example(examples.CART_LINE)

    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
                   NotBlank]
    quantity: int = Field(default=1, ge=1, le=carts.MAX_LINE_QUANTITY)


class LineQuantityIn(InputSchema):
    model_config = example(examples.LINE_QUANTITY)

    quantity: int = Field(ge=0, le=carts.MAX_LINE_QUANTITY, description="0 removes the line.")


def _cart(request: HttpRequest) -> Cart:
    if request.auth.is_authenticated:
        return carts.customer_cart(request.auth)
    return request.auth.cart


def _out(cart: Cart) -> dict:
    view = carts.view_cart(cart)
    return {
        "token": str(cart.token),
        "currency": view.totals.currency,
        "item_count": view.totals.item_count,
        "subtotal": view.totals.subtotal,
        "has_price_changes": view.has_price_changes,
        "lines": [
            {
                "id": line.line.pk, "sku": line.variant.sku,
                "product_name": line.variant.product.name,
                "product_slug": line.variant.product.slug, "variant_name": line.variant.name,
                "quantity": line.line.quantity, "unit_price": line.unit_price,
                "current_price": line.current_price, "price_changed": line.price_changed,
                "line_total": line.line_total, "available": line.available,
                "purchasable": line.purchasable,
            }
            for line in view.lines
        ],
    }


def _cart_error(exc: carts.CartError) -> ApiError:
    status = 409 if exc.code in {"insufficient_stock", "cart_closed"} else 400
    errors = []
    if exc.available is not None:
        errors = [{"field": "quantity", "message": str(exc), "code": exc.code,
                   "sku": exc.sku, "available": exc.available}]
    error = ApiError(status, exc.code, str(exc), errors)
    return error


@router.post("/cart", auth=None, response={200: CartOut, 201: CartOut, **ERROR_RESPONSES})
def create_cart(request: HttpRequest):
    """A new guest cart: keep its token and send it as X-Cart-Token. With a bearer token, the
    customer's own cart instead."""
    user = optional_customer(request)
    if user is not None:
        return _out(carts.customer_cart(user))
    return Status(201, _out(carts.guest_cart(None, create=True)))


@router.get("/cart", response={200: CartOut, **ERROR_RESPONSES})
def get_cart(request: HttpRequest):
    """The cart with its lines, today's prices, availability and subtotal."""
    return _out(_cart(request))


@router.delete("/cart", response={200: CartOut, **ERROR_RESPONSES})
def clear(request: HttpRequest):
    """Remove every line."""
    cart = _cart(request)
    carts.clear_cart(cart=cart)
    return _out(cart)


@router.post("/cart/lines", response={200: CartOut, **ERROR_RESPONSES})
def add_line(request: HttpRequest, payload: AddLineIn):
    """Add a SKU. More than is available is refused with the available quantity."""
    cart = _cart(request)
    try:
        carts.add_to_cart(cart=cart, sku=payload.sku, quantity=payload.quantity)
    except carts.CartError as exc:
        raise _cart_error(exc) from exc
    return _out(cart)


def _line_id_or_404(cart: Cart, line_id: int) -> None:
    if not CartLine.objects.filter(pk=line_id, cart=cart).exists():
        raise ApiError(404, "not_found", "Not found.")


@router.patch("/cart/lines/{line_id}", response={200: CartOut, **ERROR_RESPONSES})
def set_quantity(request: HttpRequest, line_id: int, payload: LineQuantityIn):
    """Change a line's quantity (0 removes it)."""
    cart = _cart(request)
    _line_id_or_404(cart, line_id)
    try:
        carts.set_line_quantity(cart=cart, line_id=line_id, quantity=payload.quantity)
    except carts.CartError as exc:
        raise _cart_error(exc) from exc
    return _out(cart)


@router.delete("/cart/lines/{line_id}", response={200: CartOut, **ERROR_RESPONSES})
def remove(request: HttpRequest, line_id: int):
    """Remove a line."""
    cart = _cart(request)
    _line_id_or_404(cart, line_id)
    carts.remove_line(cart=cart, line_id=line_id)
    return _out(cart)


@router.post("/cart/prices/accept", response={200: CartOut, **ERROR_RESPONSES})
def accept_prices(request: HttpRequest):
    """Accept today's prices for lines whose price changed since they were added."""
    cart = _cart(request)
    carts.accept_current_prices(cart=cart)
    return _out(cart)
