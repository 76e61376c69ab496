"""Plugins' API routes, mounted under ``/api/v1/plugins/<plugin name>/``.

Routes are mounted at start for every loaded plugin; a guard answers 404 while the plugin is
inactive, so switching a plugin off in the admin takes its routes away without a restart.
"""

from __future__ import annotations

import functools
import logging

from ninja import NinjaAPI, Router

from backoffice.plugin_host.loading import get_plugin_host

logger = logging.getLogger(__name__)


def _only_while_active(api: NinjaAPI, plugin: str):
    from shop_api.errors import error_response

    def decorator(run):
        @functools.wraps(run)
        def guarded(request, *args, **kwargs):
            if plugin not in get_plugin_host().active_names():
                return error_response(api, request, 404, "Not found.")
            return run(request, *args, **kwargs)

        return guarded

    return decorator


def mount_plugin_routers(api: NinjaAPI) -> list[str]:
    """Add every loaded plugin's routers to ``api``; returns the mounted prefixes."""
    host = get_plugin_host()
    mounted = []
    for name in sorted(host.plugins):
        if "register_api_routers" not in host.plugins[name].hooks:
            continue
        try:
            routers = host.call_one("register_api_routers", name, {}) or []
        except Exception:
            logger.exception("plugin %s failed in register_api_routers; not mounted", name)
            continue
        wrapper = Router(tags=[f"plugin: {name}"])
        wrapper.add_decorator(_only_while_active(api, name), mode="view")
        for prefix, router in routers:
            wrapper.add_router(prefix, router)
        api.add_router(f"/plugins/{name}/", wrapper)
        mounted.append(f"/plugins/{name}/")
    return mounted
