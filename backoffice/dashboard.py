"""The admin dashboard: the numbers a merchant checks first, from the core and from plugins."""

from __future__ import annotations

import logging

from django.http import HttpRequest

from backoffice.plugin_host.services import dashboard_widgets

logger = logging.getLogger(__name__)


def dashboard_callback(request: HttpRequest, context: dict) -> dict:
    """unfold's ``DASHBOARD_CALLBACK``: adds ``dashboard_widgets`` (title, value, link)."""
    widgets = []
    for widget in dashboard_widgets():
        try:
            value = widget.value(request) if callable(widget.value) else widget.value
        except Exception:  # one plugin's broken widget never breaks the dashboard
            logger.exception("dashboard widget %r failed", widget.title)
            value = "—"
        widgets.append(
            {"title": widget.title, "value": value, "link": widget.link,
             "description": widget.description}
        )
    context["dashboard_widgets"] = widgets
    return context
