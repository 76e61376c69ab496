"""Encryption at rest for small secrets (plugin API keys, signing secrets), with Fernet.

Keys come from ``settings.SECRETS_ENCRYPTION_KEYS`` (the ``SECRETS_ENCRYPTION_KEYS`` environment
variable: Fernet keys, comma-separated). The first key encrypts; every key decrypts. To rotate,
put a new key first, run ``manage.py rotate_plugin_secrets`` (it re-encrypts every stored secret
with the first key), then drop the old key.

When ``SECRETS_ENCRYPTION_KEYS`` is empty, the key is derived from ``SECRET_KEY`` (and keys
derived from ``SECRET_KEY_FALLBACKS`` decrypt too), so development and tests need nothing; a
production deployment sets its own keys. Keys derived from ``SECRET_KEY`` always decrypt, so
moving from the derived key to your own only takes ``rotate_plugin_secrets``.

A stored secret is ``{"encrypted": "<Fernet token>"}`` (``seal``): a dict, which a plain value
typed in the admin can never be, so plain values stored before encryption are still read as they
are (``unseal``). Nothing here ever puts a secret or a key in an exception message or a log.
"""

from __future__ import annotations

import functools
from base64 import urlsafe_b64encode
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac

ENCRYPTED = "encrypted"
_DERIVATION_SALT = "backoffice.crypto.secrets-at-rest"
GENERATE_KEY_HINT = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class DecryptionError(Exception):
    """A stored secret cannot be decrypted with the configured keys (wrong or missing key, or
    a damaged value). The message never contains the value."""


def derived_key(secret_key: str) -> bytes:
    """The Fernet key derived from a Django ``SECRET_KEY`` (HMAC-SHA256 with a fixed salt)."""
    digest = salted_hmac(_DERIVATION_SALT, "fernet-key", secret=secret_key,
                         algorithm="sha256").digest()
    return urlsafe_b64encode(digest)


def configured_keys() -> list[str]:
    """The keys from ``SECRETS_ENCRYPTION_KEYS`` (a list, or one comma-separated string)."""
    raw = getattr(settings, "SECRETS_ENCRYPTION_KEYS", None) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    return [key.strip() for key in raw if key and key.strip()]


def key_problems() -> list[str]:
    """What is wrong with ``SECRETS_ENCRYPTION_KEYS`` (by position, never the key itself)."""
    problems = []
    for position, key in enumerate(configured_keys(), start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            problems.append(
                f"key {position} of SECRETS_ENCRYPTION_KEYS is not a Fernet key "
                "(32 bytes, url-safe base64)"
            )
    return problems


@functools.lru_cache(maxsize=8)
def _build(keys: tuple[str, ...], secret_key: str, fallbacks: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"Key {position} of SECRETS_ENCRYPTION_KEYS is not a Fernet key (32 bytes, "
                f"url-safe base64). Make one with: {GENERATE_KEY_HINT}"
            ) from None
    # Derived keys come last: they only encrypt when no key is configured.
    for secret in (secret_key, *fallbacks):
        if secret:
            fernets.append(Fernet(derived_key(secret)))
    if not fernets:
        raise ImproperlyConfigured("Set SECRETS_ENCRYPTION_KEYS or SECRET_KEY to store secrets.")
    return MultiFernet(fernets)


def _fernet() -> MultiFernet:
    return _build(
        tuple(configured_keys()),
        str(getattr(settings, "SECRET_KEY", "") or ""),
        tuple(str(key) for key in getattr(settings, "SECRET_KEY_FALLBACKS", ()) or ()),
    )


def encrypt(text: str) -> str:
    """``text`` encrypted with the first key: a Fernet token (ASCII)."""
    return _fernet().encrypt(str(text).encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The text of a token made by ``encrypt``, with any configured key; ``DecryptionError``."""
    try:
        return _fernet().decrypt(str(token).encode()).decode()
    except (InvalidToken, UnicodeError, ValueError, TypeError):
        raise DecryptionError(
            "cannot be decrypted with the configured keys (SECRETS_ENCRYPTION_KEYS, or "
            "SECRET_KEY when it is not set): the key it was encrypted with is missing"
        ) from None


def rotate(token: str) -> str:
    """``token`` encrypted again with the first key; ``DecryptionError`` if no key opens it."""
    try:
        return _fernet().rotate(str(token).encode()).decode("ascii")
    except (InvalidToken, UnicodeError, ValueError, TypeError):
        raise DecryptionError(
            "cannot be decrypted with the configured keys, so it cannot be re-encrypted"
        ) from None


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a stored secret in encrypted form."""
    return isinstance(value, dict) and set(value) == {ENCRYPTED} and isinstance(
        value[ENCRYPTED], str
    )


def seal(text: str) -> dict[str, str]:
    """The stored form of a secret: ``{"encrypted": token}``."""
    return {ENCRYPTED: encrypt(text)}


def unseal(value: Any) -> Any:
    """The plain value of a stored value: decrypted when sealed, as it is otherwise (a legacy
    plain value, or a setting that is not secret). ``DecryptionError`` when it cannot be."""
    return decrypt(value[ENCRYPTED]) if is_sealed(value) else value


def reseal(value: Any) -> dict[str, str]:
    """A stored secret encrypted with the first key: a sealed one rotated, a plain one sealed."""
    return {ENCRYPTED: rotate(value[ENCRYPTED])} if is_sealed(value) else seal(str(value))
