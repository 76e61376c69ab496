"""The admin dashboard: the numbers a merchant checks first, from the core and from plugins."""

from __future__ import annotations

import logging

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from backoffice.money import store_currency
from backoffice.plugin_host.services import dashboard_widgets

logger = logging.getLogger(__name__)


def _core_widgets() -> list[dict]:
    from backoffice.orders.selectors import morning_numbers

    numbers = morning_numbers()
    currency = store_currency()
    orders = reverse("admin:orders_order_changelist")
    return [
        {"title": _("Sales today"), "value": f"{numbers.sales_today} {currency}",
         "link": orders, "description": ngettext(
             "%(count)s order placed today", "%(count)s orders placed today",
             numbers.orders_today) % {"count": numbers.orders_today}},
        {"title": _("Sales, last 7 days"), "value": f"{numbers.sales_last_7_days} {currency}",
         "link": orders, "description": _("Paid or being fulfilled, refunds taken off.")},
        {"title": _("To fulfil"), "value": numbers.to_fulfil,
         "link": f"{orders}?status__in=paid,processing",
         "description": _("Paid or processing: waiting to ship.")},
        {"title": _("Awaiting payment"), "value": numbers.awaiting_payment,
         "link": f"{orders}?status__exact=pending_payment",
         "description": _("Holding stock until paid or expired.")},
    ]


def dashboard_callback(request: HttpRequest, context: dict) -> dict:
    """unfold's ``DASHBOARD_CALLBACK``: adds ``dashboard_widgets`` (title, value, link): the
    core's order numbers (one query), then the plugins'."""
    widgets = _core_widgets() if request.user.has_perm("orders.view_order") else []
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
