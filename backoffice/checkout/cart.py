"""The cart: add, change, remove, merge, and its priced view.

Quantities are checked against what is available over every warehouse (on hand - allocated), so
a cart never asks for more than the store has at that moment; checkout checks again under lock.
A variant sold without stock (not tracked, or on backorder) takes any quantity up to
``MAX_LINE_QUANTITY``.
Writes lock the cart row, so two requests on one cart don't lose each other's lines.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from backoffice.catalog.models import Variant
from backoffice.checkout.models import Cart, CartLine, CartStatus
from backoffice.checkout.pricing import PricedLine, Totals, compute_totals, line_total
from backoffice.inventory.selectors import with_variant_stock

MAX_LINE_QUANTITY = 999


class CartError(Exception):
    def __init__(self, message: str, code: str, *, available: int | None = None,
                 sku: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.available = available
        self.sku = sku


# --- Finding the cart --------------------------------------------------------------------------


def customer_cart(user: AbstractBaseUser) -> Cart:
    """The customer's active cart, made on first use (a unique constraint keeps it to one)."""
    cart = Cart.objects.filter(user=user, status=CartStatus.ACTIVE).first()
    if cart is not None:
        return cart
    try:
        with transaction.atomic():
            return Cart.objects.create(user=user)
    except IntegrityError:  # a concurrent request made it first
        return Cart.objects.get(user=user, status=CartStatus.ACTIVE)


def guest_cart(
    token: str | None, *, create: bool = False, ordered_too: bool = False
) -> Cart | None:
    """An active guest cart by its token (or one already ordered, for a checkout retried with
    its Idempotency-Key); a new one when asked to create."""
    try:
        token = str(uuid.UUID(str(token))) if token else None
    except ValueError:  # not a token we ever made
        token = None
    if token:
        statuses = [CartStatus.ACTIVE, CartStatus.ORDERED] if ordered_too else [CartStatus.ACTIVE]
        cart = Cart.objects.filter(token=token, user__isnull=True, status__in=statuses).first()
        if cart is not None:
            return cart
    return Cart.objects.create() if create else None


# --- Changing it -------------------------------------------------------------------------------


def _variants_with_stock() -> QuerySet[Variant]:
    return with_variant_stock(Variant.objects.select_related("product"))


def _sellable(variant_id: int | None = None, sku: str | None = None) -> Variant:
    lookup = {"pk": variant_id} if variant_id is not None else {"sku": sku}
    variant = _variants_with_stock().filter(**lookup).first()
    if variant is None or not variant.is_active or not variant.product.is_active:
        raise CartError("This product is not for sale.", "not_for_sale")
    return variant


def _can_buy(variant: Variant) -> int:
    """How many of a variant (annotated by ``with_variant_stock``) a line may hold now."""
    if variant.sells_without_stock:
        return MAX_LINE_QUANTITY
    return max(variant.available_total, 0)


def _check_quantity(variant: Variant, quantity: int) -> None:
    if quantity < 1 or quantity > MAX_LINE_QUANTITY:
        raise CartError(f"A quantity is from 1 to {MAX_LINE_QUANTITY}.", "invalid_quantity")
    if quantity > variant.available_total and not variant.sells_without_stock:
        raise CartError(
            f"Only {max(variant.available_total, 0)} of {variant.sku} available.",
            "insufficient_stock", available=max(variant.available_total, 0), sku=variant.sku,
        )


def _lock(cart: Cart) -> Cart:
    locked = Cart.objects.select_for_update().get(pk=cart.pk)
    if locked.status != CartStatus.ACTIVE:
        raise CartError("This cart is closed.", "cart_closed")
    return locked


@transaction.atomic
def add_to_cart(*, cart: Cart, quantity: int, sku: str | None = None,
                variant_id: int | None = None) -> CartLine:
    """Add ``quantity`` of a variant; a line that exists grows and keeps its original price."""
    cart = _lock(cart)
    variant = _sellable(variant_id=variant_id, sku=sku)
    line = CartLine.objects.filter(cart=cart, variant=variant).first()
    new_quantity = (line.quantity if line else 0) + quantity
    if quantity < 1:
        raise CartError(f"A quantity is from 1 to {MAX_LINE_QUANTITY}.", "invalid_quantity")
    _check_quantity(variant, new_quantity)
    if line is None:
        line = CartLine.objects.create(
            cart=cart, variant=variant, quantity=new_quantity, unit_price=variant.price
        )
    else:
        line.quantity = new_quantity
        line.save(update_fields=["quantity", "updated_at"])
    cart.save(update_fields=["updated_at"])
    return line


@transaction.atomic
def set_line_quantity(*, cart: Cart, line_id: int, quantity: int) -> CartLine | None:
    """Change a line's quantity; 0 removes it (returns None)."""
    cart = _lock(cart)
    line = CartLine.objects.get(pk=line_id, cart=cart)
    if quantity == 0:
        line.delete()
        return None
    _check_quantity(_sellable(variant_id=line.variant_id), quantity)
    line.quantity = quantity
    line.save(update_fields=["quantity", "updated_at"])
    return line


@transaction.atomic
def remove_line(*, cart: Cart, line_id: int) -> None:
    cart = _lock(cart)
    CartLine.objects.get(pk=line_id, cart=cart).delete()


@transaction.atomic
def clear_cart(*, cart: Cart) -> None:
    CartLine.objects.filter(cart=_lock(cart)).delete()


@transaction.atomic
def accept_current_prices(*, cart: Cart) -> int:
    """Take today's prices for every line whose price changed; returns how many changed."""
    cart = _lock(cart)
    changed = 0
    for line in CartLine.objects.filter(cart=cart).select_related("variant"):
        if line.unit_price != line.variant.price:
            line.unit_price = line.variant.price
            line.save(update_fields=["unit_price", "updated_at"])
            changed += 1
    return changed


@transaction.atomic
def merge_guest_cart(*, user: AbstractBaseUser, token: str | None) -> Cart:
    """Move a guest cart's lines into the customer's cart (at log-in).

    Quantities of the same variant add up, capped at what is available; the guest cart is
    closed as merged. An unknown token merges nothing.
    """
    target = _lock(customer_cart(user))
    guest = guest_cart(token)
    if guest is None:
        return target
    guest = _lock(guest)
    existing = {line.variant_id: line for line in CartLine.objects.filter(cart=target)}
    variants = {
        v.pk: v for v in _variants_with_stock().filter(
            pk__in=CartLine.objects.filter(cart=guest).values("variant_id")
        )
    }
    for line in CartLine.objects.filter(cart=guest):
        variant = variants[line.variant_id]
        mine = existing.get(line.variant_id)
        wanted = min((mine.quantity if mine else 0) + line.quantity, _can_buy(variant),
                     MAX_LINE_QUANTITY)
        if mine is not None:
            mine.quantity = max(wanted, 1)
            mine.save(update_fields=["quantity", "updated_at"])
        elif wanted > 0:
            CartLine.objects.create(cart=target, variant_id=line.variant_id, quantity=wanted,
                                    unit_price=line.unit_price)
    guest.status = CartStatus.MERGED
    guest.save(update_fields=["status", "updated_at"])
    return target


# --- Reading it --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CartLineView:
    line: CartLine
    variant: Variant
    unit_price: Decimal
    current_price: Decimal
    line_total: Decimal
    available: int

    @property
    def price_changed(self) -> bool:
        return self.unit_price != self.current_price

    @property
    def purchasable(self) -> bool:
        return (self.variant.is_active and self.variant.product.is_active
                and self.line.quantity <= self.available)


@dataclass(frozen=True)
class CartView:
    cart: Cart
    lines: list[CartLineView]
    totals: Totals

    @property
    def has_price_changes(self) -> bool:
        return any(line.price_changed for line in self.lines)


def view_cart(cart: Cart) -> CartView:
    """The cart with prices, availability and totals, in two queries."""
    lines = list(CartLine.objects.filter(cart=cart).order_by("created_at", "id"))
    variants = {
        v.pk: v for v in _variants_with_stock().filter(pk__in=[line.variant_id for line in lines])
    }
    views = []
    for line in lines:
        variant = variants[line.variant_id]
        views.append(CartLineView(
            line=line, variant=variant, unit_price=line.unit_price, current_price=variant.price,
            line_total=line_total(PricedLine(line.unit_price, line.quantity)),
            available=_can_buy(variant),
        ))
    totals = compute_totals([PricedLine(v.unit_price, v.line.quantity) for v in views])
    return CartView(cart=cart, lines=views, totals=totals)
