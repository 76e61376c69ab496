"""Opaque page cursors for keyset paging (the storefront's listing, the integration API's
catalog read-back): a few JSON values, URL-safe base64 without padding. Whoever reads one checks
what it holds; a cursor that does not decode is a ``ValueError``."""

from __future__ import annotations

import binascii
import json
from base64 import urlsafe_b64decode, urlsafe_b64encode


def encode(values: list) -> str:
    raw = json.dumps(values, separators=(",", ":"))
    return urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str) -> list:
    try:
        values = json.loads(urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except (UnicodeError, binascii.Error, RecursionError) as exc:
        raise ValueError("not a cursor") from exc
    if not isinstance(values, list):
        raise ValueError("not a cursor")
    return values
