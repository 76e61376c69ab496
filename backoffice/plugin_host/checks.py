"""System checks: a refused plugin, or an active one that cannot work, is reported at start."""

from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError

from backoffice.caching import query_cache_disabled
from backoffice.plugin_host.loading import get_plugin_host


@register(Tags.compatibility)
def check_refused_plugins(app_configs, **kwargs):
    return [
        Error(reason, hint="Fix or remove the plugin, or add it to PLUGINS_BLOCK.",
              obj=name, id="backoffice.E101")
        for name, reason in sorted(get_plugin_host().refused.items())
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
