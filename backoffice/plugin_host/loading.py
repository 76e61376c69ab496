"""Finding, checking and calling plugins.

Plugins are found through the ``backoffice.plugins`` entry-point group, the bundled ones exactly
like a third-party package's. Each is checked before it is kept: it must declare a compatible
``hookspec_version`` and implement only hooks that exist (pluggy's ``check_pending``). A plugin
that fails a check is refused (not loaded) and the reason is kept for the ``plugins`` command, the
admin and a system check; the other plugins load as usual.

Whether a loaded plugin is *active* is the merchant's choice, stored in ``PluginConfig``; hooks
are only ever called on active plugins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy
from django.conf import settings
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from backoffice import hookspecs
from backoffice.plugin_host.config import ConfigField, ResolvedConfig, resolve_config
from backoffice.plugin_host.errors import PluginLoadError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "backoffice.plugins"

# What the plugins' rows said, kept for one request: a checkout asks which plugins are active
# and a plugin's settings several times (shipping methods, the rate, payment methods, the
# notification channels), and would read the same rows each time. Set at the request's start,
# dropped at its end and whenever a ``PluginConfig`` row is saved or deleted here; outside a
# request (jobs, commands) nothing is kept and every call reads. Another process's change is
# seen from this process's next request on.
_request_memo: ContextVar[dict | None] = ContextVar("plugin_rows", default=None)


def remember_for_this_request(**kwargs: Any) -> None:
    _request_memo.set({})


def forget_for_this_request(**kwargs: Any) -> None:
    _request_memo.set(None)


def plugin_rows_changed(**kwargs: Any) -> None:
    if _request_memo.get() is not None:
        _request_memo.set({})


@dataclass
class LoadedPlugin:
    name: str
    obj: Any
    version: str = ""
    distribution: str = ""
    label: str = ""
    description: str = ""
    config_fields: Sequence[ConfigField] = field(default_factory=tuple)
    hookspec_version: str = ""

    @property
    def hooks(self) -> list[str]:
        return sorted(
            name for name in dir(self.obj) if name in hookspecs.HOOK_NAMES
        )


def _check_version(name: str, obj: Any) -> str:
    declared = getattr(obj, "hookspec_version", None)
    if not declared:
        raise PluginLoadError(
            f"plugin {name!r} does not declare hookspec_version (e.g. "
            f"hookspec_version = \">={hookspecs.HOOKSPEC_VERSION},<2\")"
        )
    try:
        supported = SpecifierSet(declared)
    except InvalidSpecifier:
        raise PluginLoadError(
            f"plugin {name!r} declares an invalid hookspec_version {declared!r}"
        ) from None
    if Version(hookspecs.HOOKSPEC_VERSION) not in supported:
        raise PluginLoadError(
            f"plugin {name!r} supports hook specs {declared}, but this back office has "
            f"{hookspecs.HOOKSPEC_VERSION}: upgrade the plugin or pin a compatible back office"
        )
    return declared


class PluginHost:
    """The loaded plugins, their metadata, and the ways the platform calls them."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, LoadedPlugin] = {}
        self.refused: dict[str, str] = {}

    # --- loading -----------------------------------------------------------------------------

    def register(self, obj: Any, name: str, *, version: str = "", distribution: str = "") -> None:
        """Check and register one plugin; raise PluginLoadError (and keep nothing) if it fails."""
        if name in self.plugins:
            raise PluginLoadError(f"two plugins are named {name!r}")
        hookspec_version = _check_version(name, obj)
        try:
            self.pm.register(obj, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginLoadError(f"plugin {name!r} cannot be registered: {exc}") from exc
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(obj, name=name)
            raise PluginLoadError(f"plugin {name!r} implements an unknown hook: {exc}") from exc
        self.plugins[name] = LoadedPlugin(
            name=name,
            obj=obj,
            version=version or str(getattr(obj, "__version__", "")),
            distribution=distribution,
            label=getattr(obj, "label", "") or name.replace("_", " ").capitalize(),
            description=getattr(obj, "description", "") or (obj.__doc__ or "").strip(),
            config_fields=tuple(getattr(obj, "config_fields", ()) or ()),
            hookspec_version=hookspec_version,
        )

    def unregister(self, name: str) -> None:
        plugin = self.plugins.pop(name)
        self.pm.unregister(plugin.obj, name=name)

    def load_entry_points(self, allow: Iterable[str] = (), block: Iterable[str] = ()) -> None:
        allow, block = set(allow), set(block)
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
            if ep.name in block or (allow and ep.name not in allow):
                continue
            try:
                obj = ep.load()
                dist = getattr(ep, "dist", None)
                self.register(
                    obj,
                    ep.name,
                    version=dist.version if dist else "",
                    distribution=dist.name if dist else "",
                )
            except Exception as exc:  # noqa: BLE001 - any failure refuses this plugin only
                reason = str(exc) if isinstance(exc, PluginLoadError) else (
                    f"plugin {ep.name!r} failed to import: {type(exc).__name__}: {exc}"
                )
                self.refused[ep.name] = reason
                logger.error("plugin refused: %s", reason)

    # --- state and settings ------------------------------------------------------------------

    def active_names(self) -> set[str]:
        from backoffice.plugin_host.models import PluginConfig

        memo = _request_memo.get()
        if memo is not None and "active" in memo:
            return set(memo["active"])
        active = set(PluginConfig.objects.filter(active=True).values_list("identifier", flat=True))
        if memo is not None:
            memo["active"] = frozenset(active)
        return active & set(self.plugins)

    def config(self, name: str, stored: dict | None = None) -> ResolvedConfig:
        """The effective settings of plugin ``name`` (``stored``: its ``PluginConfig.settings``,
        read when not given). Secrets come decrypted; one that cannot be is an error of its
        field (``.errors``), which keeps the plugin's providers from being used."""
        from backoffice.plugin_host.models import PluginConfig

        plugin = self.plugins[name]
        memo = _request_memo.get() if stored is None else None
        if memo is not None and ("config", name) in memo:
            return memo["config", name]
        if stored is None:
            row = PluginConfig.objects.filter(identifier=name).only("settings").first()
            stored = row.settings if row else {}
        resolved = self._resolve(plugin, stored)
        if memo is not None:
            memo["config", name] = resolved
        return resolved

    def _resolve(self, plugin: LoadedPlugin, stored: dict) -> ResolvedConfig:
        name = plugin.name
        resolved = resolve_config(name, plugin.config_fields, stored)
        # Checks across fields (a key that belongs to the other mode...): the plugin's optional
        # ``validate_config(values) -> {field: message}``.
        validate = getattr(plugin.obj, "validate_config", None)
        if not callable(validate):
            return resolved
        try:
            problems = validate(resolved.values) or {}
        except Exception as exc:  # noqa: BLE001 - a broken check is reported, not raised
            # The type only: a plugin's exception may carry the values it was checking.
            logger.warning("plugin %s: validate_config raised %s", name, type(exc).__name__)
            problems = {"settings": f"could not be checked ({type(exc).__name__})"}
        if not problems:
            return resolved
        return ResolvedConfig(values=resolved.values, sources=resolved.sources,
                              errors={**problems, **resolved.errors})

    # --- calling -----------------------------------------------------------------------------

    def implementations(self, hook_name: str, active: set[str] | None = None) -> list[str]:
        """Names of the active plugins implementing ``hook_name``, in pluggy's call order."""
        active = self.active_names() if active is None else active
        hook = getattr(self.pm.hook, hook_name)
        return [
            impl.plugin_name for impl in reversed(hook.get_hookimpls())
            if impl.plugin_name in active
        ]

    def call_one(self, hook_name: str, plugin_name: str, kwargs: dict[str, Any]) -> Any:
        """Call one plugin's implementation, passing only the arguments it asks for."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            if impl.plugin_name == plugin_name:
                return impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        raise LookupError(f"plugin {plugin_name!r} does not implement {hook_name}")

    def collect(self, hook_name: str) -> list[tuple[str, Any]]:
        """Call a registry hook on every active plugin; ``(plugin name, item)`` per item.

        A plugin whose registry raises is logged and skipped: one broken plugin never hides the
        others' providers.
        """
        items: list[tuple[str, Any]] = []
        for name in self.implementations(hook_name):
            try:
                result = self.call_one(hook_name, name, {})
            except Exception:
                logger.exception("plugin %s failed in %s; skipped", name, hook_name)
                continue
            items.extend((name, item) for item in result or ())
        return items

    def decide(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` decision hook on the active plugins; exceptions propagate."""
        active = self.active_names()
        inactive = [plugin.obj for name, plugin in self.plugins.items() if name not in active]
        caller = self.pm.subset_hook_caller(hook_name, remove_plugins=inactive)
        return caller(**kwargs)


_host: PluginHost | None = None
_lock = threading.Lock()


def get_plugin_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        with _lock:
            if _host is None:
                host = PluginHost()
                host.load_entry_points(
                    allow=getattr(settings, "PLUGINS_ALLOW", ()),
                    block=getattr(settings, "PLUGINS_BLOCK", ()),
                )
                _host = host
    return _host


def reset_plugin_host() -> None:
    """Forget the loaded plugins; the next ``get_plugin_host()`` loads them again."""
    global _host
    with _lock:
        _host = None
