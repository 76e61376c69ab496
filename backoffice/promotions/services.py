"""Coupons: finding one by code, checking it against a cart, its discount, and redeeming it.

``evaluate`` is what a quote shows (no lock, no write); ``redeem`` is what checkout calls in its
transaction: it locks the coupon row, checks the limits again and counts the use, so a coupon
limited to N uses is redeemed exactly N times however many checkouts race for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone

from backoffice.money import currency_exponent, quantize
from backoffice.promotions.models import Coupon, CouponRedemption


class CouponError(Exception):
    """A coupon that cannot be used; ``code`` says why (for programs), the message for people."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DiscountLine:
    """A cart or order line as coupons see it."""

    key: int
    product_id: int
    category_ids: frozenset[int]  # the product's primary and extra categories
    amount: Decimal  # unit price x quantity


@dataclass(frozen=True)
class Discount:
    coupon: Coupon
    total: Decimal
    per_line: dict[int, Decimal]  # line key -> its share of ``total``


def find_coupon(code: str) -> Coupon:
    code = (code or "").strip()
    coupon = Coupon.objects.annotate(code_upper=Upper("code")).filter(
        code_upper=code.upper()
    ).first() if code else None
    if coupon is None:
        raise CouponError(f"There is no coupon {code!r}.", "coupon_unknown")
    return coupon


def _customer_uses(coupon: Coupon, user: AbstractBaseUser | None, email: str) -> int:
    """Uses by this customer: by account, and by the email (a guest who registers later, or an
    account checking out with an address it used as a guest, is the same customer)."""
    who = Q(email__iexact=email) if email else Q(pk__in=[])
    if user is not None and user.is_authenticated:
        who |= Q(user=user)
        if user.email:
            who |= Q(email__iexact=user.email)
    return CouponRedemption.objects.filter(who, coupon=coupon).count()


def check_usable(
    coupon: Coupon, *, subtotal: Decimal, user: AbstractBaseUser | None = None, email: str = "",
) -> None:
    """Raise ``CouponError`` saying why ``coupon`` cannot be used now by this customer."""
    now = timezone.now()
    if not coupon.is_active:
        raise CouponError(f"The coupon {coupon.code} is not active.", "coupon_inactive")
    if coupon.starts_at and now < coupon.starts_at:
        raise CouponError(f"The coupon {coupon.code} is not valid yet.", "coupon_not_started")
    if coupon.ends_at and now >= coupon.ends_at:
        raise CouponError(f"The coupon {coupon.code} has expired.", "coupon_expired")
    if coupon.usage_limit is not None and coupon.times_used >= coupon.usage_limit:
        raise CouponError(f"The coupon {coupon.code} has been used up.", "coupon_used_up")
    if coupon.minimum_subtotal is not None and subtotal < coupon.minimum_subtotal:
        raise CouponError(
            f"The coupon {coupon.code} needs a subtotal of at least {coupon.minimum_subtotal}.",
            "coupon_minimum_not_met",
        )
    limit = coupon.usage_limit_per_customer
    if limit is not None and (user is not None or email) and (
        _customer_uses(coupon, user, email) >= limit
    ):
        raise CouponError(f"You have already used the coupon {coupon.code}.", "coupon_already_used")


def _restriction(coupon: Coupon) -> tuple[set[int], set[int]] | None:
    """The categories (with everything below them) and products a coupon is limited to."""
    from backoffice.catalog.models import Category

    chosen = list(coupon.categories.all())
    category_ids = set(
        Category.objects.get_queryset_descendants(
            Category.objects.filter(pk__in=[c.pk for c in chosen]), include_self=True
        ).values_list("pk", flat=True)
    ) if chosen else set()
    product_ids = set(coupon.products.values_list("pk", flat=True))
    if not category_ids and not product_ids:
        return None
    return category_ids, product_ids


def discount_for(coupon: Coupon, lines: Sequence[DiscountLine]) -> Discount:
    """What ``coupon`` takes off ``lines``: on the lines it applies to, shared among them in
    proportion to their amounts (``_shares``), never more than they cost."""
    restriction = _restriction(coupon)
    eligible = [
        line for line in lines
        if restriction is None
        or line.product_id in restriction[1]
        or line.category_ids & restriction[0]
    ]
    base = sum((line.amount for line in eligible), Decimal("0"))
    if not eligible or base <= 0:
        raise CouponError(
            f"The coupon {coupon.code} does not apply to anything in your cart.",
            "coupon_not_applicable",
        )
    if coupon.kind == Coupon.Kind.PERCENTAGE:
        total = quantize(base * coupon.value / 100)
    else:
        total = quantize(min(coupon.value, base))
    return Discount(coupon=coupon, total=total, per_line=_shares(total, eligible))


def _shares(total: Decimal, lines: Sequence[DiscountLine]) -> dict[int, Decimal]:
    """``total`` split over ``lines`` in proportion to their amounts, in whole minor units that
    add up to ``total`` exactly (largest remainder first) and never exceed a line's amount."""
    unit = Decimal(1).scaleb(-currency_exponent())
    base = sum((line.amount for line in lines), Decimal("0"))
    exact = {line.key: total * line.amount / base for line in lines}
    shares = {key: (value / unit).to_integral_value(ROUND_FLOOR) * unit
              for key, value in exact.items()}
    amounts = {line.key: line.amount for line in lines}
    left = total - sum(shares.values(), Decimal("0"))
    by_remainder = sorted(lines, key=lambda line: (shares[line.key] - exact[line.key], line.key))
    while left > 0:
        moved = False
        for line in by_remainder:
            if left <= 0:
                break
            if shares[line.key] + unit <= amounts[line.key]:
                shares[line.key] += unit
                left -= unit
                moved = True
        if not moved:  # cannot happen while total <= base; never loop forever
            raise ValueError("a discount larger than the lines it applies to")
    return shares


def evaluate(
    code: str, lines: Sequence[DiscountLine], *, user: AbstractBaseUser | None = None,
    email: str = "",
) -> Discount:
    """The discount ``code`` gives these lines now, or ``CouponError`` saying why none."""
    coupon = find_coupon(code)
    subtotal = sum((line.amount for line in lines), Decimal("0"))
    check_usable(coupon, subtotal=subtotal, user=user, email=email)
    return discount_for(coupon, lines)


def redeem(
    code: str, lines: Sequence[DiscountLine], *, user: AbstractBaseUser | None, email: str,
) -> Discount:
    """In checkout's transaction: lock the coupon, check it again, count one use. The
    redemption row is written by ``record_redemption`` once the order exists."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("redeem() must run inside checkout's transaction")
    coupon = find_coupon(code)
    coupon = Coupon.objects.select_for_update().get(pk=coupon.pk)
    subtotal = sum((line.amount for line in lines), Decimal("0"))
    check_usable(coupon, subtotal=subtotal, user=user, email=email)
    discount = discount_for(coupon, lines)
    Coupon.objects.filter(pk=coupon.pk).update(times_used=F("times_used") + 1)
    return discount


def record_redemption(discount: Discount, *, order, user, email: str) -> None:
    CouponRedemption.objects.create(
        coupon=discount.coupon, order=order,
        user=user if user is not None and user.is_authenticated else None,
        email=email, discount=discount.total,
    )


def give_back(order) -> None:
    """An order that was never paid gives its coupon use back (cancelled or expired)."""
    redemption = CouponRedemption.objects.filter(order=order).first()
    if redemption is None:
        return
    Coupon.objects.filter(pk=redemption.coupon_id, times_used__gt=0).update(
        times_used=F("times_used") - 1
    )
    redemption.delete()
