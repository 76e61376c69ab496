"""The Audit page (Access > Audit): who changed money, stock, plugins, API keys and roles, when.

Read-only, newest first; filtered by action, who, day and kind of object, searched by the
object's name or id, who, or the summary. Each row links to what it acted on.
"""

from __future__ import annotations

import json

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter, DropdownFilter
from unfold.decorators import display

from backoffice.admin_filters import DayRangeFilter
from backoffice.admin_records import ReadOnlyRecord
from backoffice.audit.models import AuditEntry
from backoffice.catalog.admin import EstimatedCountPaginator

# The kinds of object the services record, in the order the filter lists them.
OBJECT_TYPES = ["orders.order", "payments.payment", "inventory.stock", "imports.importjob",
                "plugins.pluginconfig", "integrations.apikey", "auth.group", "auth.user"]


class WhoFilter(DropdownFilter):
    """Staff members and API keys (a few rows each), never every customer account."""

    title = _("who")
    parameter_name = "who"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        from backoffice.integrations.models import ApiKey

        staff = get_user_model().objects.filter(Q(is_staff=True) | Q(is_superuser=True))
        choices = [(f"user:{pk}", name) for pk, name in
                   staff.order_by("username").values_list("pk", "username")]
        choices += [(f"key:{key.pk}", key.label) for key in ApiKey.objects.order_by("name")]
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        kind, _sep, pk = (self.value() or "").partition(":")
        if not pk.isdigit():
            return queryset
        if kind == "user":
            return queryset.filter(actor_id=int(pk))
        if kind == "key":
            from backoffice.integrations.models import ApiKey

            key = ApiKey.objects.filter(pk=int(pk)).first()
            return queryset.filter(actor__isnull=True, actor_label=key.label if key else "")
        return queryset


class ObjectTypeFilter(DropdownFilter):
    title = _("object type")
    parameter_name = "object_type"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        choices = []
        for label in OBJECT_TYPES:
            try:
                model = apps.get_model(label)
            except LookupError:
                continue
            choices.append((label, str(model._meta.verbose_name).capitalize()))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(object_type=self.value()) if self.value() else queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyRecord, ModelAdmin):
    list_display = ["created_at", "actor_label", "action_label", "object_link", "summary"]
    list_filter = [("action", ChoicesDropdownFilter), WhoFilter, ("created_at", DayRangeFilter),
                   ObjectTypeFilter]
    list_filter_submit = True
    search_fields = ["object_repr", "actor_label", "summary", "=object_id"]
    search_help_text = _("What was acted on (an order number, a SKU, a plugin, a key), who, "
                         "or words of the summary.")
    ordering = ["-created_at", "-id"]
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = ["created_at", "actor_label", "actor", "action_label", "object_link", "summary",
              "details"]
    readonly_fields = fields

    @display(description=_("action"), ordering="action")
    def action_label(self, obj: AuditEntry) -> str:
        return obj.get_action_display()

    @display(description=_("object"))
    def object_link(self, obj: AuditEntry) -> str:
        text = obj.object_repr or obj.object_type
        if not (obj.object_type and obj.object_id):
            return text
        app_label, _sep, model_name = obj.object_type.partition(".")
        try:
            url = reverse(f"admin:{app_label}_{model_name}_change", args=[obj.object_id])
        except NoReverseMatch:
            return text
        return format_html('<a href="{}" class="text-primary-600">{}</a>', url, text)

    @display(description=_("details"))
    def details(self, obj: AuditEntry) -> str:
        if not obj.data:
            return "-"
        text = json.dumps(obj.data, indent=2, ensure_ascii=False, sort_keys=True, default=str)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)
