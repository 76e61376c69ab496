"""Coupons in the admin: the list, the form with clear messages, redemptions, CSV import/export.

The database holds the rules (a positive value, at most 100 percent, a window that ends after it
starts, a code unique whatever its case, uses within the limit); ``coupon_problems`` says in
words what breaks one of them, so the form and the import show a sentence next to the field
instead of a constraint name or an ``IntegrityError``.

Import and export (CSV or XLSX, django-import-export) use one set of columns: ``code``,
``description``, ``kind``, ``value``, ``starts_at``, ``ends_at``, ``usage_limit``,
``usage_limit_per_customer``, ``minimum_subtotal``, ``is_active``, ``categories`` (paths such as
``men/shirts``, or ids, separated by ``|``), ``products`` (slugs, ``|``) and, exported only,
``times_used``. Rows match coupons by code whatever its case; an exported file imports back with
every row unchanged. A file with any bad row imports nothing (one transaction), and the preview
names each bad row, its column and what is wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.db.models.functions import Upper
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from import_export import resources
from import_export.admin import ImportExportModelAdmin
from import_export.fields import Field
from import_export.formats.base_formats import CSV, XLSX
from import_export.widgets import (
    BooleanWidget,
    CharWidget,
    DecimalWidget,
    IntegerWidget,
    ManyToManyWidget,
    Widget,
)
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import BooleanRadioFilter, ChoicesDropdownFilter
from unfold.contrib.import_export.forms import ExportForm, ImportForm
from unfold.decorators import action, display

from backoffice.admin_records import ReadOnlyRecord
from backoffice.catalog.admin import EstimatedCountPaginator, format_money
from backoffice.catalog.models import Category, Product
from backoffice.orders.admin import SpreadsheetExportMixin, SpreadsheetXLSX
from backoffice.promotions.models import Coupon, CouponRedemption

# The fields a coupon's rules read, as the form and the import hand them over.
RULE_FIELDS = ("kind", "value", "starts_at", "ends_at", "usage_limit",
               "usage_limit_per_customer", "minimum_subtotal")


def code_taken(code: str, *, exclude_pk: int | None = None) -> bool:
    """Another coupon has this code, whatever the case (the ``Upper(code)`` unique index)."""
    others = Coupon.objects.annotate(code_upper=Upper("code")).filter(code_upper=code.upper())
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    return others.exists()


def coupon_problems(data: Mapping, *, times_used: int = 0) -> dict[str, str]:
    """What in ``data`` (missing keys are not checked) breaks a coupon rule, by field."""
    problems: dict[str, str] = {}
    kind, value = data.get("kind"), data.get("value")
    if kind is not None and kind not in Coupon.Kind.values:
        problems["kind"] = _("Choose percentage or fixed.")
    if value is not None:
        if value <= 0:
            problems["value"] = _("The value must be more than zero.")
        elif kind == Coupon.Kind.PERCENTAGE and value > 100:
            problems["value"] = _("A percentage cannot be more than 100.")
    starts, ends = data.get("starts_at"), data.get("ends_at")
    if starts is not None and ends is not None and ends <= starts:
        problems["ends_at"] = _("The end of the validity window must be after its start.")
    for name in ("usage_limit", "usage_limit_per_customer"):
        limit = data.get(name)
        if limit is not None and limit < 1:
            problems[name] = _("At least 1; leave it empty for no limit.")
    limit = data.get("usage_limit")
    if limit is not None and "usage_limit" not in problems and limit < times_used:
        problems["usage_limit"] = ngettext(
            "This coupon has been used %(count)d time already: the limit cannot be lower.",
            "This coupon has been used %(count)d times already: the limit cannot be lower.",
            times_used,
        ) % {"count": times_used}
    minimum = data.get("minimum_subtotal")
    if minimum is not None and minimum < 0:
        problems["minimum_subtotal"] = _("The minimum subtotal cannot be negative.")
    return problems


def _code_in_use_message(code: str) -> str:
    return _("A coupon with the code %(code)s already exists (codes are the same whatever "
             "their case).") % {"code": code}


class CouponAdminForm(forms.ModelForm):
    class Meta:
        model = Coupon
        fields = [
            "code", "description", "kind", "value", "starts_at", "ends_at", "usage_limit",
            "usage_limit_per_customer", "minimum_subtotal", "categories", "products",
            "is_active",
        ]

    def clean_code(self) -> str:
        code = (self.cleaned_data.get("code") or "").strip()
        if not code:
            raise forms.ValidationError(_("Enter a code."))
        if code_taken(code, exclude_pk=self.instance.pk):
            raise forms.ValidationError(_code_in_use_message(code))
        return code

    def clean(self) -> dict:
        cleaned = super().clean()
        # Fields that failed already are missing from ``cleaned``, so they are not re-checked;
        # a field with a problem is then left out of the model's own constraint checks.
        data = {name: cleaned.get(name) for name in RULE_FIELDS if name not in self.errors}
        for field, message in coupon_problems(data, times_used=self.instance.times_used).items():
            self.add_error(field, message)
        return cleaned


# --- Import and export --------------------------------------------------------------------------


class TextWidget(CharWidget):
    def clean(self, value, row=None, **kwargs) -> str:
        return "" if value is None else str(value).strip()


class StrictBooleanWidget(BooleanWidget):
    """1/0, true/false, yes/no (any case); anything else is an error, not a silent "no"."""

    TRUE = {"1", "true", "yes", "y"}
    FALSE = {"0", "false", "no", "n"}

    def clean(self, value, row=None, **kwargs) -> bool:
        if isinstance(value, bool):
            return value
        text = "" if value is None else str(value).strip().lower()
        if text.endswith(".0"):  # a spreadsheet's 1.0
            text = text[:-2]
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise ValueError(_("Write 1 or 0 (or true or false)."))


class KindWidget(CharWidget):
    def clean(self, value, row=None, **kwargs) -> str:
        text = "" if value is None else str(value).strip().lower()
        for kind, label in Coupon.Kind.choices:
            if text in (kind, str(label).lower()):
                return kind
        raise ValueError(_("Write percentage or fixed."))


class MoneyWidget(DecimalWidget):
    def clean(self, value, row=None, **kwargs) -> Decimal | None:
        try:
            return super().clean(value, row, **kwargs)
        except (InvalidOperation, ValueError):
            raise ValueError(_("Not a number: %(value)s.") % {"value": value}) from None


class CountWidget(IntegerWidget):
    def clean(self, value, row=None, **kwargs) -> int | None:
        try:
            number = super().clean(value, row, **kwargs)
        except (InvalidOperation, ValueError):
            raise ValueError(_("Not a whole number: %(value)s.") % {"value": value}) from None
        return number


class DateTimeCellWidget(Widget):
    """ISO 8601 in the store's time zone with its offset (``2026-12-01 00:00:00+03:00``), so
    an export imports back to the same instant. Reads that, ``2026-12-01 09:30`` or a date
    alone (midnight) in the store's time zone, and a spreadsheet's own date cells."""

    def clean(self, value, row=None, **kwargs) -> dt.datetime | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, dt.date):
            parsed = dt.datetime.combine(value, dt.time.min)
        else:
            text = str(value).strip()
            try:
                parsed = parse_datetime(text)
                if parsed is None and (day := parse_date(text)) is not None:
                    parsed = dt.datetime.combine(day, dt.time.min)
            except ValueError:
                parsed = None
            if parsed is None:
                raise ValueError(
                    _("Not a date and time: %(value)s (write 2026-12-31 23:59).")
                    % {"value": text}
                )
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed)
        return parsed

    def render(self, value, obj=None, **kwargs) -> str:
        # Text in XLSX too: a spreadsheet's date cell has no time zone and rounds the time.
        return "" if value is None else timezone.localtime(value).isoformat(sep=" ")


class _ReferenceListWidget(ManyToManyWidget):
    """``|``-separated references to catalog rows; an unknown one is an error naming it."""

    def __init__(self, model, field: str) -> None:
        super().__init__(model, separator="|", field=field)

    def references(self, value) -> list[str]:
        if value is None:
            return []
        if isinstance(value, int | float):
            return [str(int(value))]
        return [part.strip() for part in str(value).split(self.separator) if part.strip()]

    def match(self, references: list[str]) -> Q:
        return Q(**{f"{self.field}__in": references})

    def found(self, obj) -> set[str]:
        return {str(getattr(obj, self.field))}

    def clean(self, value, row=None, **kwargs) -> QuerySet:
        references = self.references(value)
        if not references:
            return self.model.objects.none()
        rows = list(self.model.objects.filter(self.match(references)))
        known = set().union(*(self.found(obj) for obj in rows)) if rows else set()
        unknown = [reference for reference in references if reference not in known]
        if unknown:
            raise ValueError(
                _("Unknown %(what)s: %(names)s.")
                % {"what": self.model._meta.verbose_name_plural, "names": ", ".join(unknown)}
            )
        return self.model.objects.filter(pk__in=[obj.pk for obj in rows])


class CategoriesWidget(_ReferenceListWidget):
    """Category paths (``men/shirts``) or ids; exported as paths."""

    def __init__(self) -> None:
        super().__init__(Category, field="path")

    def match(self, references: list[str]) -> Q:
        ids = [int(reference) for reference in references if reference.isdigit()]
        return Q(path__in=references) | Q(pk__in=ids)

    def found(self, obj) -> set[str]:
        return {obj.path, str(obj.pk)}


class ProductsWidget(_ReferenceListWidget):
    def __init__(self) -> None:
        super().__init__(Product, field="slug")


class CouponResource(resources.ModelResource):
    code = Field(attribute="code", column_name="code", widget=TextWidget())
    description = Field(attribute="description", column_name="description",
                        widget=TextWidget())
    kind = Field(attribute="kind", column_name="kind", widget=KindWidget())
    value = Field(attribute="value", column_name="value", widget=MoneyWidget())
    starts_at = Field(attribute="starts_at", column_name="starts_at",
                      widget=DateTimeCellWidget())
    ends_at = Field(attribute="ends_at", column_name="ends_at", widget=DateTimeCellWidget())
    usage_limit = Field(attribute="usage_limit", column_name="usage_limit",
                        widget=CountWidget())
    usage_limit_per_customer = Field(attribute="usage_limit_per_customer",
                                     column_name="usage_limit_per_customer",
                                     widget=CountWidget())
    minimum_subtotal = Field(attribute="minimum_subtotal", column_name="minimum_subtotal",
                             widget=MoneyWidget())
    is_active = Field(attribute="is_active", column_name="is_active",
                      widget=StrictBooleanWidget())
    categories = Field(attribute="categories", column_name="categories",
                       widget=CategoriesWidget())
    products = Field(attribute="products", column_name="products", widget=ProductsWidget())
    times_used = Field(attribute="times_used", column_name="times_used", readonly=True,
                       widget=IntegerWidget())

    class Meta:
        model = Coupon
        name = _("Coupons")
        fields = (
            "code", "description", "kind", "value", "starts_at", "ends_at", "usage_limit",
            "usage_limit_per_customer", "minimum_subtotal", "is_active", "categories",
            "products", "times_used",
        )
        export_order = fields
        import_id_fields = ("code",)
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True
        use_transactions = True

    def get_instance(self, instance_loader, row):
        """The coupon with this code whatever its case, as checkout finds it."""
        code = str(row.get("code") or "").strip()
        if not code:
            return None
        return Coupon.objects.annotate(code_upper=Upper("code")).filter(
            code_upper=code.upper()
        ).first()

    def filter_export(self, queryset: QuerySet, **kwargs) -> QuerySet:
        return queryset.prefetch_related("categories", "products")

    def import_instance(self, instance, row, **kwargs) -> None:
        """Also read the category and product columns now, so an unknown one is this row's
        validation error (they are written after the coupon is saved)."""
        errors: dict = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        for field in self.get_import_fields():
            if isinstance(field.widget, ManyToManyWidget) and field.column_name in row:
                try:
                    field.clean(row)
                except ValueError as error:
                    errors[field.attribute] = ValidationError(str(error), code="invalid")
        if errors:
            raise ValidationError(errors)

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        errors = dict(import_validation_errors or {})
        data = {name: getattr(instance, name) for name in RULE_FIELDS if name not in errors}
        times_used = instance.times_used if instance.pk else 0
        for field, message in coupon_problems(data, times_used=times_used).items():
            errors[field] = ValidationError(message, code="invalid")
        if "code" not in errors:
            if not (instance.code or "").strip():
                errors["code"] = ValidationError(_("Enter a code."), code="required")
            elif code_taken(instance.code.strip(), exclude_pk=instance.pk):
                errors["code"] = ValidationError(_code_in_use_message(instance.code.strip()),
                                                 code="unique")
        super().validate_instance(instance, errors, validate_unique)


# --- The coupon admin -------------------------------------------------------------------------


class RedemptionInline(ReadOnlyRecord, TabularInline):
    model = CouponRedemption
    verbose_name_plural = _("redemptions")
    fields = ["created_at", "order_link", "email", "discount"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    extra = 0
    can_delete = False
    hide_title = True
    per_page = 20

    def get_queryset(self, request: HttpRequest) -> QuerySet[CouponRedemption]:
        return super().get_queryset(request).select_related("order")


    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("promotions.view_coupon") or request.user.has_perm(
            "promotions.change_coupon"
        )

    @display(description=_("order"))
    def order_link(self, obj: CouponRedemption) -> str:
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order)


@admin.register(Coupon)
class CouponAdmin(SpreadsheetExportMixin, ModelAdmin, ImportExportModelAdmin):
    form = CouponAdminForm
    list_display = ["code", "kind", "value_display", "window", "uses", "is_active"]
    list_filter = [("is_active", BooleanRadioFilter), ("kind", ChoicesDropdownFilter)]
    list_filter_submit = True
    search_fields = ["code"]
    search_help_text = _("A code, or part of one.")
    ordering = ["-created_at", "-id"]
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    autocomplete_fields = ["categories", "products"]
    readonly_fields = ["times_used", "created_at"]
    fieldsets = [
        (None, {"fields": ["code", "description", "kind", "value", "is_active"]}),
        (_("When and how often"), {"fields": [
            "starts_at", "ends_at", "usage_limit", "usage_limit_per_customer", "times_used",
        ]}),
        (_("What it applies to"), {"fields": ["minimum_subtotal", "categories", "products"]}),
        (_("Record"), {"fields": ["created_at"]}),
    ]
    inlines = [RedemptionInline]
    # CSV/XLSX import and export.
    resource_classes = [CouponResource]
    import_form_class = ImportForm
    export_form_class = ExportForm  # every column, so a file always imports back
    import_formats = [CSV, XLSX]
    export_formats = [CSV, SpreadsheetXLSX]
    # The checked file waits between the preview and "Confirm import" in the cache (Redis when
    # several web processes run), not on one server's disk.
    tmp_storage_class = "import_export.tmp_storages.CacheStorage"

    actions = ["activate", "deactivate"]

    def get_actions(self, request: HttpRequest) -> dict:
        # A used coupon is kept (its redemptions are the history of orders); unused ones are
        # deleted one at a time from their page.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: Coupon | None = None) -> bool:
        if obj is not None and obj.times_used:
            return False
        return super().has_delete_permission(request, obj)

    @action(description=_("Activate"), permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Coupon]) -> None:
        count = queryset.update(is_active=True)
        messages.success(request, ngettext("%(count)d coupon activated.",
                                           "%(count)d coupons activated.", count)
                         % {"count": count})

    @action(description=_("Deactivate"), permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Coupon]) -> None:
        count = queryset.update(is_active=False)
        messages.success(request, ngettext("%(count)d coupon deactivated.",
                                           "%(count)d coupons deactivated.", count)
                         % {"count": count})

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_import_data_kwargs(self, **kwargs) -> dict:
        # The confirmed import too rolls back on any bad row (the file may have changed).
        return {**super().get_import_data_kwargs(**kwargs), "rollback_on_validation_errors": True}

    @display(description=_("value"), ordering="value")
    def value_display(self, obj: Coupon) -> str:
        if obj.kind == Coupon.Kind.PERCENTAGE:
            return f"{obj.value.normalize():f}%"
        return format_money(obj.value)

    @display(description=_("valid"))
    def window(self, obj: Coupon) -> str:
        def day(moment):
            return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")

        if obj.starts_at and obj.ends_at:
            return f"{day(obj.starts_at)} – {day(obj.ends_at)}"
        if obj.starts_at:
            return _("from %(start)s") % {"start": day(obj.starts_at)}
        if obj.ends_at:
            return _("until %(end)s") % {"end": day(obj.ends_at)}
        return _("always")

    @display(description=_("uses"), ordering="times_used")
    def uses(self, obj: Coupon) -> str:
        limit = obj.usage_limit if obj.usage_limit is not None else "∞"
        return f"{obj.times_used} / {limit}"
