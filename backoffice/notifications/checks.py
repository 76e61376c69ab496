"""System checks: a store that cannot email its customers says so at start."""

from django.core.checks import Tags, Warning, register
from django.db import DatabaseError

from backoffice.caching import query_cache_disabled


# Tagged "database": it reads which plugins are active.
@register(Tags.database)
def check_an_email_channel_is_active(app_configs, databases=None, **kwargs):
    if not databases:
        return []
    from backoffice.notifications.services import active_channels

    with query_cache_disabled():
        try:
            channels = active_channels()
        except DatabaseError:  # before the first migrate
            return []
    if "email" in channels.values():
        return []
    return [Warning(
        "No email channel is active: password resets, email confirmations, order emails and "
        "staff alerts by email are not sent.",
        hint="Activate the Email plugin in the admin (Plugins).",
        id="backoffice.W201",
    )]
