"""System checks: a refused plugin, or an active one that cannot work, is reported at start.

None of them is an error that stops ``migrate`` or ``runserver`` because of a plugin: a refused
plugin is simply not loaded, and the others keep working.
"""

from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError

from backoffice import crypto
from backoffice.caching import query_cache_disabled
from backoffice.plugin_host.loading import get_plugin_host


@register(Tags.compatibility)
def check_refused_plugins(app_configs, **kwargs):
    # A warning, not an error: the other plugins load, and `migrate`, `runserver` and the
    # job worker must still start (the admin and `manage.py plugins` show it too).
    return [
        Warning(reason, hint="Fix or remove the plugin, or add it to PLUGINS_BLOCK.",
                obj=name, id="backoffice.W102")
        for name, reason in sorted(get_plugin_host().refused.items())
    ]


@register(Tags.security)
def check_encryption_keys(app_configs, **kwargs):
    return [
        Error(f"{problem}.", hint=f"Make a key with: {crypto.GENERATE_KEY_HINT}",
              id="backoffice.E103")
        for problem in crypto.key_problems()
    ]


# Tagged "database": it reads PluginConfig, so it runs with `migrate` and `check --database`.
@register(Tags.database)
def check_active_plugins_are_configured(app_configs, databases=None, **kwargs):
    if not databases:
        return []
    host = get_plugin_host()
    # Straight from the database: `migrate` runs this check before it migrates, and the query
    # cache may hold rows of a database that was deleted and made again at the same place.
    with query_cache_disabled():
        try:
            active = host.active_names()
            configs = {name: host.config(name) for name in sorted(active)}
        except DatabaseError:  # before the first migrate
            return []
    problems = []
    for name, resolved in configs.items():
        if not resolved.is_complete:
            missing = ", ".join(resolved.missing + list(resolved.errors))
            problems.append(Warning(
                f"Active plugin {name!r} has missing or invalid settings: {missing}.",
                hint="Fill them in the admin (Plugins) or in the environment.",
                obj=name, id="backoffice.W101",
            ))
    return problems


@register(Tags.database)
def check_stored_secrets(app_configs, databases=None, **kwargs):
    """Every stored secret of every plugin (active or not) opens with the configured keys, and
    none of an installed plugin is stored in plain text. Names the plugin and the setting,
    never the value."""
    if not databases or crypto.key_problems():
        return []
    from backoffice.plugin_host.models import PluginConfig

    host = get_plugin_host()
    with query_cache_disabled():
        try:
            rows = list(PluginConfig.objects.values_list("identifier", "settings"))
        except DatabaseError:  # before the first migrate
            return []
    problems = []
    for identifier, stored in rows:
        plugin = host.plugins.get(identifier)
        secret = {f.name for f in plugin.config_fields if f.is_secret} if plugin else set()
        for name, value in sorted((stored or {}).items()):
            if crypto.is_sealed(value):
                try:
                    crypto.unseal(value)
                except crypto.DecryptionError as exc:
                    problems.append(Warning(
                        f"Plugin {identifier!r}: the stored setting {name!r} {exc}.",
                        hint="Put the key it was encrypted with back in SECRETS_ENCRYPTION_KEYS "
                             "(any position after the first), or enter the setting again in "
                             "the admin (Plugins).",
                        obj=identifier, id="backoffice.W103",
                    ))
            elif name in secret and value not in (None, ""):
                problems.append(Warning(
                    f"Plugin {identifier!r}: the secret setting {name!r} is stored in plain "
                    "text.",
                    hint="Run `manage.py rotate_plugin_secrets` to encrypt it.",
                    obj=identifier, id="backoffice.W104",
                ))
    return problems
