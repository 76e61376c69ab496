"""A pytest plugin for plugin authors: register a plugin for one test.

Installed with the back office (the ``pytest11`` entry point), so in a plugin's own test suite::

    def test_my_plugin_sees_orders(register_plugin):
        register_plugin(my_plugin, name="my_plugin", config={"api_key": "k"})
        ...

The plugin goes through the same checks as an installed one (hook-spec version, hook names),
is active with the given settings for that test, and is removed afterwards. A plugin that is
already loaded through its entry point (yours, installed in the test environment) is only
configured. Secret settings are stored encrypted, as the admin stores them.

The fixture needs pytest-django and Django settings: in a plugin's own repository, run
``pytest --ds=backoffice.testing_settings`` (see docs/plugins.md, "Testing your plugin").
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def register_plugin(db):
    from backoffice.plugin_host.config import seal_settings
    from backoffice.plugin_host.loading import get_plugin_host
    from backoffice.plugin_host.models import PluginConfig

    host = get_plugin_host()
    registered: list[str] = []

    def register(plugin: Any, name: str, *, config: dict | None = None, active: bool = True):
        loaded = host.plugins.get(name)
        if loaded is None:
            host.register(plugin, name)
            registered.append(name)
        elif loaded.obj is not plugin:
            raise ValueError(f"another plugin is already loaded as {name!r}")
        # Already loaded through its entry point (an installed plugin): only configure it.
        stored = seal_settings(host.plugins[name].config_fields, config or {})
        PluginConfig.objects.update_or_create(
            identifier=name, defaults={"active": active, "settings": stored}
        )
        return host.plugins[name]

    yield register
    for name in registered:
        host.unregister(name)
