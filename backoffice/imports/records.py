"""What a format adapter hands the import engine: products with variants, plus row problems.

Adapters only translate columns into these records and cell problems into ``RowProblem`` rows;
the engine (``services``) matches them against the database and decides what to write.
``values`` dicts hold only the model fields the file actually carries, so a column a format does
not have never overwrites what is in the database.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from django.utils.text import slugify

from backoffice.money import currency_exponent

MAX_TEXT_LENGTH = 100_000  # a description longer than this is a mistake, not a product


@dataclass(slots=True)
class RowProblem:
    row: int  # spreadsheet row number (header = 1); 0 for the file as a whole
    column: str
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "message": self.message}


class Problems:
    """Row errors and warnings collected while reading a file."""

    def __init__(self) -> None:
        self.errors: list[RowProblem] = []
        self.warnings: list[RowProblem] = []
        self.skipped_rows = 0

    def error(self, row: int, column: str, message: str) -> None:
        self.errors.append(RowProblem(row, column, message))

    def warn(self, row: int, column: str, message: str, *, skipped: bool = False) -> None:
        self.warnings.append(RowProblem(row, column, message))
        self.skipped_rows += skipped


@dataclass(slots=True)
class VariantRecord:
    row: int
    sku: str
    values: dict = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)  # warehouse code -> quantity on hand
    sku_column: str = "sku"


@dataclass(slots=True)
class ProductRecord:
    row: int
    handle: str
    values: dict = field(default_factory=dict)
    category: tuple[str, ...] | None = None  # a path of names; None: leave as it is
    clear_category: bool = False
    extra_categories: list[tuple[str, ...]] | None = None
    images: list[tuple[str, str]] | None = None  # (url, alt text); None: leave as they are
    variants: list[VariantRecord] = field(default_factory=list)
    category_column: str = "category"

    def add_image(self, url: str, alt: str = "") -> None:
        if self.images is None:
            self.images = []
        if url and all(existing != url for existing, _ in self.images):
            self.images.append((url, alt))


# --- Cell parsers: each raises ValueError with the message the merchant sees --------------------

_QUANTA = {places: Decimal(1).scaleb(-places) for places in range(5)}
_CENTS = Decimal("0.01")
_MAX_PRICE = Decimal(10) ** 12  # the money columns hold 12 digits before the point
_AMOUNT = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")
_TRUE = {"1", "true", "yes", "y", "on", "published", "active"}
_FALSE = {"0", "false", "no", "n", "off", "-1", "draft", "unpublished"}


def parse_money(text: str, places: int | None = None) -> Decimal:
    """A price as Decimal in the store currency. More decimals than the currency has are refused
    (rounding a price silently is worse than asking), trailing zeros are fine. ``places``: the
    currency's exponent (the store currency's when not given)."""
    raw = text.strip()
    if not _AMOUNT.match(raw):
        raise ValueError(f"{raw!r} is not a price (use digits and a '.' decimal point, e.g. 19.99)")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a price") from None
    if value < 0:
        raise ValueError(f"{raw} is negative; prices cannot be below 0")
    if places is None:
        places = currency_exponent()
    if value != value.quantize(_QUANTA[places]):
        raise ValueError(f"{raw} has more than {places} decimal places for the store currency")
    if value >= _MAX_PRICE:
        raise ValueError(f"{raw} is too large for a price")
    return value.quantize(_CENTS)


def parse_bool(text: str) -> bool:
    raw = text.strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{text!r} is not yes/no (use TRUE/FALSE, 1/0 or yes/no)")


def parse_int(text: str, *, what: str = "number") -> int:
    raw = text.strip()
    if raw.isascii() and raw.isdigit():  # most cells: no Decimal needed
        return int(raw)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a whole {what}") from None
    if value != value.to_integral_value():
        raise ValueError(f"{raw!r} is not a whole {what}")
    return int(value)


WEIGHT_UNITS_IN_GRAMS = {
    "g": Decimal(1),
    "kg": Decimal(1000),
    "lb": Decimal("453.59237"),
    "lbs": Decimal("453.59237"),
    "oz": Decimal("28.349523125"),
}


def parse_weight_grams(text: str, unit: str = "g") -> int:
    raw = text.strip()
    factor = WEIGHT_UNITS_IN_GRAMS.get(unit.strip().lower())
    if factor is None:
        raise ValueError(f"unknown weight unit {unit!r} (use g, kg, lb or oz)")
    if factor == 1 and raw.isascii() and raw.isdigit():  # whole grams: no Decimal needed
        return int(raw)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a weight") from None
    if value < 0:
        raise ValueError(f"{raw} is negative; a weight cannot be")
    return int((value * factor).to_integral_value())


def parse_attributes(text: str) -> dict:
    """A JSON object, or ``key:value; key:value``."""
    raw = text.strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        return value
    result = {}
    for part in raw.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"{part.strip()!r} is not 'name: value'")
        result[key.strip()] = value.strip()
    return result


def split_list(text: str, separator: str) -> list[str]:
    items = []
    for item in text.split(separator):
        item = item.strip()
        if item and item not in items:
            items.append(item)
    return items


@lru_cache(maxsize=4096)  # a file names the same few hundred paths again and again
def split_category_path(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(">"))


def make_slug(text: str, fallback: str = "item") -> str:
    return slugify(text, allow_unicode=True) or fallback
