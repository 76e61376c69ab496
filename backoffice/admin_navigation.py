"""The admin sidebar: sections in the order a merchant works through them.

Each domain app adds its section or items to ``SIDEBAR_SECTIONS``. An item names a model by its
``app_label.model_name``; it appears only when that model is registered in the admin, and only to
staff allowed to view it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import reverse
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class SidebarItem:
    title: str
    icon: str  # a Material Symbols name
    model: str = ""  # app_label.model_name; empty for a plain link
    url_name: str = ""  # used when model is empty
    badge: str = ""  # dotted path of a callable(request) -> str | int
    permission: str = ""  # who sees a model's item (default: "view" on the model)


SIDEBAR_SECTIONS: list[tuple[str, list[SidebarItem]]] = [
    (_("Store"), [
        SidebarItem(_("Dashboard"), "dashboard", url_name="admin:index"),
        SidebarItem(_("Reports"), "monitoring", "reports.dailysales",
                    permission="reports.view_reports"),
    ]),
    (
        _("Orders"),
        [
            SidebarItem(
                _("Orders"),
                "shopping_cart",
                "orders.order",
                badge="backoffice.orders.admin.orders_to_fulfil_badge",
            ),
            SidebarItem(_("Payments"), "payments", "payments.payment"),
            SidebarItem(_("Payment events"), "webhook", "payments.paymentevent"),
            SidebarItem(_("Coupons"), "sell", "promotions.coupon"),
        ],
    ),
    (
        _("Catalog"),
        [
            SidebarItem(_("Products"), "inventory_2", "catalog.product"),
            SidebarItem(_("Variants and SKUs"), "style", "catalog.variant"),
            SidebarItem(_("Categories"), "account_tree", "catalog.category"),
        ],
    ),
    (
        _("Inventory"),
        [
            SidebarItem(_("Stock"), "warehouse", "inventory.stock"),
            SidebarItem(_("Low stock"), "production_quantity_limits", "inventory.lowstock"),
            SidebarItem(_("Stock movements"), "swap_vert", "inventory.stockmovement"),
            SidebarItem(_("Warehouses"), "store", "inventory.warehouse"),
        ],
    ),
    (
        _("Imports and exports"),
        [
            SidebarItem(_("Imports"), "upload_file", "imports.importjob"),
            SidebarItem(_("Exports"), "download", "imports.exportjob"),
        ],
    ),
    (
        _("Plugins"),
        [
            SidebarItem(_("Plugins"), "extension", "plugins.pluginconfig"),
            SidebarItem(
                _("Event deliveries"),
                "outbox",
                "plugins.plugineventdelivery",
                badge="backoffice.admin_navigation.failed_deliveries_badge",
            ),
        ],
    ),
    (
        _("Jobs"),
        [
            SidebarItem(_("Scheduled jobs"), "schedule", "django_q.schedule"),
            SidebarItem(_("Queued jobs"), "pending", "django_q.ormq"),
            SidebarItem(_("Finished jobs"), "task_alt", "django_q.success"),
            SidebarItem(
                _("Failed jobs"),
                "error",
                "django_q.failure",
                badge="backoffice.admin_navigation.failed_jobs_badge",
            ),
        ],
    ),
    (
        _("Customers"),
        [
            SidebarItem(_("Customers and staff"), "person", "auth.user"),
            SidebarItem(_("Addresses"), "home_pin", "customers.address"),
            SidebarItem(_("Reviews"), "reviews", "reviews.review"),
            SidebarItem(_("API sessions"), "key", "customers.tokenfamily"),
        ],
    ),
    (
        _("Messages"),
        [
            SidebarItem(_("Notifications"), "notifications", "notifications.notification"),
            SidebarItem(_("Message templates"), "edit_note", "notifications.notificationrule"),
            SidebarItem(_("Staff alerts"), "campaign", "notifications.staffalert"),
        ],
    ),
    (
        _("Access"),
        [
            SidebarItem(_("API keys"), "vpn_key", "integrations.apikey"),
            SidebarItem(_("What keys wrote"), "history", "integrations.integrationwrite"),
            SidebarItem(_("Groups"), "group", "auth.group"),
            SidebarItem(_("Sign-in providers"), "login", "identity.identityprovider"),
            SidebarItem(_("Linked sign-ins"), "link", "identity.externalidentity"),
            SidebarItem(_("Audit"), "policy", "audit.auditentry"),
        ],
    ),
]


def _item_entry(item: SidebarItem, request: HttpRequest) -> dict | None:
    if not item.model:
        return {"title": item.title, "icon": item.icon, "link": reverse(item.url_name)}
    model = apps.get_model(item.model)
    if not admin.site.is_registered(model):
        return None
    needed = item.permission or f"{model._meta.app_label}.view_{model._meta.model_name}"
    if not request.user.has_perm(needed):
        return None
    entry = {
        "title": item.title,
        "icon": item.icon,
        "link": reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"),
    }
    # unfold draws a badge whenever an item names one: name it only when there is a count.
    if item.badge and import_string(item.badge)(request):
        entry["badge"] = item.badge
    return entry


def sidebar_navigation(request: HttpRequest) -> list[dict]:
    """The unfold ``SIDEBAR.navigation`` callback."""
    groups = []
    for title, items in SIDEBAR_SECTIONS:
        entries = [entry for item in items if (entry := _item_entry(item, request))]
        if entries:
            groups.append({"title": title, "separator": True, "items": entries})
    return groups


def in_sidebar_words(app_list: list[dict]) -> list[dict]:
    """An admin app list (the dashboard's, "All applications") with every model the sidebar
    lists named as the sidebar names it: "Failed jobs", never "Failed tasks" beside it."""
    titles = {item.model.lower(): item.title
              for _section, items in SIDEBAR_SECTIONS for item in items if item.model}
    for app in app_list:
        for model in app["models"]:
            model["name"] = titles.get(model["model"]._meta.label_lower, model["name"])
    return app_list


def _counted_once(request: HttpRequest, key: str, count) -> str:
    """A badge's text, counted once per request (the sidebar asks, then unfold asks again)."""
    cache = request.__dict__.setdefault("_sidebar_badges", {})
    if key not in cache:
        value = count()
        cache[key] = str(value) if value else ""
    return cache[key]


def failed_jobs_badge(request: HttpRequest) -> str:
    from django_q.models import Failure

    return _counted_once(request, "failed_jobs", Failure.objects.count)


def failed_deliveries_badge(request: HttpRequest) -> str:
    from backoffice.plugin_host.models import DeliveryStatus, PluginEventDelivery

    return _counted_once(
        request, "failed_deliveries",
        PluginEventDelivery.objects.filter(status=DeliveryStatus.FAILED).count,
    )


def favicon_url(request: HttpRequest) -> str:
    return static("favicon.ico")


def environment_label(request: HttpRequest) -> list[str] | None:
    """Shown beside the site name so nobody mistakes a development copy for the live store."""
    if settings.DEBUG:
        return [str(_("Development")), "warning"]
    return None
