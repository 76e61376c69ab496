"""What the rest of the back office asks of plugins: providers by code, shipping rates."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from backoffice.money import quantize
from backoffice.plugin_host.errors import (
    NoShippingRate,
    PluginConfigError,
    ShippingRateError,
    ShippingUnavailable,
    UnknownProvider,
)
from backoffice.plugin_host.loading import get_plugin_host
from backoffice.plugin_host.protocols import (
    DashboardWidget,
    NotificationChannel,
    PaymentProvider,
    ScheduledJob,
    ShippingMethod,
    ShippingRate,
    ShippingRequest,
)


@dataclass(frozen=True)
class Bound:
    """A provider with the plugin it came from and that plugin's effective settings."""

    plugin: str
    provider: Any
    config: dict[str, Any]


def _by_code(hook: str, code: str) -> Bound:
    host = get_plugin_host()
    for plugin, provider in host.collect(hook):
        if provider.code == code:
            resolved = host.config(plugin)
            if not resolved.is_complete:
                errors = {**{name: "required" for name in resolved.missing}, **resolved.errors}
                raise PluginConfigError(plugin, errors)
            return Bound(plugin=plugin, provider=provider, config=resolved.values)
    raise UnknownProvider(f"no active plugin provides {code!r}")


def payment_providers() -> list[PaymentProvider]:
    """The payment providers of the active plugins (what checkout may offer)."""
    return [provider for _, provider in get_plugin_host().collect("register_payment_providers")]


def payment_provider(code: str) -> Bound:
    """The provider ``code`` with its settings; ``UnknownProvider`` or ``PluginConfigError``."""
    return _by_code("register_payment_providers", code)


def notification_channels() -> list[NotificationChannel]:
    return [c for _, c in get_plugin_host().collect("register_notification_channels")]


def notification_channel(code: str) -> Bound:
    return _by_code("register_notification_channels", code)


def shipping_methods() -> list[ShippingMethod]:
    return [method for _, method in get_plugin_host().collect("register_shipping_methods")]


def quote_shipping(*, method_code: str, request: ShippingRequest) -> ShippingRate:
    """The rate of one shipping method for ``request``, decided by the plugins.

    Raises ``UnknownProvider`` (no such method), ``ShippingUnavailable`` (the plugin said it
    cannot ship this), ``NoShippingRate`` (no plugin answered) or ``ShippingRateError`` (a plugin
    failed). There is no default rate.
    """
    method = next((m for m in shipping_methods() if m.code == method_code), None)
    if method is None:
        raise UnknownProvider(f"no active plugin offers the shipping method {method_code!r}")
    try:
        amount = get_plugin_host().decide(
            "shipping_rate", method_code=method_code, request=request
        )
    except ShippingUnavailable:
        raise
    except Exception as exc:
        raise ShippingRateError(f"deciding the rate of {method_code!r} failed: {exc}") from exc
    if amount is None:
        raise NoShippingRate(f"no plugin gave a rate for {method_code!r}")
    if not isinstance(amount, Decimal | int) or amount < 0:
        raise ShippingRateError(f"a plugin returned {amount!r} as the rate of {method_code!r}")
    return ShippingRate(
        method_code=method_code,
        amount=quantize(amount, request.currency),
        currency=request.currency,
        label=method.name,
    )


def dashboard_widgets() -> list[DashboardWidget]:
    return [widget for _, widget in get_plugin_host().collect("register_dashboard_widgets")]


def scheduled_jobs() -> list[tuple[str, ScheduledJob]]:
    """Every active plugin's scheduled jobs, with the plugin's name."""
    return get_plugin_host().collect("register_schedules")


def plan_plugin_config(
    *, identifier: str, stored: dict[str, Any], changes: dict[str, Any], active: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply ``changes`` to ``stored`` settings; return the new settings and any errors.

    A secret given as ``None`` keeps its stored value; any other field given as ``None`` or
    ``""`` is cleared (so its default applies again), and so is a secret given as ``""``.
    Activating with a required setting missing is an error. ``stored`` may hold encrypted
    secrets and the new settings may hold plain ones: ``update_plugin_config`` encrypts them.
    """
    host = get_plugin_host()
    fields = {f.name: f for f in host.plugins[identifier].config_fields}
    new = dict(stored)
    for name, value in changes.items():
        if value is None and fields[name].is_secret:
            continue
        if value in (None, ""):
            new.pop(name, None)
        else:
            new[name] = value if isinstance(value, bool) else str(value)
    resolved = host.config(identifier, stored=new)
    errors = dict(resolved.errors)
    if active:
        errors.update({name: "required to activate the plugin" for name in resolved.missing})
    return new, errors


def update_plugin_config(
    *, identifier: str, active: bool, changes: dict[str, Any], user: Any = None,
    actor: Any = None,
) -> Any:
    """Save a plugin's settings and on/off state; ``PluginConfigError`` (nothing saved) when a
    value is invalid or the plugin would be active with required settings missing. Secret
    settings are stored encrypted (``backoffice.crypto``).

    ``actor`` (by default ``user``, else the system) needs ``plugins.manage_plugins``. A change
    is written to the audit trail with the names of the settings changed, never their values
    (secret or not: a setting may hold what only looks harmless)."""
    from django.db import transaction

    from backoffice.audit.models import AuditAction
    from backoffice.audit.services import record
    from backoffice.inventory.services import SYSTEM, Actor
    from backoffice.permissions import MANAGE_PLUGINS, require
    from backoffice.plugin_host.config import seal_settings
    from backoffice.plugin_host.models import PluginConfig

    if actor is None:
        actor = Actor(user=user) if getattr(user, "is_authenticated", False) else SYSTEM
    require(actor, MANAGE_PLUGINS)
    if user is None:
        user = actor.user
    with transaction.atomic():
        row, _ = PluginConfig.objects.select_for_update().get_or_create(identifier=identifier)
        new, errors = plan_plugin_config(
            identifier=identifier, stored=row.settings, changes=changes, active=active
        )
        if errors:
            raise PluginConfigError(identifier, errors)
        was_active = row.active
        fields = get_plugin_host().plugins[identifier].config_fields
        # Sealed secrets kept as they are compare equal; a secret entered again counts as set.
        changed = [f for f in fields if new.get(f.name) != (row.settings or {}).get(f.name)]
        row.settings = seal_settings(fields, new)
        row.active = active
        row.updated_by = user if getattr(user, "is_authenticated", False) else None
        row.save()
        if changed or was_active != active:
            parts = []
            if was_active != active:
                parts.append("Switched on." if active else "Switched off.")
            if changed:
                parts.append("Settings changed: " + ", ".join(
                    f.name + (" (secret)" if f.is_secret else "") for f in changed) + ".")
            action = (AuditAction.PLUGIN_CHANGED if was_active == active
                      else AuditAction.PLUGIN_ACTIVATED if active
                      else AuditAction.PLUGIN_DEACTIVATED)
            record(actor, action, row, " ".join(parts),
                   data={"settings": [f.name for f in changed if not f.is_secret],
                         "secrets": [f.name for f in changed if f.is_secret],
                         "active": active})
        if was_active != active:
            from backoffice.schedules import sync_schedules

            # The plugin's own scheduled jobs come and go with it.
            transaction.on_commit(sync_schedules)
    return row


def activate_plugins(identifiers: list[str], *, actor: Any = None) -> list[str]:
    """Switch installed plugins on with their current settings; returns those switched on.

    Raises ``PluginConfigError`` for a plugin whose required settings are missing. ``actor``
    (None: the system) needs ``plugins.manage_plugins``.
    """
    from backoffice.plugin_host.config import sync_plugin_configs
    from backoffice.plugin_host.models import PluginConfig

    sync_plugin_configs()
    host = get_plugin_host()
    inactive = set(
        PluginConfig.objects.filter(identifier__in=identifiers, active=False)
        .values_list("identifier", flat=True)
    )
    switched = [name for name in identifiers if name in inactive and name in host.plugins]
    for name in switched:
        update_plugin_config(identifier=name, active=True, changes={}, actor=actor)
    return switched
