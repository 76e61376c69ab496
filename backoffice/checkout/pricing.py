"""Totals: computed here once, for the cart and (later) for the order checkout places.

Every amount is ``Decimal`` in the store currency, rounded to the currency's exponent per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from backoffice.money import quantize, store_currency


@dataclass(frozen=True)
class PricedLine:
    unit_price: Decimal
    quantity: int


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    item_count: int
    currency: str


def line_total(line: PricedLine) -> Decimal:
    return quantize(line.unit_price * line.quantity)


def compute_totals(lines: Sequence[PricedLine]) -> Totals:
    """The subtotal and item count of ``lines`` (discounts and shipping join with checkout)."""
    subtotal = sum((line_total(line) for line in lines), Decimal("0"))
    return Totals(
        subtotal=quantize(subtotal),
        item_count=sum(line.quantity for line in lines),
        currency=store_currency(),
    )
