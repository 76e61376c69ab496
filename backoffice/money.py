"""Money: ``Decimal`` amounts in the store currency, never ``float``.

Amounts are stored with two decimal places (``MONEY_FIELD_KWARGS``); currencies with another
exponent are rounded to their own (``currency_exponent``). Providers get minor units from
``to_minor_units``. People read amounts written by ``format_money`` (the admin), programs by
``money_text`` (the API): both always with the currency's decimals.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.conf import settings

MONEY_MAX_DIGITS = 14
MONEY_DECIMAL_PLACES = 2
MONEY_FIELD_KWARGS = {"max_digits": MONEY_MAX_DIGITS, "decimal_places": MONEY_DECIMAL_PLACES}

# ISO 4217 currencies whose minor unit is not 1/100.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}


def store_currency() -> str:
    return settings.STORE_CURRENCY


def currency_exponent(currency: str | None = None) -> int:
    """Decimal places of ``currency`` (the store's by default); 2 unless ISO says otherwise."""
    return _EXPONENTS.get((currency or store_currency()).upper(), 2)


def quantize(amount: Decimal | int | str, currency: str | None = None) -> Decimal:
    """Round ``amount`` half-up to the currency's exponent. Floats are refused."""
    if isinstance(amount, float):
        raise TypeError("money must not be a float; pass a Decimal, an int or a string")
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"not an amount of money: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount of money: {amount!r}")
    places = Decimal(1).scaleb(-currency_exponent(currency))
    return value.quantize(places, rounding=ROUND_HALF_UP)


def to_minor_units(amount: Decimal, currency: str | None = None) -> int:
    """The integer providers want: cents for USD, whole yen for JPY."""
    exponent = currency_exponent(currency)
    return int(quantize(amount, currency).scaleb(exponent))


def money_text(amount: Decimal | int | str, currency: str | None = None) -> str:
    """The amount as a plain decimal string with exactly the currency's decimals: ``"0.00"``,
    ``"1250.00"``, ``"80"`` for JPY. What the API answers."""
    return f"{quantize(amount, currency):f}"


def format_money(amount: Decimal | int | str | None, currency: str | None = None) -> str:
    """``USD 1,250.00``, ``JPY 80``: the amount as the admin shows it, in ``currency`` (the
    store's by default) with its decimals; an empty string for no amount."""
    if amount is None or amount == "":
        return ""
    code = (currency or store_currency()).upper()
    return f"{code} {quantize(amount, code):,}"
