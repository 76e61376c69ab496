"""The catalog in the admin: the category tree, products with their variants and images.

Every changelist annotates what it shows (price range, discount, stock, product counts) in its
one results query, so a page costs the same number of queries whatever its size. Bulk actions
only translate the request and call ``backoffice.catalog.services``.

Pagination: Django counts the filtered rows for the paginator (``COUNT(*)``). On PostgreSQL an
unfiltered changelist of a big table uses the planner's estimate instead (``pg_class.reltuples``,
kept fresh by autovacuum), so the first page of 100k products never scans the table; a filtered
or searched list still counts exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Page, Paginator
from django.db import connections, models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.admin import ModelAdmin, StackedInline, TabularInline
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    BooleanRadioFilter,
    DropdownFilter,
    FieldTextFilter,
)
from unfold.decorators import action, display
from unfold.utils import display_for_label

from backoffice.admin_access import GuardedActionsMixin
from backoffice.admin_search import IndexedSearchMixin
from backoffice.catalog import selectors, services
from backoffice.catalog.forms import (
    AdjustStockForm,
    CategoryAdminForm,
    MoveCategoriesForm,
    MoveProductsForm,
    PercentagePriceChangeForm,
    ProductAdminForm,
    VariantAdjustStockForm,
    VariantForm,
)
from backoffice.catalog.models import Category, Product, ProductImage, Variant
from backoffice.inventory.models import Stock
from backoffice.inventory.selectors import (
    StockStatus,
    stock_status_condition,
    with_product_stock,
    with_stock_levels,
    with_variant_stock,
)
from backoffice.inventory.services import Actor, StockError, adjust_stock, set_stock_level
from backoffice.money import format_money, quantize
from backoffice.permissions import ADJUST_STOCK

# Below this many rows (by the estimate) an exact count is cheap enough.
ESTIMATE_COUNT_ABOVE = 50_000


class EstimatedCountPaginator(Paginator):
    """Exact counts, except an unfiltered big table on PostgreSQL: the planner's estimate."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            connection = connections[queryset.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                        [queryset.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                if row and row[0] >= ESTIMATE_COUNT_ABOVE:
                    return int(row[0])
        return super().count

    def page(self, number) -> Page:
        """The page's rows through a subquery of their primary keys: a deep page skips rows
        by the ordering's index alone, and the annotations (correlated subqueries) are computed
        for this page's rows only, not for every row before the offset. Still one query."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        window = queryset.values("pk")[bottom:top]
        # The outer query keeps its filters: clearing them would leave any join a filter added
        # without its condition. The database evaluates the repeated condition once.
        return self._get_page(queryset.filter(pk__in=window), number, self)


def format_percent(value: Decimal | None) -> str:
    """``33.33%``; SQLite may hand back a subquery's decimal as a float, hence the quantize."""
    if value is None:
        return ""
    return f"{Decimal(value).quantize(Decimal('0.01'))}%"


def stock_status_label(status: str | None) -> str:
    return str(StockStatus(status).label) if status else ""


def variant_availability(variant: Variant) -> str:
    """What a variant annotated by ``with_variant_stock`` has to sell: "12 (In stock)", "not
    tracked" (always available), "0 (In stock) · backorders" (sells on when out of stock)."""
    if not variant.track_inventory:
        return str(_("not tracked"))
    text = f"{variant.available_total} ({stock_status_label(variant.stock_status)})"
    return f"{text} · {_('backorders')}" if variant.allow_backorder else text


STATUS_COLOURS = {
    StockStatus.IN_STOCK.value: "success",
    StockStatus.LOW.value: "warning",
    StockStatus.OUT.value: "danger",
}


class StockStatusFilter(DropdownFilter):
    """On stock rows annotated with ``stock_status``; for variants and products ``per`` names
    the grouping of ``stock_status_condition`` (see ``backoffice.inventory.selectors``)."""

    title = _("stock")
    parameter_name = "stock_status"
    per: str | None = None

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return list(StockStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in StockStatus.values:
            return queryset
        if self.per:
            return queryset.filter(stock_status_condition(self.value(), per=self.per))
        return queryset.filter(stock_status=self.value())


class ProductStockStatusFilter(StockStatusFilter):
    per = "variant__product"


class VariantStockStatusFilter(StockStatusFilter):
    per = "variant"


class CategoryTreeFilter(AutocompleteSelectFilter):
    """The primary category, or any category below it (a nested-set range, one indexed scan)."""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in (None, ""):
            return queryset
        node = Category.objects.filter(pk=value).values("tree_id", "lft", "rght").first()
        if node is None:
            return queryset.none()
        return queryset.filter(
            category__tree_id=node["tree_id"],
            category__lft__gte=node["lft"],
            category__lft__lte=node["rght"],
        )


def form_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    form_class: type,
    action_name: str,
    intro: str,
    submit_label: str,
    apply: Callable[[dict], None],
) -> HttpResponse | None:
    """A bulk action with an intermediate form: show it, then ``apply`` the cleaned data.

    Returning ``None`` sends the user back to the changelist, where ``apply``'s messages show.
    """
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        apply(form.cleaned_data)
        return None
    count = queryset.count()
    preview = list(queryset[:10])
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": intro,
        "intro": intro,
        "submit_label": submit_label,
        "form": form,
        "opts": modeladmin.model._meta,
        "preview": preview,
        "more": max(count - len(preview), 0),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across") == "1",
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": action_name,
    }
    return TemplateResponse(request, "catalog/admin/action_form.html", context)


# --- Categories ---------------------------------------------------------------------------------


@admin.register(Category)
class CategoryAdmin(GuardedActionsMixin, ModelAdmin):
    form = CategoryAdminForm
    list_display = ["indented_name", "path", "product_count", "is_active", "position"]
    list_display_links = ["indented_name"]
    list_filter = [("is_active", BooleanRadioFilter)]
    list_filter_submit = True
    search_fields = ["name", "path"]
    ordering = ["tree_id", "lft"]
    list_per_page = 100
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    autocomplete_fields = ["parent"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["path", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "parent", "position", "is_active"]}),
        (_("Content"), {"fields": ["description", "image", "google_category_id"]}),
        (_("Record"), {"fields": ["path", "created_at", "updated_at"]}),
    ]
    actions = ["move_categories", "activate_categories", "deactivate_categories"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Category]:
        return selectors.with_product_count(super().get_queryset(request))

    @display(description=_("name"), ordering="lft")
    def indented_name(self, obj: Category) -> str:
        return format_html(
            '<span style="padding-left: {}rem">{}{}</span>',
            obj.level * 1.5,
            "↳ " if obj.level else "",
            obj.name,
        )

    @display(description=_("products (with subcategories)"), ordering="product_count")
    def product_count(self, obj: Category) -> int:
        return obj.product_count

    def save_model(self, request, obj: Category, form, change: bool) -> None:
        if change and "parent" in form.changed_data:
            # A move: the service checks the target and rewrites the paths of the subtree.
            try:
                services.move_category(category=obj, parent=obj.parent)
            except services.CategoryMoveError as error:
                self.message_user(request, str(error), messages.ERROR)
            return
        super().save_model(request, obj, form, change)

    @action(description=_("Move to another parent"), permissions=["change"])
    def move_categories(self, request: HttpRequest, queryset: QuerySet[Category]):
        def apply(data: dict) -> None:
            moved = 0
            # Deepest first is irrelevant to mptt; tree order keeps the messages readable.
            for category in queryset.order_by("tree_id", "lft"):
                try:
                    services.move_category(
                        category=category, parent=data["parent"], position=data["position"]
                    )
                    moved += 1
                except services.CategoryMoveError as error:
                    self.message_user(request, f"{category.name}: {error}", messages.ERROR)
            if moved:
                self.message_user(
                    request,
                    ngettext("Moved %d category.", "Moved %d categories.", moved) % moved,
                    messages.SUCCESS,
                )

        return form_action(
            self, request, queryset, form_class=MoveCategoriesForm,
            action_name="move_categories", intro=_("Move the selected categories"),
            submit_label=_("Move"), apply=apply,
        )

    @action(description=_("Activate"), permissions=["change"])
    def activate_categories(self, request: HttpRequest, queryset: QuerySet[Category]) -> None:
        with transaction.atomic():  # cachalot marks the table changed at the commit
            count = Category.objects.filter(pk__in=queryset.values("pk")).update(is_active=True)
        self.message_user(request, ngettext("%d category activated.", "%d categories activated.",
                                            count) % count, messages.SUCCESS)

    @action(description=_("Deactivate"), permissions=["change"])
    def deactivate_categories(self, request: HttpRequest, queryset: QuerySet[Category]) -> None:
        with transaction.atomic():
            count = Category.objects.filter(pk__in=queryset.values("pk")).update(is_active=False)
        self.message_user(request, ngettext("%d category deactivated.",
                                            "%d categories deactivated.", count) % count,
                          messages.SUCCESS)


# --- Products -------------------------------------------------------------------------------


class VariantInline(TabularInline):
    model = Variant
    form = VariantForm
    fields = [
        "sku", "name", "option_values", "price", "compare_at_price", "cost_price", "barcode",
        "is_active", "track_inventory", "allow_backorder", "position", "available",
    ]
    readonly_fields = ["available"]
    extra = 0
    min_num = 1
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Variant]:
        return with_variant_stock(super().get_queryset(request))

    @display(description=_("available"))
    def available(self, obj: Variant) -> str:
        if obj.pk is None:
            return "-"
        return variant_availability(obj)


class ProductImageInline(StackedInline):
    model = ProductImage
    # Image links are https; a scheme-less one gets https, as Django 6 will do by default.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = [("image", "source_url"), ("alt_text", "position")]
    extra = 0


@admin.register(Product)
class ProductAdmin(IndexedSearchMixin, GuardedActionsMixin, ModelAdmin):
    form = ProductAdminForm
    list_display = [
        "name", "category", "brand", "price_range", "discount", "stock_summary", "is_active",
        "is_featured",
    ]
    list_select_related = ["category"]
    list_filter = [
        ("category", CategoryTreeFilter),
        ("brand", FieldTextFilter),
        ("is_active", BooleanRadioFilter),
        ("is_featured", BooleanRadioFilter),
        ProductStockStatusFilter,
    ]
    list_filter_submit = True
    search_fields = ["name"]
    # An exact SKU or barcode alone; else every word in the name, or starting a SKU
    # (backoffice.admin_search: variants match in a subquery, so a product shows once).
    search_exact = ["variants__sku", "variants__barcode"]
    search_lookups = ["name__icontains", "variants__sku__istartswith"]
    search_help_text = _("A product name, or an exact SKU, SKU prefix or barcode.")
    ordering = ["-created_at", "-id"]
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    autocomplete_fields = ["category", "extra_categories"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at", "stock_by_warehouse"]
    inlines = [VariantInline, ProductImageInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "brand", "product_type"]}),
        (_("Stock"), {"fields": ["stock_by_warehouse"]}),
        (_("Categories"), {"fields": ["category", "extra_categories", "google_category_id"]}),
        (_("Attributes"), {"fields": ["attributes", "tags"]}),
        (_("Publishing"), {"fields": ["is_active", "is_featured", "created_at", "updated_at"]}),
        (_("SEO"), {"fields": ["seo_title", "seo_description"]}),
    ]
    actions = [
        "publish", "unpublish", "feature", "unfeature", "change_prices", "move_to_category",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return with_product_stock(selectors.with_price_range(super().get_queryset(request)))

    @display(description=_("stock per warehouse"))
    def stock_by_warehouse(self, obj: Product) -> str:
        """Every variant's stock in every warehouse, in one query; each row links to the stock
        page, where it is adjusted (with a movement) and its history is."""
        if obj.pk is None:
            return "-"
        if not hasattr(obj, "_stock_table"):  # the page asks for a read-only field more than once
            obj._stock_table = self._stock_table(obj)
        return obj._stock_table

    def _stock_table(self, obj: Product) -> str:
        """Drawn by unfold's table component, as its dashboards draw theirs."""
        rows = with_stock_levels(
            Stock.objects.filter(variant__product=obj).select_related("variant", "warehouse")
        ).order_by("variant__position", "variant__sku", "warehouse__name")
        table_rows = [
            [
                format_html(
                    '<a href="{}" class="text-link">{}</a>',
                    reverse("admin:inventory_stock_change", args=[stock.pk]), stock.variant.sku,
                ),
                stock.warehouse.name, stock.quantity, stock.quantity_allocated, stock.available,
                display_for_label(
                    (stock.stock_status, stock_status_label(stock.stock_status)), "",
                    STATUS_COLOURS,
                ),
            ]
            for stock in rows
        ]
        if not table_rows:
            return _("No stock yet: add it on a variant's page, or import a stock file.")
        headers = [_("SKU"), _("warehouse"), _("on hand"), _("allocated"), _("available"),
                   _("status")]
        return render_to_string(
            "unfold/components/table.html", {"table": {"headers": headers, "rows": table_rows}}
        )

    # Not sortable: ordering 100k products by a per-product aggregate takes seconds.
    @display(description=_("price"))
    def price_range(self, obj: Product) -> str:
        if obj.price_from is None:
            return "-"
        if obj.price_from == obj.price_to:
            return format_money(obj.price_from)
        return f"{format_money(obj.price_from)} – {quantize(obj.price_to):,}"

    @display(description=_("discount"))
    def discount(self, obj: Product) -> str:
        return f"up to {format_percent(obj.discount_max)}" if obj.discount_max is not None else ""

    @display(description=_("available"), label=STATUS_COLOURS)
    def stock_summary(self, obj: Product) -> tuple[str, str]:
        return obj.stock_status, f"{obj.available_total} · {stock_status_label(obj.stock_status)}"

    def _ids(self, queryset: QuerySet) -> QuerySet:
        return queryset.values("pk")

    @action(description=_("Publish"), permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        count = services.set_products_published(product_ids=self._ids(queryset), published=True)
        self.message_user(request, ngettext("%d product published.", "%d products published.",
                                            count) % count, messages.SUCCESS)

    @action(description=_("Unpublish"), permissions=["change"])
    def unpublish(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        count = services.set_products_published(product_ids=self._ids(queryset), published=False)
        self.message_user(request, ngettext("%d product unpublished.",
                                            "%d products unpublished.", count) % count,
                          messages.SUCCESS)

    @action(description=_("Feature"), permissions=["change"])
    def feature(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        count = services.set_products_featured(product_ids=self._ids(queryset), featured=True)
        self.message_user(request, ngettext("%d product featured.", "%d products featured.",
                                            count) % count, messages.SUCCESS)

    @action(description=_("Unfeature"), permissions=["change"])
    def unfeature(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        count = services.set_products_featured(product_ids=self._ids(queryset), featured=False)
        self.message_user(request, ngettext("%d product unfeatured.", "%d products unfeatured.",
                                            count) % count, messages.SUCCESS)

    @action(description=_("Change prices by a percentage"), permissions=["change"])
    def change_prices(self, request: HttpRequest, queryset: QuerySet[Product]):
        def apply(data: dict) -> None:
            try:
                count = services.change_prices_by_percentage(
                    product_ids=self._ids(queryset),
                    percentage=data["percentage"],
                    include_compare_at=data["include_compare_at"],
                )
            except services.PriceChangeError as error:
                self.message_user(request, str(error), messages.ERROR)
                return
            self.message_user(
                request, ngettext("Changed the price of %d variant.",
                                  "Changed the price of %d variants.", count) % count,
                messages.SUCCESS,
            )

        return form_action(
            self, request, queryset, form_class=PercentagePriceChangeForm,
            action_name="change_prices", intro=_("Change the prices of the selected products"),
            submit_label=_("Change prices"), apply=apply,
        )

    @action(description=_("Move to a category"), permissions=["change"])
    def move_to_category(self, request: HttpRequest, queryset: QuerySet[Product]):
        def apply(data: dict) -> None:
            count = services.move_products_to_category(
                product_ids=self._ids(queryset), category=data["category"]
            )
            self.message_user(
                request,
                ngettext("Moved %(count)d product to %(category)s.",
                         "Moved %(count)d products to %(category)s.", count)
                % {"count": count, "category": data["category"].name},
                messages.SUCCESS,
            )

        return form_action(
            self, request, queryset, form_class=MoveProductsForm,
            action_name="move_to_category", intro=_("Move the selected products"),
            submit_label=_("Move"), apply=apply,
        )


# --- Variants and their stock -----------------------------------------------------------------


def apply_stock_adjustment(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    places: list[tuple[int, int]],
    data: dict,
) -> int:
    """Adjust or count stock of each (variant id, warehouse id) as the staff user; every change
    writes a movement. A refused change (below what is allocated) becomes an error message."""
    actor = Actor(user=request.user)
    done = 0
    for variant_id, warehouse_id in places:
        common = {
            "variant_id": variant_id, "warehouse_id": warehouse_id, "reason": data["reason"],
            "actor": actor, "reference": data["reference"], "note": data["note"],
        }
        try:
            if data["mode"] == AdjustStockForm.SET:
                set_stock_level(quantity=data["quantity"], **common)
            else:
                adjust_stock(quantity_change=data["quantity"], **common)
        except StockError as error:
            modeladmin.message_user(request, str(error), messages.ERROR)
            continue
        done += 1
    if done:
        modeladmin.message_user(
            request,
            ngettext("Stock adjusted for %d row.", "Stock adjusted for %d rows.", done) % done,
            messages.SUCCESS,
        )
    return done


class StockInline(TabularInline):
    """Stock per warehouse, read-only: changes go through the "Adjust stock" action, which
    writes the ledger. The threshold may be edited here."""

    model = Stock
    fields = ["warehouse", "quantity", "quantity_allocated", "available", "low_stock_threshold"]
    readonly_fields = ["warehouse", "quantity", "quantity_allocated", "available"]
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Stock]:
        # Each row's title is ``str(stock)``: SKU, product and warehouse, joined here.
        return super().get_queryset(request).select_related("warehouse", "variant__product")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @display(description=_("available"))
    def available(self, obj: Stock) -> int:
        return obj.quantity_available


@admin.register(Variant)
class VariantAdmin(IndexedSearchMixin, GuardedActionsMixin, ModelAdmin):
    form = VariantForm
    list_display = [
        "sku", "product_link", "name", "price_display", "compare_at_display", "discount",
        "available", "is_active",
    ]
    list_select_related = ["product"]
    list_filter = [
        ("is_active", BooleanRadioFilter), VariantStockStatusFilter,
        ("track_inventory", BooleanRadioFilter), ("allow_backorder", BooleanRadioFilter),
    ]
    list_filter_submit = True
    search_fields = ["sku", "barcode", "product__name"]
    # An exact SKU or barcode alone; else every word in the SKU or the product's name, or
    # starting the barcode (backoffice.admin_search).
    search_exact = ["sku", "barcode"]
    search_lookups = ["sku__icontains", "barcode__startswith", "product__name__icontains"]
    search_help_text = _("SKU (or part of it), barcode or product name.")
    ordering = ["-id"]
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    autocomplete_fields = ["product"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["product", "sku", "name", "option_values", "is_active", "position"]}),
        (_("Prices"), {"fields": ["price", "compare_at_price", "cost_price"]}),
        (_("Stock"), {"fields": ["track_inventory", "allow_backorder"]}),
        (_("Shipping"), {"fields": ["barcode", "weight_grams"]}),
        (_("Record"), {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [StockInline]
    actions = ["adjust_variant_stock"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Variant]:
        return with_variant_stock(selectors.with_discount(super().get_queryset(request)))

    @display(description=_("product"), ordering="product__name")
    def product_link(self, obj: Variant) -> str:
        url = reverse("admin:catalog_product_change", args=[obj.product_id])
        return format_html('<a href="{}">{}</a>', url, obj.product.name)

    @display(description=_("price"), ordering="price")
    def price_display(self, obj: Variant) -> str:
        return format_money(obj.price)

    @display(description=_("compare-at"), ordering="compare_at_price")
    def compare_at_display(self, obj: Variant) -> str:
        return format_money(obj.compare_at_price)

    @display(description=_("discount"), ordering="discount_percentage")
    def discount(self, obj: Variant) -> str:
        if obj.discount_percentage is None:
            return ""
        return f"{format_percent(obj.discount_percentage)} ({format_money(obj.discount_amount)})"

    @display(description=_("available"), label=STATUS_COLOURS)
    def available(self, obj: Variant) -> tuple[str, str]:
        return obj.stock_status, variant_availability(obj)

    def has_adjust_stock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ADJUST_STOCK)

    @action(description=_("Adjust stock"), permissions=["adjust_stock"])
    def adjust_variant_stock(self, request: HttpRequest, queryset: QuerySet[Variant]):
        def apply(data: dict) -> None:
            warehouse_id = data["warehouse"].pk
            variant_ids = queryset.order_by("pk").values_list("pk", flat=True)
            places = [(variant_id, warehouse_id) for variant_id in variant_ids]
            apply_stock_adjustment(self, request, places, data)

        return form_action(
            self, request, queryset, form_class=VariantAdjustStockForm,
            action_name="adjust_variant_stock",
            intro=_("Adjust the stock of the selected variants"),
            submit_label=_("Adjust stock"), apply=apply,
        )
