"""System checks: misconfiguration is reported at start, not at the first order."""

import re

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@register(Tags.compatibility)
def check_store_currency(app_configs, **kwargs):
    currency = getattr(settings, "STORE_CURRENCY", "")
    if not _CURRENCY.match(currency):
        return [
            Error(
                f"STORE_CURRENCY must be an ISO 4217 code of three letters, not {currency!r}.",
                hint="Set STORE_CURRENCY, e.g. KES, ETB, EUR or USD.",
                id="backoffice.E001",
            )
        ]
    return []


@register(Tags.caches)
def check_cachalot_scope(app_configs, **kwargs):
    """cachalot with an empty whitelist caches every table, stock and orders included."""
    if getattr(settings, "CACHALOT_ENABLED", False) and not getattr(
        settings, "CACHALOT_ONLY_CACHABLE_APPS", None
    ):
        return [
            Error(
                "django-cachalot is enabled with no CACHALOT_ONLY_CACHABLE_APPS: it would cache "
                "stock, carts and orders.",
                hint="List the read-mostly catalog apps in CACHALOT_ONLY_CACHABLE_APPS.",
                id="backoffice.E002",
            )
        ]
    return []


@register(Tags.caches, deploy=True)
def check_shared_cache(app_configs, **kwargs):
    """A per-process cache serves stale data once a worker or a second web process runs."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend.endswith("LocMemCache"):
        return [
            Warning(
                "The default cache is local memory: each process would keep its own copy.",
                hint="Leave REDIS_URL unset for the file-based cache, or set it for Redis.",
                id="backoffice.W001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_public_url(app_configs, **kwargs):
    """Providers post webhooks to PUBLIC_URL; M-Pesa refuses a callback that is not https, and a
    plain-http callback would carry its secret token in the clear."""
    url = getattr(settings, "PUBLIC_URL", "")
    if not url.startswith("https://"):
        return [
            Warning(
                f"PUBLIC_URL is {url!r}: payment providers would send their webhooks there.",
                hint="Set PUBLIC_URL to the public https address of this back office, e.g. "
                     "https://backoffice.example.com.",
                id="backoffice.W002",
            )
        ]
    return []
