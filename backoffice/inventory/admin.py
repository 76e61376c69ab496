"""Stock in the admin: warehouses, stock per (variant, warehouse), the low-stock list and the
read-only movement ledger.

Quantities are never edited in a form: the "Adjust stock" action calls the inventory services,
which lock the row and write a movement with the staff user as the actor. It needs
``inventory.adjust_stock`` (the "change stock" permission only edits the low-stock threshold).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import (
    BooleanRadioFilter,
    ChoicesDropdownFilter,
    RelatedDropdownFilter,
)
from unfold.decorators import action, display
from unfold.utils import display_for_label

from backoffice import permissions
from backoffice.admin_access import GuardedActionsMixin, permission_check
from backoffice.admin_filters import DayRangeFilter
from backoffice.admin_records import ReadOnlyRecord
from backoffice.admin_search import IndexedSearchMixin
from backoffice.catalog.admin import (
    STATUS_COLOURS,
    EstimatedCountPaginator,
    StockStatusFilter,
    apply_stock_adjustment,
    form_action,
    format_money,
    stock_status_label,
)
from backoffice.catalog.forms import AdjustStockForm
from backoffice.inventory.models import LowStock, Stock, StockMovement, Warehouse
from backoffice.inventory.selectors import low_stock_rows, with_stock_levels


@admin.register(Warehouse)
class WarehouseAdmin(ModelAdmin):
    list_display = ["name", "code", "is_default", "is_active"]
    list_filter = [("is_active", BooleanRadioFilter)]
    list_filter_submit = True
    search_fields = ["name", "code"]
    prepopulated_fields = {"code": ["name"]}
    fields = ["name", "code", "address", "is_active", "is_default"]


@admin.register(Stock)
class StockAdmin(IndexedSearchMixin, GuardedActionsMixin, ModelAdmin):
    # Eight narrow columns fit a 1400 px window beside the sidebar; the threshold is on the
    # row's page (and in its status).
    list_display = [
        "sku", "product", "warehouse", "quantity", "quantity_allocated", "available", "status",
        "value", "history",
    ]
    list_select_related = ["variant__product", "warehouse"]
    list_filter = [("warehouse", RelatedDropdownFilter), StockStatusFilter]
    list_filter_submit = True
    search_fields = ["variant__sku", "variant__barcode", "variant__product__name"]
    # As the variant list searches (backoffice.admin_search), through the row's variant.
    search_exact = ["variant__sku", "variant__barcode"]
    search_lookups = [
        "variant__sku__icontains", "variant__barcode__startswith",
        "variant__product__name__icontains",
    ]
    search_help_text = _("SKU (or part of it), barcode or product name.")
    ordering = ["variant__sku", "warehouse__code"]
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = [
        "variant_sku", "product_name", "warehouse", "quantity", "quantity_allocated", "available",
        "low_stock_threshold", "status", "value", "history", "updated_at",
    ]
    readonly_fields = [
        "variant_sku", "product_name", "warehouse", "quantity", "quantity_allocated", "available",
        "status", "value", "history", "updated_at",
    ]
    actions = ["adjust_stock"]
    actions_detail = ["adjust_row_stock"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Stock]:
        queryset = super().get_queryset(request).select_related("variant__product", "warehouse")
        return with_stock_levels(queryset)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A stock row comes with its first adjustment (from here or the variant list).
        return False

    has_adjust_permission = permission_check(permissions.ADJUST_STOCK)

    @display(description=_("SKU"), ordering="variant__sku")
    def sku(self, obj: Stock) -> str:
        return format_html('<span class="whitespace-nowrap">{}</span>', obj.variant.sku)

    @display(description=_("product"), ordering="variant__product__name")
    def product(self, obj: Stock) -> str:
        return obj.variant.product.name

    @display(description=_("SKU"))
    def variant_sku(self, obj: Stock) -> str:
        url = reverse("admin:catalog_variant_change", args=[obj.variant_id])
        return format_html('<a href="{}" class="text-link">{}</a>', url, obj.variant.sku)

    @display(description=_("product"))
    def product_name(self, obj: Stock) -> str:
        url = reverse("admin:catalog_product_change", args=[obj.variant.product_id])
        return format_html('<a href="{}" class="text-link">{}</a>', url, obj.variant.product.name)

    @display(description=_("available"), ordering="available")
    def available(self, obj: Stock) -> int:
        return obj.available

    # A badge drawn here, not by ``label=``: the row's page shows read-only fields as they come.
    @display(description=_("status"), ordering="stock_status")
    def status(self, obj: Stock) -> str:
        return display_for_label(
            (obj.stock_status, stock_status_label(obj.stock_status)), "-", STATUS_COLOURS
        )

    @display(description=_("value"), ordering="inventory_value")
    def value(self, obj: Stock) -> str:
        return format_html('<span class="whitespace-nowrap">{}</span>',
                           format_money(obj.inventory_value))

    @display(description=_("history"))
    def history(self, obj: Stock) -> str:
        url = reverse("admin:inventory_stockmovement_changelist")
        return format_html(
            '<a href="{}?stock__id__exact={}" class="text-link">{}</a>', url, obj.pk,
            _("Movements"),
        )

    @action(description=_("Adjust stock"), permissions=["adjust"])
    def adjust_stock(self, request: HttpRequest, queryset: QuerySet[Stock]):
        def apply(data: dict) -> None:
            places = list(queryset.order_by("pk").values_list("variant_id", "warehouse_id"))
            apply_stock_adjustment(self, request, places, data)

        return form_action(
            self, request, queryset, form_class=AdjustStockForm,
            action_name="adjust_stock", intro=_("Adjust the selected stock"),
            submit_label=_("Adjust stock"), apply=apply,
        )

    @action(
        description=_("Adjust stock"), permissions=["adjust"], url_path="adjust", icon="tune"
    )
    def adjust_row_stock(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The row page's button: the bulk action's form and service, for this row. A refused
        change keeps the form (and its message) on screen; a done one goes back to the row."""
        stock = self.get_object(request, unquote(object_id))
        if stock is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        # The stock page even from the low-stock list, which the row may have just left.
        row_url = reverse(
            "admin:inventory_stock_change", args=[stock.pk], current_app=self.admin_site.name
        )
        form = AdjustStockForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            place = (stock.variant_id, stock.warehouse_id)
            if apply_stock_adjustment(self, request, [place], form.cleaned_data):
                return HttpResponseRedirect(row_url)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Adjust stock of %(row)s") % {"row": stock},
            "opts": self.opts,
            "original": stock,
            "stock": stock,
            "form": form,
            "cancel_url": row_url,
        }
        return TemplateResponse(request, "inventory/admin/adjust_row_stock.html", context)


@admin.register(LowStock)
class LowStockAdmin(StockAdmin):
    """Stock at or below its threshold (out of stock included), of active variants."""

    list_filter = [("warehouse", RelatedDropdownFilter)]
    ordering = ["variant__sku", "warehouse__code"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Stock]:
        queryset = super(StockAdmin, self).get_queryset(request)
        return low_stock_rows(queryset.select_related("variant__product", "warehouse"))


@admin.register(StockMovement)
class StockMovementAdmin(ReadOnlyRecord, ModelAdmin):
    """The ledger: read-only, newest first."""

    list_display = [
        "created_at", "sku", "warehouse", "reason", "quantity_change", "allocated_change",
        "quantity_after", "allocated_after", "actor_display", "reference",
    ]
    list_select_related = ["stock__variant__product", "stock__warehouse", "actor"]
    list_filter = [
        ("reason", ChoicesDropdownFilter),
        ("stock__warehouse", RelatedDropdownFilter),
        ("created_at", DayRangeFilter),
    ]
    list_filter_submit = True
    search_fields = ["=stock__variant__sku", "reference"]
    search_help_text = _("An exact SKU, or a reference.")
    list_per_page = 100
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = [
        "created_at", "stock", "reason", "quantity_change", "allocated_change", "quantity_after",
        "allocated_after", "actor", "actor_label", "reference", "note",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[StockMovement]:
        return (
            super()
            .get_queryset(request)
            .select_related("stock__variant__product", "stock__warehouse", "actor")
        )


    @display(description=_("SKU"), ordering="stock__variant__sku")
    def sku(self, obj: StockMovement) -> str:
        return obj.stock.variant.sku

    @display(description=_("warehouse"), ordering="stock__warehouse__code")
    def warehouse(self, obj: StockMovement) -> str:
        return obj.stock.warehouse.name

    @display(description=_("by"))
    def actor_display(self, obj: StockMovement) -> str:
        if obj.actor is not None:
            return obj.actor.get_username()
        return obj.actor_label
