"""Checkout: a cart becomes an order, in one transaction.

``quote`` shows what an order would cost (shipping from the shipping plugins, the coupon's
discount) without writing anything. ``place_order`` does it for real:

1. an ``Idempotency-Key`` seen before returns its order (a unique constraint settles races);
2. the shipping rate is asked of the plugins before any row is locked;
3. in one transaction: the cart row is locked (a second checkout of the same cart waits, then
   finds it ordered), its lines are checked (still for sale, price unchanged), stock is
   allocated per warehouse with the rows locked in primary-key order (``OutOfStock`` names
   every short line; a variant whose stock is not tracked allocates nothing, a backorder one
   what is available and backorders the rest), the coupon row is locked and its use counted,
   and the order is written with snapshots of addresses, lines and totals, an ``OrderEvent``
   and the ``order_placed`` plugin event (delivered after commit).

No payment provider is called here: payment starts once the order exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import ngettext

from backoffice.catalog.models import Product, Variant
from backoffice.checkout.models import Cart, CartLine, CartStatus
from backoffice.checkout.pricing import PricedLine, compute_totals, line_total
from backoffice.inventory import services as inventory
from backoffice.inventory.services import Actor
from backoffice.money import format_money, quantize, store_currency
from backoffice.notifications import services as notifications
from backoffice.notifications.phones import InvalidPhoneNumber, to_e164
from backoffice.orders.models import Allocation, Order, OrderEvent, OrderLine
from backoffice.plugin_host import services as plugins
from backoffice.plugin_host.errors import PluginError, ShippingUnavailable
from backoffice.plugin_host.events import emit_event
from backoffice.plugin_host.protocols import ShippingRequest
from backoffice.promotions import services as coupons

ADDRESS_FIELDS = (
    "first_name", "last_name", "company", "line1", "line2", "city", "region", "postal_code",
    "country", "phone",
)


class CheckoutError(Exception):
    """Checkout refused; nothing was written. ``code`` is for programs; ``lines`` names the cart
    lines at fault (``sku``, and ``available`` or ``unit_price``/``current_price``)."""

    def __init__(self, message: str, code: str, lines: list[dict] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.lines = lines or []


@dataclass(frozen=True)
class CheckoutRequest:
    shipping_address: Mapping[str, Any]
    shipping_method: str
    billing_address: Mapping[str, Any] | None = None
    email: str = ""
    phone: str = ""
    coupon_code: str = ""
    payment_method: str = ""
    customer_note: str = ""


@dataclass(frozen=True)
class Quote:
    lines: list[tuple[CartLine, Variant]]
    subtotal: Decimal
    discount: coupons.Discount | None
    shipping: Decimal
    shipping_label: str
    total: Decimal
    currency: str
    item_count: int
    weight_grams: int

    @property
    def discount_total(self) -> Decimal:
        return self.discount.total if self.discount else Decimal("0")


def _address(data: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(data.get(name) or "").strip() for name in ADDRESS_FIELDS}


def _lines(cart: Cart) -> QuerySet[CartLine]:
    """The cart's lines with their variants and products, in variant order."""
    return (CartLine.objects.filter(cart=cart).select_related("variant__product")
            .order_by("variant_id"))


def _cart_lines(cart: Cart) -> list[tuple[CartLine, Variant]]:
    """The cart's lines with their variants and products, as they are now: one query."""
    return [(line, line.variant) for line in _lines(cart)]


def _locked_cart(cart: Cart) -> tuple[Cart, list[tuple[CartLine, Variant]]]:
    """The cart row, locked, and its lines as they are now: one query (the lines joined to the
    cart, which alone is locked: ``FOR UPDATE OF``). A racing checkout of the same cart waits
    here and then reads the cart as that one committed it (PostgreSQL reads a locked row again
    once its lock is released). A cart with no line is locked by itself."""
    lines = list(_lines(cart).select_related("cart").select_for_update(of=("cart",)))
    if not lines:
        return Cart.objects.select_for_update().get(pk=cart.pk), []
    return lines[0].cart, [(line, line.variant) for line in lines]


def _check_lines(lines: list[tuple[CartLine, Variant]]) -> None:
    if not lines:
        raise CheckoutError("The cart is empty.", "empty_cart")
    gone = [
        {"sku": variant.sku, "available": 0, "requested": line.quantity}
        for line, variant in lines if not (variant.is_active and variant.product.is_active)
    ]
    if gone:
        raise CheckoutError("Some products are no longer for sale.", "unavailable", gone)
    changed = [
        {"sku": variant.sku, "unit_price": str(line.unit_price),
         "current_price": str(variant.price)}
        for line, variant in lines if line.unit_price != variant.price
    ]
    if changed:
        raise CheckoutError(
            "Some prices changed since they were added: accept the new prices first.",
            "price_changed", changed,
        )


def _category_ids(products: list[Product]) -> dict[int, frozenset[int]]:
    extra: dict[int, set[int]] = {}
    through = Product.extra_categories.through
    for product_id, category_id in through.objects.filter(
        product_id__in=[p.pk for p in products]
    ).values_list("product_id", "category_id"):
        extra.setdefault(product_id, set()).add(category_id)
    return {
        p.pk: frozenset(extra.get(p.pk, set()) | ({p.category_id} if p.category_id else set()))
        for p in products
    }


def _discount_lines(lines: list[tuple[CartLine, Variant]]) -> list[coupons.DiscountLine]:
    categories = _category_ids([variant.product for _, variant in lines])
    return [
        coupons.DiscountLine(
            key=line.pk, product_id=variant.product_id,
            category_ids=categories[variant.product_id],
            amount=line_total(PricedLine(line.unit_price, line.quantity)),
        )
        for line, variant in lines
    ]


def _shipping(method: str, subtotal: Decimal, lines, address: Mapping[str, Any]):
    weight = sum((variant.weight_grams or 0) * line.quantity for line, variant in lines)
    try:
        return plugins.quote_shipping(method_code=method, request=ShippingRequest(
            subtotal=subtotal, currency=store_currency(),
            item_count=sum(line.quantity for line, _ in lines), weight_grams=weight,
            country=str(address.get("country") or "").upper(),
            postal_code=str(address.get("postal_code") or ""),
        ))
    except ShippingUnavailable as exc:
        raise CheckoutError(str(exc), "shipping_unavailable") from exc
    except plugins.UnknownProvider as exc:
        raise CheckoutError(f"There is no shipping method {method!r}.",
                            "unknown_shipping_method") from exc
    except PluginError as exc:
        raise CheckoutError(f"Shipping could not be priced: {exc}", "shipping_error") from exc


def _quote(cart_lines, request: CheckoutRequest, *, user, email: str, redeem: bool,
           priced: Quote | None = None) -> Quote:
    """The order's money. With ``priced`` (the quote made before any row was locked), its
    shipping rate is reused, so no shipping plugin is called while stock rows are locked."""
    totals = compute_totals([PricedLine(ln.unit_price, ln.quantity) for ln, _ in cart_lines])
    discount = None
    if request.coupon_code.strip():
        act = coupons.redeem if redeem else coupons.evaluate
        try:
            discount = act(request.coupon_code, _discount_lines(cart_lines), user=user,
                           email=email)
        except coupons.CouponError as exc:
            raise CheckoutError(str(exc), exc.code) from exc
    discounted = totals.subtotal - (discount.total if discount else 0)
    if priced is None:
        rate = _shipping(request.shipping_method, discounted, cart_lines,
                         request.shipping_address)
        shipping, label = rate.amount, rate.label
    else:
        shipping, label = priced.shipping, priced.shipping_label
    return Quote(
        lines=cart_lines, subtotal=totals.subtotal, discount=discount, shipping=shipping,
        shipping_label=label, total=quantize(discounted + shipping),
        currency=totals.currency, item_count=totals.item_count,
        weight_grams=sum((v.weight_grams or 0) * ln.quantity for ln, v in cart_lines),
    )


def _customer(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    return user if user is not None and user.is_authenticated else None


def _email(request: CheckoutRequest, user) -> str:
    email = (request.email or (user.email if user is not None else "")).strip()
    if not email:
        raise CheckoutError("An email is needed to check out as a guest.", "email_required")
    try:
        validate_email(email)
    except ValidationError:
        raise CheckoutError("Enter a valid email address.", "invalid_email") from None
    return email


def _phone(raw: str) -> str:
    """The order's phone in E.164 (SMS and M-Pesa need it); "" when none was given."""
    if not (raw or "").strip():
        return ""
    try:
        return to_e164(raw)
    except InvalidPhoneNumber as exc:
        raise CheckoutError(str(exc), "invalid_phone") from None


@dataclass(frozen=True)
class CartSummary:
    subtotal: Decimal
    item_count: int
    weight_grams: int


def cart_summary(cart: Cart) -> CartSummary:
    """What a shipping rate depends on, for a cart as it is."""
    lines = _cart_lines(cart)
    totals = compute_totals([PricedLine(ln.unit_price, ln.quantity) for ln, _ in lines])
    return CartSummary(totals.subtotal, totals.item_count,
                       sum((v.weight_grams or 0) * ln.quantity for ln, v in lines))


def quote(cart: Cart, request: CheckoutRequest, *, user: AbstractBaseUser | None = None) -> Quote:
    """What placing the order would cost now (nothing is locked or written)."""
    user = _customer(user)
    lines = _cart_lines(cart)
    _check_lines(lines)
    return _quote(lines, request, user=user, email=request.email or getattr(user, "email", ""),
                  redeem=False)


def _payment_due(method: str):
    if not method:
        return timezone.now() + timedelta(minutes=settings.ORDER_PAYMENT_WINDOW_MINUTES)
    provider = next((p for p in plugins.payment_providers() if p.code == method), None)
    if provider is None:
        raise CheckoutError(f"There is no payment method {method!r}.", "unknown_payment_method")
    if not getattr(provider, "unpaid_orders_expire", True):
        return None  # e.g. cash on delivery: paid when it arrives
    return timezone.now() + timedelta(minutes=settings.ORDER_PAYMENT_WINDOW_MINUTES)


def _same_owner(order: Order, cart: Cart, user) -> bool:
    if user is not None:
        return order.user_id == user.pk
    return order.user_id is None and order.cart_id == cart.pk


def _replay(key: str, cart: Cart, user) -> Order | None:
    order = Order.objects.filter(idempotency_key=key).first()
    if order is None:
        return None
    if not _same_owner(order, cart, user):
        raise CheckoutError("This Idempotency-Key was used for another order.",
                            "idempotency_key_reused")
    return order


def place_order(
    cart: Cart, request: CheckoutRequest, *, user: AbstractBaseUser | None = None,
    idempotency_key: str, actor_label: str = "",
) -> tuple[Order, bool]:
    """Turn ``cart`` into an order; returns ``(order, created)``. The same ``idempotency_key``
    returns the order it made the first time (``created`` False), even when two requests race.
    A created order comes with its ``lines`` and ``shipments`` (none) prefetched."""
    user = _customer(user)
    key = idempotency_key.strip()
    if not key:
        raise CheckoutError("An Idempotency-Key is needed.", "idempotency_key_required")
    existing = _replay(key, cart, user)
    if existing is not None:
        return existing, False
    email = _email(request, user)
    payment_due = _payment_due(request.payment_method)
    shipping_address = _address(request.shipping_address)
    billing_address = _address(request.billing_address or request.shipping_address)
    request = replace(request, phone=_phone(request.phone or shipping_address.get("phone", "")))
    # Priced outside the lock: shipping plugins may be slow; checked again inside.
    early = quote(cart, request, user=user)
    try:
        with transaction.atomic():
            order = _place(cart, request, user=user, email=email, key=key,
                           payment_due=payment_due, early=early,
                           addresses=(shipping_address, billing_address),
                           actor=Actor(user=user, label=actor_label or email))
    except _Replayed as replayed:  # a racing request with the key ordered this cart first
        return replayed.order, False
    except IntegrityError:
        # The key was taken while we worked (a racing request with it committed first).
        existing = _replay(key, cart, user)
        if existing is None:
            raise
        return existing, False
    return order, True


def _place(cart, request, *, user, email, key, payment_due, early: Quote, addresses, actor):
    locked, lines = _locked_cart(cart)
    if locked.status != CartStatus.ACTIVE:
        existing = _replay(key, cart, user)
        if existing is not None:
            raise _Replayed(existing)
        raise CheckoutError("This cart has already been ordered.", "cart_closed")
    _check_lines(lines)
    # Untracked variants are sold without touching stock rows (nothing to lock or allocate).
    wanted = {variant.pk: line.quantity for line, variant in lines if variant.track_inventory}
    backorder = {variant.pk for _, variant in lines
                 if variant.track_inventory and variant.allow_backorder}
    try:
        placements = inventory.allocate(wanted, actor=actor, reference=f"cart {cart.pk}",
                                        backorder=backorder)
    except inventory.OutOfStock as exc:
        short = [
            {"sku": variant.sku, "available": exc.available[variant.pk],
             "requested": line.quantity}
            for line, variant in lines if variant.pk in exc.available
        ]
        raise CheckoutError("Some products do not have enough stock left.", "insufficient_stock",
                            short) from exc
    final = _quote(lines, request, user=user, email=email, redeem=True, priced=early)
    # The early rate was asked for what the cart held then: anything a rate depends on that
    # moved since means the customer looks again.
    if (final.total, final.item_count, final.weight_grams) != (
        early.total, early.item_count, early.weight_grams
    ):
        raise CheckoutError("The total changed while checking out; look at it again.",
                            "total_changed")
    shipping_address, billing_address = addresses
    order = Order.objects.create(
        user=user, email=email, phone=(request.phone or shipping_address.get("phone", ""))[:32],
        currency=final.currency, subtotal=final.subtotal, discount_total=final.discount_total,
        shipping_total=final.shipping, total=final.total,
        shipping_method_code=request.shipping_method, shipping_method_name=final.shipping_label,
        shipping_address=shipping_address, billing_address=billing_address,
        coupon=final.discount.coupon if final.discount else None,
        coupon_code=final.discount.coupon.code if final.discount else "",
        payment_method=request.payment_method, payment_due_at=payment_due,
        # A method whose unpaid orders never expire (cash on delivery) ships before it is paid.
        pay_on_delivery=payment_due is None,
        customer_note=request.customer_note, idempotency_key=key, cart=cart,
    )
    order.number = str(settings.ORDER_NUMBER_START + order.pk)
    Order.objects.filter(pk=order.pk).update(number=order.number)
    shares = final.discount.per_line if final.discount else {}
    order_lines = OrderLine.objects.bulk_create([
        OrderLine(
            order=order, variant=variant, product_id_snapshot=variant.product_id,
            product_name=variant.product.name, variant_name=variant.name, sku=variant.sku,
            options=variant.option_values or {}, unit_price=line.unit_price,
            quantity=line.quantity, discount_amount=shares.get(line.pk, Decimal("0")),
            total=line_total(PricedLine(line.unit_price, line.quantity))
            - shares.get(line.pk, Decimal("0")),
        )
        for line, variant in lines
    ])
    if not all(ol.pk for ol in order_lines):  # backends that return no ids from bulk inserts
        order_lines = list(OrderLine.objects.filter(order=order))
    by_variant = {ol.variant_id: ol for ol in order_lines}
    _prefetched(order, lines=sorted(order_lines, key=lambda ol: ol.pk), shipments=[])
    Allocation.objects.bulk_create([
        Allocation(line=by_variant[p.variant_id], stock_id=p.stock_id, quantity=p.quantity)
        for p in placements
    ])
    if final.discount:
        coupons.record_redemption(final.discount, order=order, user=user, email=email)
    OrderEvent.objects.create(
        order=order, kind=OrderEvent.Kind.PLACED, actor_id=actor.user_id,
        actor_label=actor.label[:120], state=OrderEvent.State.ORDER, to_status=order.status,
        note=ngettext("Placed: %(count)d item, %(total)s.", "Placed: %(count)d items, %(total)s.",
                      final.item_count)
        % {"count": final.item_count, "total": format_money(final.total, final.currency)},
    )
    locked.status = CartStatus.ORDERED
    locked.save(update_fields=["status", "updated_at"])
    emit_event("order_placed", order_id=order.pk, order_number=order.number,
               total=str(order.total), currency=order.currency,
               customer=lambda: notifications.customer_of(order))
    notifications.order_placed(order)
    return order


def _prefetched(order: Order, **related: list) -> None:
    """Give ``order`` its related rows as ``prefetch_related`` would (what was just written,
    in the relation's order), so whoever shows it next reads nothing again; a filter on them
    still queries. Done as Django's prefetch does it: a queryset holding the rows."""
    for name, rows in related.items():
        queryset = getattr(order, name).get_queryset()
        queryset._result_cache = rows
        queryset._prefetch_done = True
        order._prefetched_objects_cache = {**getattr(order, "_prefetched_objects_cache", {}),
                                           name: queryset}


class _Replayed(Exception):
    def __init__(self, order: Order) -> None:
        self.order = order
