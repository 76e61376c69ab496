"""The admin dashboard: the numbers a merchant checks first, from the core and from plugins, then
the models in the sidebar's sections and words (never "Users" here and "Customers and staff"
there)."""

from __future__ import annotations

import logging

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from backoffice.money import format_money
from backoffice.plugin_host.services import dashboard_widgets

logger = logging.getLogger(__name__)


def _core_widgets() -> list[dict]:
    from backoffice.orders.selectors import morning_numbers

    numbers = morning_numbers()
    orders = reverse("admin:orders_order_changelist")
    return [
        {"title": _("Sales today"), "value": format_money(numbers.sales_today),
         "link": orders, "description": ngettext(
             "%(count)s order placed today", "%(count)s orders placed today",
             numbers.orders_today) % {"count": numbers.orders_today}},
        {"title": _("Sales, last 7 days"), "value": format_money(numbers.sales_last_7_days),
         "link": orders, "description": _("Paid or being fulfilled, refunds taken off.")},
        {"title": _("To fulfil"), "value": numbers.to_fulfil,
         "link": f"{orders}?status=to_fulfil",
         "description": _("Paid, or paid on delivery, and not all shipped.")},
        {"title": _("Awaiting payment"), "value": numbers.awaiting_payment,
         "link": f"{orders}?status=awaiting_payment",
         "description": _("Holding stock until paid or expired (cash on delivery: until "
                          "paid).")},
        {"title": _("Refunds due"), "value": numbers.refunds_due,
         "link": f"{orders}?status=refund_due",
         "description": _("Money held for cancelled orders, or paid twice.")},
    ]


def sidebar_app_list(app_list: list[dict]) -> list[dict]:
    """The index's app list grouped and named as the sidebar is (``SIDEBAR_SECTIONS``): each
    section with its items' titles, in its order. Models the sidebar does not list stay in
    their own app, after the sections."""
    from backoffice.admin_navigation import SIDEBAR_SECTIONS

    found = {}
    for app in app_list:
        for model in app["models"]:
            found[model["model"]._meta.label_lower] = (app, model)
    sections, placed = [], set()
    for title, items in SIDEBAR_SECTIONS:
        keys = [item.model.lower() for item in items if item.model.lower() in found]
        if not keys:
            continue
        titles = {item.model.lower(): item.title for item in items}
        first_app = found[keys[0]][0]
        sections.append({
            **first_app, "name": title,
            "models": [{**found[key][1], "name": titles[key]} for key in keys],
        })
        placed.update(keys)
    rest = []
    for app in app_list:
        models = [m for m in app["models"] if m["model"]._meta.label_lower not in placed]
        if models:
            rest.append({**app, "models": models})
    return sections + rest


def dashboard_callback(request: HttpRequest, context: dict) -> dict:
    """unfold's ``DASHBOARD_CALLBACK``: adds ``dashboard_widgets`` (title, value, link): the
    core's order numbers (one query), then the plugins'; and puts the app list in the
    sidebar's sections and words."""
    if "app_list" in context:
        context["app_list"] = sidebar_app_list(context["app_list"])
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
