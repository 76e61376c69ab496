"""Phone numbers in E.164 (``+254712345678``), the one form SMS providers and our rows take.

``0712 345 678``, ``254712345678`` and ``+254712345678`` are one number in a Kenyan store: a
number without a country code is read in the store's country (``STORE_COUNTRY``).
"""

from __future__ import annotations

import phonenumbers
from django.conf import settings


class InvalidPhoneNumber(ValueError):
    pass


def to_e164(raw: str, country: str | None = None) -> str:
    """``raw`` as ``+<country code><number>``; ``InvalidPhoneNumber`` with a message a customer
    understands when it is not a possible number."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber("Give a phone number.")
    region = (country or settings.STORE_COUNTRY or "").upper() or None
    candidates = [text]
    digits = "".join(ch for ch in text if ch.isdigit())
    if not text.startswith(("+", "0")) and len(digits) > 9:
        # "254712345678": a country code written without its plus.
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    where = f" in {region}" if region else ""
    raise InvalidPhoneNumber(
        f"{text!r} is not a valid phone number{where}; write it with its country code, "
        "e.g. +254712345678."
    )


def e164_or_blank(raw: str, country: str | None = None) -> str:
    """``to_e164``, or "" when ``raw`` is empty or not a valid number (a number typed at
    checkout years ago must not stop an order's messages: it just gets no SMS)."""
    try:
        return to_e164(raw, country)
    except InvalidPhoneNumber:
        return ""
