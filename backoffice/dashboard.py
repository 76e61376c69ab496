"""The admin dashboard: how the store is doing and what needs someone now, then the plugins'
numbers, then the models in the sidebar's sections and words (never "Users" here and
"Customers and staff" there).

- **Sales** (``reports.view_reports``): today so far against yesterday up to the same time; the
  last 7 and 30 whole days (yesterday back) against the 7 and 30 before; a chart of the last 30
  days' net sales; the best products and the payment providers of the last 30 whole days. Sales
  are counted as the reports count them (``backoffice.reports.models``): an order on the day it
  was paid, refunds on the day they were made, net = gross - discounts + shipping - refunds.
  Past days come from the rollup, today (and any day not counted yet) from the orders.
- **Needs you** (``orders.view_order``): orders to fulfil, awaiting payment, whose payment failed,
  whose delivery is late, refunds due.
- **Low stock** (``inventory.view_stock``): how many stock rows are at or below their threshold,
  and the ten lowest.

Every number links to the admin list behind it (the orders list filtered by paid day, status,
product, provider...). Money is ``Decimal`` written by ``format_money``; only the chart's points
become floats, at the JSON edge. Days are the store's (``settings.TIME_ZONE``).

Queries (a superuser, whatever the number of orders): the sales five (the rollup with its
provider rows, the orders of yesterday and today, the best products), one for the counts, one
for low stock; see ``backoffice.reports.selectors``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal
from urllib.parse import urlencode

from django.http import HttpRequest
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from backoffice.money import format_money
from backoffice.plugin_host.services import dashboard_widgets

logger = logging.getLogger(__name__)


def orders_url(**filters) -> str:
    """The orders list with ``filters`` applied (``paid=(first, last)`` for a range of paid
    days)."""
    paid = filters.pop("paid", None)
    if paid is not None:
        filters["paid_at_from"] = paid[0].isoformat()
        filters["paid_at_to"] = paid[1].isoformat()
    base = reverse("admin:orders_order_changelist")
    query = urlencode({key: value for key, value in filters.items() if value is not None})
    return f"{base}?{query}" if query else base


def _change(value, previous, *, money: bool) -> dict:
    """A change against the previous period, for a card: its words and its tone."""
    from backoffice.reports.selectors import Change

    change = Change(value, previous)
    shown = format_money(previous) if money else str(previous)
    if change.percent is None:
        return {"text": _("nothing before to compare with") if not previous else shown,
                "tone": ""}
    sign = "+" if change.percent > 0 else ""
    return {"text": f"{sign}{change.percent}% ({_('was')} {shown})",
            "tone": "up" if change.percent > 0 else "down" if change.percent < 0 else ""}


def provider_names() -> dict[str, str]:
    """``{code: name}`` of the payment providers of every installed plugin, active or not (a
    provider switched off still has sales to name). Read from the plugins themselves, so it
    costs no query."""
    from backoffice.plugin_host.loading import get_plugin_host

    names = {"": _("None recorded")}
    host = get_plugin_host()
    hook = "register_payment_providers"
    for plugin in host.implementations(hook, active=set(host.plugins)):
        try:
            providers = host.call_one(hook, plugin, {}) or ()
            names.update({p.code: getattr(p, "name", p.code) for p in providers})
        except Exception:  # the dashboard never fails on a plugin
            logger.exception("plugin %s could not name its payment providers", plugin)
    return names


def _sales(request: HttpRequest) -> dict:
    from backoffice.reports.selectors import CHART_DAYS, dashboard_sales

    sales = dashboard_sales()
    today = sales.today
    yesterday = today - dt.timedelta(days=1)
    reports = reverse("admin:reports_dailysales_changelist")
    cards = [{
        "title": _("Sales today"),
        "value": format_money(sales.today_figures.net),
        "link": orders_url(paid=(today, today)),
        "orders": sales.today_figures.orders,
        "orders_text": ngettext("%(count)s order paid today", "%(count)s orders paid today",
                                sales.today_figures.orders)
        % {"count": sales.today_figures.orders},
        "compare_label": _("vs yesterday by this time"),
        "change": _change(sales.today_figures.net, sales.yesterday_same_time.net, money=True),
    }]
    for length, (current, previous) in sales.periods.items():
        first = today - dt.timedelta(days=length)
        cards.append({
            "title": _("Sales, last %(days)d days") % {"days": length},
            "value": format_money(current.net),
            "link": orders_url(paid=(first, yesterday)),
            "orders": current.orders,
            "orders_text": ngettext("%(count)s order, %(first)s to yesterday",
                                    "%(count)s orders, %(first)s to yesterday", current.orders)
            % {"count": current.orders, "first": date_format(first, "M j")},
            "compare_label": _("vs the %(days)d days before") % {"days": length},
            "change": _change(current.net, previous.net, money=True),
            "report": f"{reports}?{urlencode({'from': first, 'to': yesterday})}",
        })
    chart = {
        "labels": [date_format(day, "M j") for day, _figures in sales.chart],
        "datasets": [{
            "label": _("Net sales"),
            # Floats only here, at the JSON edge, for the chart's points; every figure shown
            # as text is the Decimal.
            "data": [float(figures.net) for _day, figures in sales.chart],
        }],
    }
    window = (today - dt.timedelta(days=30), yesterday)
    names = provider_names()
    total_net = sum((figures.net for _key, figures in sales.providers), Decimal("0"))
    providers = []
    for code, figures in sales.providers:
        share = (figures.net * 100 / total_net).quantize(Decimal("1")) if total_net > 0 else 0
        link = orders_url(paid=window, payment_method=code or None)
        providers.append([
            format_html('<a href="{}" class="text-primary-600">{}</a>', link,
                        names.get(code, code)),
            format_html('<a href="{}" class="text-primary-600">{}</a>', link, figures.orders),
            format_money(figures.net), f"{max(min(share, 100), 0)}%",
        ])
    products = {
        "headers": [_("product"), _("units"), _("net sales")],
        "rows": [[
            format_html('<a href="{}" class="text-primary-600">{}</a>',
                        orders_url(paid=window, product=key or None),
                        figures.label or _("(unknown product)")),
            figures.items, format_money(figures.net),
        ] for key, figures in sales.top_products],
    }
    behind = sales.counted_through is not None and sales.counted_through < yesterday
    return {
        "cards": cards,
        "chart": json.dumps(chart),
        "chart_days": CHART_DAYS,
        "chart_report": f"{reports}?{urlencode({'from': sales.chart[0][0], 'to': today})}",
        "products": products,
        "products_report": reverse("admin:reports_dailysales_report", args=["products"])
        + "?" + urlencode({"from": window[0], "to": window[1]}),
        "providers": {"headers": [_("provider"), _("orders"), _("net sales"), _("share")],
                      "rows": providers},
        "providers_report": reverse("admin:reports_dailysales_report", args=["providers"])
        + "?" + urlencode({"from": window[0], "to": window[1]}),
        "window": window,
        "counted_through": sales.counted_through,
        "behind": behind,
        "other_currency_orders": sales.other_currency_orders,
    }


def _attention() -> list[dict]:
    from backoffice.orders.selectors import LATE_DELIVERY_DAYS, attention_counts

    counts = attention_counts()
    return [
        {"title": _("To fulfil"), "value": counts.to_fulfil,
         "link": orders_url(status="to_fulfil"),
         "description": _("Paid, or paid on delivery, and not all shipped.")},
        {"title": _("Awaiting payment"), "value": counts.awaiting_payment,
         "link": orders_url(status="awaiting_payment"),
         "description": _("Holding stock until paid or expired (cash on delivery: until "
                          "paid).")},
        {"title": _("Payment failed"), "value": counts.payment_failed,
         "link": orders_url(status="payment_failed"),
         "description": _("Awaiting payment, and the customer's last attempt failed.")},
        {"title": _("Deliveries to look at"), "value": counts.late_deliveries,
         "link": orders_url(status="delivery_late"),
         "description": _("Shipped over %(days)d days ago and not delivered yet.")
         % {"days": LATE_DELIVERY_DAYS}},
        {"title": _("Refunds due"), "value": counts.refunds_due,
         "link": orders_url(status="refund_due"),
         "description": _("Money held for cancelled orders, or paid twice.")},
    ]


def _low_stock() -> dict:
    from backoffice.inventory.selectors import low_stock_summary

    summary = low_stock_summary(10)
    return {
        "count": summary.count,
        "link": reverse("admin:inventory_lowstock_changelist"),
        "table": {
            "headers": [_("SKU"), _("product"), _("warehouse"), _("available"),
                        _("threshold")],
            "rows": [[
                format_html('<a href="{}" class="text-primary-600">{}</a>',
                            reverse("admin:inventory_stock_change", args=[row.stock_id]),
                            row.sku),
                row.product_name, row.warehouse_code, row.available, row.threshold,
            ] for row in summary.worst],
        },
    }


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
    """unfold's ``DASHBOARD_CALLBACK``: adds ``store_dashboard`` (sales, the counts that need
    someone, low stock: each only for staff allowed to see it) and ``dashboard_widgets`` (title,
    value, link) from the plugins; and puts the app list in the sidebar's sections and words."""
    if "app_list" in context:
        context["app_list"] = sidebar_app_list(context["app_list"])
    user = request.user
    context["store_dashboard"] = {
        "sales": _sales(request) if user.has_perm("reports.view_reports") else None,
        "attention": _attention() if user.has_perm("orders.view_order") else None,
        "low_stock": _low_stock() if user.has_perm("inventory.view_stock") else None,
    }
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
