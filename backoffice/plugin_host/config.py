"""Plugin settings: declared by the plugin, stored in ``PluginConfig``, overridden by the env.

A plugin declares ``config_fields = [ConfigField(...), ...]``. The effective value of a field is,
in order: the environment variable (``<PLUGIN>_<FIELD>`` upper-cased, or the field's ``env``),
the value saved in the admin, the field's default. Secret fields are write-only in the admin and
encrypted at rest: ``seal_settings`` encrypts them before they are stored, ``resolve_config``
decrypts them (``backoffice.crypto``); plain values stored before encryption are still read.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import urlsplit

from backoffice import crypto
from backoffice.plugin_host.errors import PluginConfigError

logger = logging.getLogger(__name__)

FieldKind = Literal["str", "text", "secret", "int", "bool", "decimal", "url", "choice"]
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ConfigField:
    """One setting a plugin needs, shown as a form field in the admin."""

    name: str
    label: str
    kind: FieldKind = "str"
    required: bool = False
    default: Any = None
    help_text: str = ""
    choices: Sequence[tuple[str, str]] = field(default_factory=tuple)
    env: str = ""

    @property
    def is_secret(self) -> bool:
        return self.kind == "secret"

    def env_name(self, plugin: str) -> str:
        return self.env or f"{plugin}_{self.name}".upper().replace("-", "_").replace(".", "_")

    @property
    def has_default(self) -> bool:
        return self.default is not None and self.default != ""


def seal_settings(fields: Sequence[ConfigField], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as they are stored: the secret fields' plain values encrypted
    (``{"encrypted": token}``); values already encrypted and the other fields as they are."""
    secret = {field_.name for field_ in fields if field_.is_secret}
    return {
        name: crypto.seal(str(value))
        if name in secret and value not in (None, "") and not crypto.is_sealed(value) else value
        for name, value in settings.items()
    }


def undecryptable_message(exc: Exception) -> str:
    """The message of a stored secret that ``crypto`` cannot open (never the value)."""
    return f"the saved value {exc}; enter it again, or restore the key"


def open_stored(plugin: str, name: str, value: Any) -> Any:
    """A stored value in plain form (decrypted when encrypted); ``DecryptionError`` names the
    plugin and the field, never the value."""
    try:
        return crypto.unseal(value)
    except crypto.DecryptionError as exc:
        raise crypto.DecryptionError(
            f"plugin {plugin!r}, setting {name!r}: {undecryptable_message(exc)}"
        ) from None


def coerce(field_: ConfigField, raw: Any) -> Any:
    """Turn a stored or environment value into the field's type; ValueError when it can't."""
    if raw is None or raw == "":
        return None
    if field_.kind == "int":
        return int(raw)
    if field_.kind == "bool":
        return raw if isinstance(raw, bool) else str(raw).strip().lower() in _TRUE
    if field_.kind == "decimal":
        if isinstance(raw, float):
            raise ValueError("a decimal setting must not be a float")
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise ValueError(f"{raw!r} is not a number") from None
        if not value.is_finite():
            raise ValueError(f"{raw!r} is not a number")
        return value
    if field_.kind == "choice":
        allowed = {key for key, _ in field_.choices}
        if str(raw) not in allowed:
            raise ValueError(f"{raw!r} is not one of {sorted(allowed)}")
        return str(raw)
    if field_.kind == "url":
        text = str(raw).strip()
        if not text.startswith(("https://", "http://")):
            raise ValueError(f"{text!r} is not an http(s) URL")
        return text
    return str(raw)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_base_url(raw: Any) -> str:
    """A provider's API base URL (``https://host[:port][/prefix]``), without a trailing slash.

    ValueError, with a message for the merchant, unless it is https; plain http is accepted on
    loopback only (127.0.0.1, ::1, localhost), for local fakes and tests. No user, query or
    fragment: credentials travel in headers, not in the address.
    """
    text = str(raw or "").strip()
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    # Messages never repeat a user, password, query or fragment: proxies are written
    # https://user:password@proxy, and these messages reach logs, checks and the admin.
    address = parts.netloc.rpartition("@")[2]
    shown = (repr(f"{parts.scheme}://{address}{parts.path}") if host
             else repr(text) if "@" not in text else "the address")
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{shown} is not an address like https://api.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{shown} must be a bare address, without a user, password, ?query "
                         "or #part")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(f"{shown} must use https (plain http only for 127.0.0.1 or "
                         "localhost, e.g. a local test server)")
    try:
        parts.port  # noqa: B018 - parsed on access
    except ValueError:
        raise ValueError(f"{shown} has an invalid port") from None
    return text.rstrip("/")


def api_base_errors(values: Mapping[str, Any], setting: str = "api_base") -> dict[str, str]:
    """``{setting: message}`` when a plugin's API base URL setting is given and not acceptable
    (``api_base_url``); empty when it is fine or not given. For a plugin's ``validate_config``."""
    if not values.get(setting):
        return {}
    try:
        api_base_url(values[setting])
    except ValueError as exc:
        return {setting: str(exc)}
    return {}


def configured_api_base(plugin: str, config: Mapping[str, Any], *, validate: Any,
                        default: str, setting: str = "api_base") -> str:
    """The API base a plugin calls: its checked setting, else ``default``. Raises
    ``PluginConfigError`` with ``validate(config)``'s problems first, before any request."""
    errors = validate(config)
    if errors:
        raise PluginConfigError(plugin, errors)
    return api_base_url(config[setting]) if config.get(setting) else default


@dataclass(frozen=True)
class ResolvedConfig:
    values: dict[str, Any]
    sources: dict[str, Literal["env", "admin", "default", "missing"]]
    errors: dict[str, str]

    @property
    def missing(self) -> list[str]:
        return [name for name, source in self.sources.items() if source == "missing"]

    @property
    def is_complete(self) -> bool:
        return not self.missing and not self.errors


def resolve_config(
    plugin: str,
    fields: Sequence[ConfigField],
    stored: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> ResolvedConfig:
    """The effective settings of ``plugin``: environment, then stored values, then defaults.

    ``stored`` is what ``PluginConfig.settings`` holds: encrypted secrets are decrypted here. One
    that cannot be (the key it was encrypted with is gone) is an error of its field.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field_ in fields:
        env_value = environ.get(field_.env_name(plugin))
        if env_value not in (None, ""):
            raw, source = env_value, "env"
        elif stored.get(field_.name) not in (None, ""):
            raw, source = stored[field_.name], "admin"
            if crypto.is_sealed(raw):
                try:
                    raw = crypto.unseal(raw)
                except crypto.DecryptionError as exc:
                    logger.error("plugin %s: the stored setting %s %s", plugin, field_.name, exc)
                    errors[field_.name] = undecryptable_message(exc)
                    values[field_.name] = None
                    sources[field_.name] = source
                    continue
        elif field_.default is not None:
            raw, source = field_.default, "default"
        else:
            raw, source = None, "missing" if field_.required else "default"
        try:
            values[field_.name] = coerce(field_, raw)
        except (ValueError, TypeError) as exc:
            errors[field_.name] = str(exc)
            values[field_.name] = None
        sources[field_.name] = source
    return ResolvedConfig(values=values, sources=sources, errors=errors)


def sync_plugin_configs(using: str = "default") -> list[str]:
    """Make sure every loaded plugin has a ``PluginConfig`` row; return the names added.

    New rows start inactive: a merchant turns a plugin on in the admin, where missing settings
    are caught. Rows of plugins no longer installed are kept (their settings survive a reinstall).
    """
    from django.db import DatabaseError

    from backoffice.plugin_host.loading import get_plugin_host, plugin_rows_changed
    from backoffice.plugin_host.models import PluginConfig

    host = get_plugin_host()
    try:
        existing = set(PluginConfig.objects.using(using).values_list("identifier", flat=True))
    except DatabaseError:  # the table does not exist yet (migrating an older database)
        return []
    added = [name for name in host.plugins if name not in existing]
    PluginConfig.objects.using(using).bulk_create(
        [PluginConfig(identifier=name, active=False) for name in added]
    )
    if added:
        plugin_rows_changed()  # no signal for a bulk insert
    return added
