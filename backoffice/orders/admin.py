"""Orders in the admin: the list a fulfilment clerk works from, the order page, and the actions
that move an order along.

An order's money and lines are snapshots taken at checkout, so the order page is read-only (no
"add order" either: orders come from checkout). Everything that changes an order goes through
``backoffice.orders.services`` with the staff user as the actor: status moves, shipments,
refunds and notes. An order's page offers only the actions its states allow (asked of
``services.refusal``, the same words the services refuse with); a refused action (a bulk action
on some orders, a stale page, a direct POST) shows the service's message, never an error page,
and changes nothing. The list, its filters and the page show the overall status beside the
payment and fulfilment states.

Queries: the list annotates its item count in the page's one results query and pages through
``EstimatedCountPaginator`` (no full ``COUNT`` of a big unfiltered table on PostgreSQL); the
order page reads the order, then each inline once (shipment and refund lines prefetched).

The export (CSV or XLSX, django-import-export) offers two files:

- **Orders**, one row per order, the default: what an accountant reconciles. Each money column
  (subtotal, discount, shipping, total, refunded, net) sums to the period's figure, which a file
  that repeats order totals on every line would not.
- **Order lines**, one row per line with its order's number, date, status and customer: sales
  by product. It carries line amounts only, so its columns also sum correctly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import (
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, ngettext_lazy
from import_export import resources
from import_export.admin import ExportMixin
from import_export.fields import Field
from import_export.formats.base_formats import CSV, XLSX
from import_export.widgets import DateTimeWidget, DecimalWidget, IntegerWidget
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import DropdownFilter
from unfold.contrib.import_export.forms import SelectableFieldsExportForm
from unfold.decorators import action, display
from unfold.widgets import (
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldAdminURLInputWidget,
    UnfoldBooleanSwitchWidget,
)

from backoffice import permissions
from backoffice.admin_access import GuardedActionsMixin, permission_check
from backoffice.admin_filters import DayRangeFilter, parse_day, start_of_day
from backoffice.admin_navigation import _counted_once
from backoffice.admin_records import ReadOnlyRecord
from backoffice.admin_search import IndexedSearchMixin
from backoffice.catalog.admin import EstimatedCountPaginator
from backoffice.inventory.services import Actor
from backoffice.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS, format_money
from backoffice.notifications.admin import order_timeline_message
from backoffice.notifications.models import Notification
from backoffice.notifications.phones import e164_or_blank
from backoffice.orders import services
from backoffice.orders.models import (
    Order,
    OrderEvent,
    OrderLine,
    Refund,
    RefundLine,
    Shipment,
    ShipmentLine,
)
from backoffice.orders.selectors import (
    LATE_DELIVERY_DAYS,
    awaiting_payment_q,
    late_delivery_q,
    payment_failed_q,
    refund_due_q,
    to_fulfil_q,
)
from backoffice.orders.status import (
    FulfilmentStatus,
    IllegalTransition,
    OrderStatus,
    PaymentStatus,
)
from backoffice.payments import services as payments
from backoffice.payments.models import Payment
from backoffice.plugin_host.services import payment_providers, shipping_methods

STATUS_COLOURS = {
    OrderStatus.OPEN.value: "info",
    OrderStatus.CANCELLED.value: "danger",
    # completed: the neutral grey
}
PAYMENT_COLOURS = {
    PaymentStatus.UNPAID.value: "warning",
    PaymentStatus.PAID.value: "success",
    PaymentStatus.PARTIALLY_REFUNDED.value: "warning",
    PaymentStatus.OVERPAID.value: "danger",
    # refunded: the neutral grey
}
FULFILMENT_COLOURS = {
    FulfilmentStatus.UNFULFILLED.value: "warning",
    FulfilmentStatus.PARTIALLY_SHIPPED.value: "info",
    FulfilmentStatus.SHIPPED.value: "info",
    FulfilmentStatus.PARTIALLY_DELIVERED.value: "info",
    FulfilmentStatus.DELIVERED.value: "success",
}
# At most this many refusals are listed one by one after a bulk action.
MAX_ERROR_MESSAGES = 10
ORDER_ERRORS = (services.OrderError, IllegalTransition, payments.PaymentError)
# The order page's actions, and what ``services.refusal`` calls each.
DETAIL_ACTIONS = {
    "mark_paid_detail": "mark_paid", "mark_delivered_detail": "deliver",
    "cancel_detail": "cancel", "create_shipment": "ship", "record_refund": "refund",
}


def address_lines(address: dict | None) -> list[str]:
    """A snapshot address as the lines of a label."""
    address = address or {}
    name = " ".join(p for p in (address.get("first_name"), address.get("last_name")) if p)
    place = " ".join(p for p in (address.get("city"), address.get("region"),
                                 address.get("postal_code")) if p)
    lines = [name, address.get("company"), address.get("line1"), address.get("line2"), place,
             address.get("country"), address.get("phone")]
    return [line for line in lines if line]


class SpreadsheetXLSX(XLSX):
    """XLSX whose numbers and dates stay numbers and dates. The store escapes formulae in
    exports (``IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT``); the library does it by turning every
    cell into text (``None`` into "None"), so an accountant's sums would not add up. Text cells
    are still escaped."""

    def _escape_formulae(self, dataset) -> None:
        for _position in range(len(dataset)):
            row = dataset.lpop()
            dataset.append([
                cell.replace("=", "", 1) if isinstance(cell, str) and cell.startswith("=")
                else cell
                for cell in row
            ])


class SpreadsheetExportMixin:
    """For an admin with an export: its ``SpreadsheetXLSX`` files get native values (the
    library decides that by the exact format class, so a subclass would get text)."""

    def get_export_data(self, file_format, request: HttpRequest, queryset, **kwargs):
        if not isinstance(file_format, SpreadsheetXLSX):
            return super().get_export_data(file_format, request, queryset, **kwargs)
        if not self.has_export_permission(request):
            raise PermissionDenied
        data = self.get_data_for_export(request, queryset, force_native_type=True, **kwargs)
        return file_format.export_data(data)


def orders_to_fulfil_badge(request: HttpRequest) -> str:
    """The sidebar badge: orders to fulfil (``selectors.to_fulfil_q``: open, paid or paid on
    delivery, something left to ship; a partial index covers the open unshipped ones)."""
    return _counted_once(
        request, "orders_to_fulfil", Order.objects.filter(to_fulfil_q()).count
    )


def _record_payment(pk: int, actor: Actor, note: str = "") -> None:
    """Staff received the money: a manual payment through the payments service. An order paid
    already is refused here (the service leaves it as it is), in the services' words."""
    if payments.record_manual_payment(pk, actor=actor, note=note) is None:
        raise services.OrderError(services.refusal(Order.objects.get(pk=pk), "mark_paid"))


# --- Filters ------------------------------------------------------------------------------------


class OrderStatusFilter(DropdownFilter):
    """Each overall status, plus the lists people work through: "to fulfil" (paid or paid on
    delivery, something left to ship), "awaiting payment", "payment failed" (awaiting payment,
    the last attempt failed), "delivery late" (shipped a week ago, not delivered) and "refund
    due"."""

    title = _("status")
    parameter_name = "status"
    TO_FULFIL = "to_fulfil"
    AWAITING_PAYMENT = "awaiting_payment"
    REFUND_DUE = "refund_due"
    PAYMENT_FAILED = "payment_failed"
    DELIVERY_LATE = "delivery_late"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [
            (self.TO_FULFIL, _("To fulfil (paid or paid on delivery, not all shipped)")),
            (self.AWAITING_PAYMENT, _("Awaiting payment")),
            (self.PAYMENT_FAILED, _("Payment failed (awaiting payment, the attempt failed)")),
            (self.DELIVERY_LATE, _("Delivery late (shipped over %(days)d days ago, not "
                                   "delivered)") % {"days": LATE_DELIVERY_DAYS}),
            (self.REFUND_DUE, _("Refund due (money held for a cancelled order, paid twice)")),
            *OrderStatus.choices,
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == self.TO_FULFIL:
            return queryset.filter(to_fulfil_q())
        if value == self.AWAITING_PAYMENT:
            return queryset.filter(awaiting_payment_q())
        if value == self.REFUND_DUE:
            return queryset.filter(refund_due_q())
        if value == self.PAYMENT_FAILED:
            return queryset.filter(payment_failed_q())
        if value == self.DELIVERY_LATE:
            return queryset.filter(late_delivery_q())
        if value in OrderStatus.values:
            return queryset.filter(status=value)
        return queryset


class _ChoicesFilter(DropdownFilter):
    """A state's values (no query for the choices)."""

    states: type[PaymentStatus] | type[FulfilmentStatus]

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return list(self.states.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in self.states.values:
            return queryset.filter(**{self.parameter_name: self.value()})
        return queryset


class PaymentStatusFilter(_ChoicesFilter):
    title = _("payment")
    parameter_name = "payment_status"
    states = PaymentStatus


class FulfilmentStatusFilter(_ChoicesFilter):
    title = _("fulfilment")
    parameter_name = "fulfilment_status"
    states = FulfilmentStatus


class _MethodFilter(DropdownFilter):
    """Choices from the plugins' registries (no scan of the orders table), plus the value in the
    URL when its plugin has gone, so the filter still shows what is applied."""

    field = ""

    def registry(self) -> Iterable[tuple[str, str]]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        choices = dict(self.registry())
        if self.value() and self.value() not in choices:
            choices[self.value()] = self.value()
        return list(choices.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(**{self.field: self.value()})
        return queryset


class PaymentMethodFilter(_MethodFilter):
    title = _("payment method")
    parameter_name = "payment_method"
    field = "payment_method"

    def registry(self) -> Iterable[tuple[str, str]]:
        return [(p.code, getattr(p, "name", p.code)) for p in payment_providers()]


class ShippingMethodFilter(_MethodFilter):
    title = _("shipping method")
    parameter_name = "shipping_method"
    field = "shipping_method_code"

    def registry(self) -> Iterable[tuple[str, str]]:
        return [(m.code, m.name) for m in shipping_methods()]


class PlacedDateFilter(DayRangeFilter):
    """When orders were placed: whole days in the store's time zone, "to" included."""


class PaidDateFilter(DayRangeFilter):
    """When orders were paid (the day a sale counts in the reports): whole days in the store's
    time zone, "to" included."""


class _LinkedFilter(DropdownFilter):
    """A filter the dashboard's and the reports' links set (``?product=12``): no list of
    choices to read (no query); the applied value is shown, so it can be removed."""

    def describe(self, value: str) -> str:
        return value

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [(self.value(), self.describe(self.value()))] if self.value() else []

    def condition(self, value: str) -> Q | None:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if not self.value():
            return queryset
        condition = self.condition(self.value())
        return queryset.filter(condition) if condition is not None else queryset.none()


class ProductFilter(_LinkedFilter):
    """Orders with a line of one product (by id, as the order kept it)."""

    title = _("product")
    parameter_name = "product"

    def describe(self, value: str) -> str:
        return _("Product %(id)s") % {"id": value}

    def condition(self, value: str) -> Q | None:
        if not value.isdigit():
            return None
        return Q(pk__in=OrderLine.objects.filter(product_id_snapshot=int(value))
                 .values("order_id"))


class CategoryFilter(_LinkedFilter):
    """Orders with a line of a product whose primary category is this one ("none": products
    without a category)."""

    title = _("category")
    parameter_name = "category"

    def describe(self, value: str) -> str:
        return _("No category") if value == "none" else _("Category %(id)s") % {"id": value}

    def condition(self, value: str) -> Q | None:
        from backoffice.catalog.models import Product

        if value == "none":
            products = Product.objects.filter(category__isnull=True)
        elif value.isdigit():
            products = Product.objects.filter(category_id=int(value))
        else:
            return None
        return Q(pk__in=OrderLine.objects.filter(
            product_id_snapshot__in=products.values("pk")).values("order_id"))


class CouponFilter(_LinkedFilter):
    """Orders placed with a coupon code (any case)."""

    title = _("coupon")
    parameter_name = "coupon"

    def condition(self, value: str) -> Q | None:
        return Q(coupon_code__iexact=value)


class RefundedFilter(_LinkedFilter):
    """Orders with a refund recorded on the days ``from:to`` (the store's days, both
    included), as the refunds report counts them."""

    title = _("refunded")
    parameter_name = "refunded"

    def describe(self, value: str) -> str:
        return _("Refunded %(days)s") % {"days": value.replace(":", " – ")}

    def condition(self, value: str) -> Q | None:
        first, _sep, last = value.partition(":")
        first, last = parse_day(first), parse_day(last or first)
        if first is None or last is None:
            return None
        return Q(pk__in=Refund.objects.filter(
            status=Refund.Status.SUCCEEDED, created_at__gte=start_of_day(first),
            created_at__lt=start_of_day(last + timedelta(days=1))).values("order_id"))


# --- Forms of the order page ----------------------------------------------------------------


class NoteForm(forms.Form):
    note = forms.CharField(
        label=_("Note"), required=False, max_length=2000,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
    )


class RequiredNoteForm(NoteForm):
    note = forms.CharField(
        label=_("Note"), max_length=2000, widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text=_("Added to the order's timeline, with your name. Customers don't see it."),
    )


def _line_label(line: OrderLine) -> str:
    name = f"{line.product_name} – {line.variant_name}" if line.variant_name else line.product_name
    return f"{line.sku} · {name}"


class _LineQuantitiesForm(forms.Form):
    """A quantity field per order line (``line_<id>``), with the rows the template lays out."""

    def add_line_fields(self, lines: Iterable[OrderLine], most: Callable[[OrderLine], int],
                        initial: Callable[[OrderLine], int]) -> None:
        self.line_fields: list[tuple[OrderLine, str]] = []
        for line in lines:
            limit = most(line)
            if limit <= 0:
                continue
            name = f"line_{line.pk}"
            self.fields[name] = forms.IntegerField(
                label=_line_label(line), min_value=0, max_value=limit, initial=initial(line),
                required=False, widget=UnfoldAdminIntegerFieldWidget,
            )
            self.line_fields.append((line, name))

    def line_rows(self) -> list[tuple[OrderLine, forms.BoundField]]:
        return [(line, self[name]) for line, name in self.line_fields]

    def other_fields(self) -> list[forms.BoundField]:
        names = {name for _, name in self.line_fields}
        return [self[name] for name in self.fields if name not in names]

    def quantities(self) -> dict[int, int]:
        return {
            line.pk: self.cleaned_data[name]
            for line, name in self.line_fields if self.cleaned_data.get(name)
        }


class ShipmentForm(_LineQuantitiesForm):
    """``shippable``: ``{line id: units}`` from ``services.shippable_quantities``."""

    carrier = forms.CharField(label=_("Carrier"), max_length=120, required=False,
                              widget=UnfoldAdminTextInputWidget)
    tracking_number = forms.CharField(label=_("Tracking number"), max_length=120,
                                      required=False, widget=UnfoldAdminTextInputWidget)
    tracking_url = forms.URLField(label=_("Tracking URL"), max_length=500, required=False,
                                  assume_scheme="https", widget=UnfoldAdminURLInputWidget)

    def __init__(self, *args, lines: Iterable[OrderLine], shippable: dict[int, int],
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Everything that may ship now (services.shippable_quantities), unless the clerk
        # lowers a quantity.
        self.add_line_fields(lines, most=lambda ln: shippable[ln.pk],
                             initial=lambda ln: shippable[ln.pk])

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.errors and not self.quantities():
            raise forms.ValidationError(_("Choose at least one item to ship."))
        return cleaned


class RefundForm(_LineQuantitiesForm):
    amount = forms.DecimalField(
        label=_("Amount"), required=False, min_value=Decimal("0.01"),
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES,
        widget=UnfoldAdminDecimalFieldWidget,
        help_text=_("Empty: the value of the quantities below (their share of any discount "
                    "included)."),
    )
    restock = forms.BooleanField(
        label=_("Put returned items back on the shelf"), required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text=_("For shipped items that came back; items not shipped yet always go back."),
    )
    reason = forms.CharField(label=_("Reason"), max_length=255, required=False,
                             widget=UnfoldAdminTextInputWidget)
    by_hand = forms.BooleanField(
        label=_("Given back by hand"), required=False, widget=UnfoldBooleanSwitchWidget,
        help_text=_("The money went back outside the back office (cash, an M-Pesa reversal, "
                    "the provider's dashboard): record it without asking the provider."),
    )

    def __init__(self, *args, lines: Iterable[OrderLine], refundable: dict[int, int],
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_line_fields(lines, most=lambda ln: refundable[ln.pk], initial=lambda ln: 0)

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.errors and cleaned.get("amount") is None and not self.quantities():
            raise forms.ValidationError(_("Enter an amount, or the quantities refunded."))
        return cleaned


# --- Inlines (all read-only) -----------------------------------------------------------------


class _ReadOnlyInline(ReadOnlyRecord, TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False
    hide_title = True  # no per-row heading repeating the row's ``__str__``


    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        # Part of the order: whoever may see the order sees them.
        return request.user.has_perm("orders.view_order") or request.user.has_perm(
            "orders.change_order"
        )


class OrderLineInline(_ReadOnlyInline):
    model = OrderLine
    verbose_name_plural = _("lines")
    fields = ["sku", "product", "variant_name", "unit_price", "quantity", "discount_amount",
              "total", "quantity_shipped", "quantity_refunded"]
    readonly_fields = fields

    @display(description=_("product"))
    def product(self, obj: OrderLine) -> str:
        if obj.product_id_snapshot is None:
            return obj.product_name
        url = reverse("admin:catalog_product_change", args=[obj.product_id_snapshot])
        return format_html('<a href="{}">{}</a>', url, obj.product_name)


def _items(lines: Iterable) -> str:
    return ", ".join(f"{row.quantity} × {row.line.sku}" for row in lines)


class ShipmentInline(_ReadOnlyInline):
    model = Shipment
    fields = ["shipped_at", "carrier", "tracking", "items", "delivered_at"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Shipment]:
        return super().get_queryset(request).prefetch_related(
            Prefetch("lines", queryset=ShipmentLine.objects.select_related("line").order_by("id"))
        )

    @display(description=_("tracking"))
    def tracking(self, obj: Shipment) -> str:
        if obj.tracking_url:
            return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>',
                               obj.tracking_url, obj.tracking_number or obj.tracking_url)
        return obj.tracking_number or "-"

    @display(description=_("items"))
    def items(self, obj: Shipment) -> str:
        return _items(obj.lines.all())


class RefundInline(_ReadOnlyInline):
    model = Refund
    fields = ["created_at", "amount_display", "items", "restock", "reason", "status",
              "actor_label"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Refund]:
        return super().get_queryset(request).select_related("order").prefetch_related(
            Prefetch("lines", queryset=RefundLine.objects.select_related("line").order_by("id"))
        )

    @display(description=_("amount"))
    def amount_display(self, obj: Refund) -> str:
        return format_money(obj.amount, obj.order.currency)

    @display(description=_("items"))
    def items(self, obj: Refund) -> str:
        return _items(obj.lines.all()) or "-"


class PaymentInline(_ReadOnlyInline):
    model = Payment
    fields = ["created_at", "provider", "amount_display", "status", "provider_reference",
              "provider_payment_id", "message"]
    readonly_fields = fields
    ordering = ["created_at", "id"]
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Payment]:
        return super().get_queryset(request).select_related("order")

    @display(description=_("amount"))
    def amount_display(self, obj: Payment) -> str:
        refunded = (f" ({_('refunded')} {format_money(obj.amount_refunded, obj.currency)})"
                    if obj.amount_refunded else "")
        return format_money(obj.amount, obj.currency) + refunded


class OrderEventInline(_ReadOnlyInline):
    """The timeline, oldest first: every status move, shipment, refund, payment and note, and
    the messages sent about the order (``order.notifications``, prefetched by the order page)
    among them, each linking to its page."""

    model = OrderEvent
    verbose_name_plural = _("timeline")
    fields = ["created_at", "kind", "change", "by", "note"]
    readonly_fields = fields
    ordering = ["created_at", "id"]
    # One table of events and messages (the notifications app's template).
    template = "admin/notifications/order_timeline.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderEvent]:
        return super().get_queryset(request).select_related("actor")

    def get_formset(self, request: HttpRequest, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        inline = self
        link = request.user.has_perm("notifications.view_notification")

        class TimelineFormSet(formset):
            @cached_property
            def timeline(self) -> list[dict]:
                rows = [inline.timeline_event(event) for event in self.get_queryset()]
                if self.instance.pk is not None:
                    rows += [order_timeline_message(message, link=link)
                             for message in self.instance.notifications.all()]
                return sorted(rows, key=lambda row: (row["when"], row["order"]))

        return TimelineFormSet

    def timeline_event(self, obj: OrderEvent) -> dict:
        return {"when": obj.created_at, "kind": obj.get_kind_display(), "text": obj.change,
                "by": self.by(obj), "note": obj.note, "status": "", "url": "",
                "order": (0, obj.pk)}

    @display(description=_("status"))
    def change(self, obj: OrderEvent) -> str:
        return obj.change  # "Payment: unpaid → paid"

    @display(description=_("by"))
    def by(self, obj: OrderEvent) -> str:
        if obj.actor_label:
            return obj.actor_label
        return obj.actor.get_username() if obj.actor is not None else ""


# --- Export ---------------------------------------------------------------------------------


class _OrderColumns:
    """Columns about the order, for a resource whose rows are orders (``order = obj``) or
    lines (``order = obj.order``)."""

    @staticmethod
    def _order(obj) -> Order:
        return obj if isinstance(obj, Order) else obj.order

    def dehydrate_status(self, obj) -> str:
        return str(self._order(obj).get_status_display())

    def dehydrate_payment_status(self, obj) -> str:
        return str(self._order(obj).get_payment_status_display())

    def dehydrate_fulfilment_status(self, obj) -> str:
        return str(self._order(obj).get_fulfilment_status_display())

    def dehydrate_customer_name(self, obj) -> str:
        return self._order(obj).customer_name

    def dehydrate_shipping_country(self, obj) -> str:
        return (self._order(obj).shipping_address or {}).get("country", "")

    def dehydrate_shipping_city(self, obj) -> str:
        return (self._order(obj).shipping_address or {}).get("city", "")


class OrderResource(_OrderColumns, resources.ModelResource):
    """One row per order (export only)."""

    number = Field(attribute="number", column_name="number")
    placed_at = Field(attribute="created_at", column_name="placed_at", widget=DateTimeWidget())
    status = Field(column_name="status")
    payment_status = Field(column_name="payment_status")
    fulfilment_status = Field(column_name="fulfilment_status")
    paid_at = Field(attribute="paid_at", column_name="paid_at", widget=DateTimeWidget())
    email = Field(attribute="email", column_name="email")
    customer_name = Field(column_name="customer_name")
    phone = Field(attribute="phone", column_name="phone")
    shipping_country = Field(column_name="shipping_country")
    shipping_city = Field(column_name="shipping_city")
    payment_method = Field(attribute="payment_method", column_name="payment_method")
    shipping_method = Field(attribute="shipping_method_name", column_name="shipping_method")
    coupon_code = Field(attribute="coupon_code", column_name="coupon_code")
    items = Field(attribute="item_count", column_name="items", widget=IntegerWidget())
    currency = Field(attribute="currency", column_name="currency")
    subtotal = Field(attribute="subtotal", column_name="subtotal", widget=DecimalWidget())
    discount = Field(attribute="discount_total", column_name="discount", widget=DecimalWidget())
    shipping = Field(attribute="shipping_total", column_name="shipping", widget=DecimalWidget())
    total = Field(attribute="total", column_name="total", widget=DecimalWidget())
    refunded = Field(attribute="refunded_total", column_name="refunded", widget=DecimalWidget())
    net = Field(column_name="net", widget=DecimalWidget())

    class Meta:
        model = Order
        name = _("Orders (one row per order)")
        fields = (
            "number", "placed_at", "status", "payment_status", "fulfilment_status", "paid_at",
            "email", "customer_name", "phone",
            "shipping_country", "shipping_city", "payment_method", "shipping_method",
            "coupon_code", "items", "currency", "subtotal", "discount", "shipping", "total",
            "refunded", "net",
        )
        export_order = fields

    def filter_export(self, queryset: QuerySet, **kwargs) -> QuerySet:
        # The admin hands over its list (filters and search applied, item count annotated).
        if "item_count" not in queryset.query.annotations:
            queryset = with_item_count(queryset)
        return queryset

    def dehydrate_net(self, obj: Order) -> Decimal:
        return obj.total - obj.refunded_total


class OrderLineResource(_OrderColumns, resources.ModelResource):
    """One row per order line (export only), oldest order first."""

    order_number = Field(attribute="order__number", column_name="order_number")
    placed_at = Field(attribute="order__created_at", column_name="placed_at",
                      widget=DateTimeWidget())
    status = Field(column_name="status")
    payment_status = Field(column_name="payment_status")
    fulfilment_status = Field(column_name="fulfilment_status")
    email = Field(attribute="order__email", column_name="email")
    customer_name = Field(column_name="customer_name")
    shipping_country = Field(column_name="shipping_country")
    shipping_city = Field(column_name="shipping_city")
    currency = Field(attribute="order__currency", column_name="currency")
    sku = Field(attribute="sku", column_name="sku")
    product = Field(attribute="product_name", column_name="product")
    variant = Field(attribute="variant_name", column_name="variant")
    quantity = Field(attribute="quantity", column_name="quantity", widget=IntegerWidget())
    unit_price = Field(attribute="unit_price", column_name="unit_price", widget=DecimalWidget())
    line_discount = Field(attribute="discount_amount", column_name="line_discount",
                          widget=DecimalWidget())
    line_total = Field(attribute="total", column_name="line_total", widget=DecimalWidget())
    shipped = Field(attribute="quantity_shipped", column_name="shipped", widget=IntegerWidget())
    refunded = Field(attribute="quantity_refunded", column_name="refunded",
                     widget=IntegerWidget())

    class Meta:
        model = OrderLine
        name = _("Order lines (one row per line)")
        fields = (
            "order_number", "placed_at", "status", "payment_status", "fulfilment_status", "email",
            "customer_name", "shipping_country",
            "shipping_city", "currency", "sku", "product", "variant", "quantity", "unit_price",
            "line_discount", "line_total", "shipped", "refunded",
        )
        export_order = fields

    def filter_export(self, queryset: QuerySet, **kwargs) -> QuerySet:
        """The admin hands over orders: their lines, with the order joined (one query)."""
        if queryset.model is Order:
            queryset = OrderLine.objects.filter(order__in=queryset.values("pk"))
        return queryset.select_related("order").order_by("order__created_at", "order_id", "id")


def with_item_count(queryset: QuerySet[Order]) -> QuerySet[Order]:
    """``item_count``: the units ordered, a correlated subquery (computed for the rows read
    only, e.g. one page of the list)."""
    units = (
        OrderLine.objects.filter(order=OuterRef("pk")).order_by()
        .values("order").annotate(units=Sum("quantity")).values("units")
    )
    return queryset.annotate(
        item_count=Coalesce(Subquery(units, output_field=IntegerField()), 0)
    )


# --- The order admin ------------------------------------------------------------------------


class _ExportModelAdmin(ExportMixin, admin.ModelAdmin):
    """django-import-export's export before Django's ModelAdmin in the MRO (unfold's
    ``ModelAdmin`` comes first in the admin below)."""


@admin.register(Order)
class OrderAdmin(IndexedSearchMixin, GuardedActionsMixin, SpreadsheetExportMixin, ModelAdmin,
                 _ExportModelAdmin):
    list_display = [
        "number_display", "created_at", "customer", "status_label", "payment_label",
        "fulfilment_label", "total_display", "item_count", "payment_display", "shipping_display",
    ]
    list_display_links = ["number_display"]
    list_filter = [OrderStatusFilter, PaymentStatusFilter, FulfilmentStatusFilter,
                   ("created_at", PlacedDateFilter), ("paid_at", PaidDateFilter),
                   PaymentMethodFilter, ShippingMethodFilter, ProductFilter, CategoryFilter,
                   CouponFilter, RefundedFilter]
    list_filter_submit = True
    # The search is ``get_search_results`` (backoffice.admin_search): an order number, email,
    # phone or a line's SKU (``get_exact_search``) alone, else every word in the email or phone.
    # ``search_fields`` makes the box appear.
    search_fields = ["number", "email", "phone", "lines__sku"]
    search_lookups = ["email__icontains", "phone__contains"]
    search_help_text = _("An order number, an email (or part of it), a phone number, or an "
                         "exact SKU.")
    ordering = ["-created_at", "-id"]
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    inlines = [OrderLineInline, PaymentInline, ShipmentInline, RefundInline, OrderEventInline]
    actions = ["mark_paid", "mark_delivered", "cancel_orders"]
    actions_detail = [
        {"title": _("Status"), "icon": "sync_alt", "items": [
            "mark_paid_detail", "mark_delivered_detail", "cancel_detail",
        ]},
        {"title": _("Fulfil"), "icon": "local_shipping", "items": [
            "create_shipment", "record_refund",
        ]},
        {"title": _("Print"), "icon": "print", "items": ["packing_slip", "invoice"]},
        "add_note",
    ]
    change_form_outer_before_template = "admin/orders/order/summary.html"
    change_form_outer_after_template = "admin/orders/order/note_form.html"
    # Export (CSV/XLSX) of the filtered list.
    resource_classes = [OrderResource, OrderLineResource]
    export_formats = [CSV, SpreadsheetXLSX]
    export_form_class = SelectableFieldsExportForm

    # --- permissions: read-only record, changed only through the actions ---

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orders come from checkout

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # snapshots: the page is read-only, the actions change the order

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    # Each action has its own permission (``Order.Meta.permissions``, given by the roles in
    # ``backoffice.roles``): the page offers only the actions the user has, a direct request of
    # another is a 403, and the services check again.
    has_mark_paid_permission = permission_check(permissions.MARK_ORDER_PAID)
    has_ship_permission = permission_check(permissions.SHIP_ORDER)
    has_deliver_permission = permission_check(permissions.DELIVER_ORDER)
    has_refund_permission = permission_check(permissions.REFUND_ORDER)
    has_note_permission = permission_check(permissions.ADD_ORDER_NOTE)

    def has_cancel_permission(self, request: HttpRequest, obj=None) -> bool:
        """``orders.cancel_order``; or ``orders.cancel_unpaid_order`` for an unpaid order (any
        order on the list: the service refuses the paid ones, naming them). ``obj``: an order or
        its id (unfold passes the id)."""
        user = request.user
        if user.has_perm(permissions.CANCEL_ORDER):
            return True
        if not user.has_perm(permissions.CANCEL_UNPAID_ORDER):
            return False
        if obj is None:
            return True
        order = obj if isinstance(obj, Order) else (
            self.get_object(request, str(obj)) if str(obj).isdigit() else None)
        return order is not None and order.payment_status == PaymentStatus.UNPAID

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.EXPORT_ORDERS)

    # --- the list ---

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        return with_item_count(super().get_queryset(request))

    def get_exact_search(self, request: HttpRequest, term: str) -> list[tuple[str, object]]:
        """An order number (``#10001`` too), an email (any case), a phone number as staff type
        it (``0712 345 678`` is ``+254712345678`` in a Kenyan store), a line's SKU: each by its
        index. (Only the orders' own columns are left for the contains step, which the database
        may then answer by walking the newest orders when most of them match.)"""
        exact = [("lines__sku", term)]
        number = term.removeprefix("#")
        if number.isdigit():
            exact.append(("number", number))
        if "@" in term:
            exact.append(("email__iexact", term))
        if sum(ch.isdigit() for ch in term) >= 7 and (phone := e164_or_blank(term)):
            exact.append(("phone", phone))
        return exact

    @display(description=_("order"), ordering="id")
    def number_display(self, obj: Order) -> str:
        return str(obj)

    @display(description=_("customer"))
    def customer(self, obj: Order) -> str:
        name = obj.customer_name
        if not name:
            return obj.email
        return format_html('{}<br><span class="text-xs text-base-500">{}</span>', name, obj.email)

    @display(description=_("status"), ordering="status", label=STATUS_COLOURS)
    def status_label(self, obj: Order) -> tuple[str, str]:
        return obj.status, obj.get_status_display()

    @display(description=_("payment"), ordering="payment_status", label=PAYMENT_COLOURS)
    def payment_label(self, obj: Order) -> tuple[str, str]:
        return obj.payment_status, obj.get_payment_status_display()

    @display(description=_("fulfilment"), ordering="fulfilment_status", label=FULFILMENT_COLOURS)
    def fulfilment_label(self, obj: Order) -> tuple[str, str]:
        return obj.fulfilment_status, obj.get_fulfilment_status_display()

    @display(description=_("total"), ordering="total")
    def total_display(self, obj: Order) -> str:
        total = format_money(obj.total, obj.currency)
        if obj.refunded_total:
            return format_html('{}<br><span class="text-xs text-base-500">{} {}</span>', total,
                               _("refunded"), format_money(obj.refunded_total, obj.currency))
        return total

    @display(description=_("items"))
    def item_count(self, obj: Order) -> int:
        return obj.item_count

    @display(description=_("payment method"))
    def payment_display(self, obj: Order) -> str:
        method = obj.payment_method or "-"
        return f"{method} · {_('on delivery')}" if obj.pay_on_delivery else method

    @display(description=_("shipping"))
    def shipping_display(self, obj: Order) -> str:
        return obj.shipping_method_name or obj.shipping_method_code

    # --- bulk actions ---

    def _actor(self, request: HttpRequest) -> Actor:
        return Actor(user=request.user, label=request.user.get_username())

    def _each(self, request: HttpRequest, queryset: QuerySet[Order], run: Callable,
              done_message) -> None:
        """``run`` each selected order through a service, in its own transaction: the ones it
        refuses are listed with the service's reason and stay as they were. ``done_message`` is
        an ``ngettext_lazy`` plural counted by ``count``."""
        actor = self._actor(request)
        done, refused = 0, []
        for pk, number in queryset.order_by("pk").values_list("pk", "number"):
            try:
                run(pk, actor)
            except (*ORDER_ERRORS, permissions.ActionNotPermitted) as error:
                # Not permitted for this order (a clerk who may cancel unpaid orders only):
                # listed like a refusal. A user without the action never gets here (a 403).
                refused.append(f"#{number}: {error}")
            else:
                done += 1
        if done:
            messages.success(request, done_message % {"count": done})
        for message in refused[:MAX_ERROR_MESSAGES]:
            messages.error(request, message)
        if len(refused) > MAX_ERROR_MESSAGES:
            more = len(refused) - MAX_ERROR_MESSAGES
            messages.error(request, ngettext("... and %(count)d more order refused.",
                                             "... and %(count)d more orders refused.", more)
                           % {"count": more})

    @action(description=_("Mark paid (cash, transfer)"), permissions=["mark_paid"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, _record_payment,
                   ngettext_lazy("%(count)d order marked paid.",
                                 "%(count)d orders marked paid.", "count"))

    @action(description=_("Mark delivered"), permissions=["deliver"])
    def mark_delivered(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, lambda pk, actor: services.mark_delivered(pk, actor=actor),
                   ngettext_lazy("%(count)d order marked delivered.",
                                 "%(count)d orders marked delivered.", "count"))

    @action(description=_("Cancel (releases the stock)"), permissions=["cancel"])
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, lambda pk, actor: services.cancel_order(pk, actor=actor),
                   ngettext_lazy("%(count)d order cancelled; its stock is back on the shelf.",
                                 "%(count)d orders cancelled; their stock is back on the shelf.",
                                 "count"))

    # --- the order page ---

    def get_object(self, request: HttpRequest, object_id: str, from_field=None):
        """Read once per request (the page's header and Django's view both ask for it), with
        the facts its actions depend on (``services.with_facts``) in the same query."""
        cache = request.__dict__.setdefault("_orders_admin_objects", {})
        key = (str(object_id), from_field)
        if key not in cache:
            queryset = services.with_facts(self.get_queryset(request))
            field = (Order._meta.pk if from_field is None
                     else Order._meta.get_field(from_field))
            try:
                cache[key] = queryset.get(**{field.name: field.to_python(object_id)})
            except (Order.DoesNotExist, ValidationError, ValueError):
                cache[key] = None
        return cache[key]

    def get_fieldsets(self, request: HttpRequest, obj=None):
        # The header template shows the order; nothing of it is a form field.
        return []

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None):
        order = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if order is not None:
            # The timeline's messages, in one query.
            prefetch_related_objects([order], Prefetch(
                "notifications", queryset=Notification.objects.order_by("created_at", "id")))
            extra_context["order_page"] = self._order_page(request, order)
            extra_context["title"] = _("Order %(number)s") % {"number": order}
        return super().change_view(request, object_id, form_url, extra_context)

    def _url(self, name: str, order: Order) -> str:
        return reverse(f"admin:orders_order_{name}", args=[order.pk])

    def _allowed(self, request: HttpRequest, order: Order) -> dict[str, str]:
        """``{action: refusal}`` for the order page's actions ("" when allowed), asked of the
        services once per request (one query for the order's lines and shipments)."""
        cache = request.__dict__.setdefault("_orders_admin_allowed", {})
        if order.pk not in cache:
            known = services.facts(order)
            cache[order.pk] = {name: services.refusal(order, name, known)
                               for name in set(DETAIL_ACTIONS.values())}
        return cache[order.pk]

    def get_actions_detail(self, request: HttpRequest, object_id) -> list:
        """The order page's action menu: only what the order's states allow now."""
        actions = super().get_actions_detail(request, object_id)
        order = self.get_object(request, object_id) if str(object_id).isdigit() else None
        if order is None:
            return actions
        allowed = self._allowed(request, order)
        prefix = f"{self.model._meta.app_label}_{self.model._meta.model_name}_"
        return [a for a in actions
                if not allowed.get(DETAIL_ACTIONS.get(a.action_name.removeprefix(prefix), ""))]

    def _order_page(self, request: HttpRequest, order: Order) -> dict:
        """The header: the order's states, money and addresses, and the buttons of the actions
        both its states and the user's permissions allow."""
        moves, links = [], []
        allowed = self._allowed(request, order)

        def offer(into: list, label, view: str, action: str, may: bool) -> None:
            if may and not allowed[action]:
                into.append((label, self._url(view, order)))

        offer(moves, _("Mark paid"), "mark_paid_detail", "mark_paid",
              self.has_mark_paid_permission(request))
        offer(moves, _("Mark delivered"), "mark_delivered_detail", "deliver",
              self.has_deliver_permission(request))
        offer(links, _("Create shipment"), "create_shipment", "ship",
              self.has_ship_permission(request))
        offer(links, _("Record refund"), "record_refund", "refund",
              self.has_refund_permission(request))
        offer(links, _("Cancel order"), "cancel_detail", "cancel",
              self.has_cancel_permission(request, order))
        can_note = self.has_note_permission(request)
        currency = order.currency
        totals = [
            (_("Subtotal"), format_money(order.subtotal, currency)),
            (_("Discount") + (f" ({order.coupon_code})" if order.coupon_code else ""),
             f"− {format_money(order.discount_total, currency)}"),
            (_("Shipping") + (f" ({order.shipping_method_name})"
                              if order.shipping_method_name else ""),
             format_money(order.shipping_total, currency)),
            (_("Total"), format_money(order.total, currency)),
        ]
        if order.refunded_total:
            totals.append((_("Refunded"), f"− {format_money(order.refunded_total, currency)}"))
            totals.append((_("Net"), format_money(order.total - order.refunded_total, currency)))
        customer_url = (
            reverse("admin:auth_user_change", args=[order.user_id])
            if order.user_id and request.user.has_perm("auth.view_user") else ""
        )
        return {
            "order": order,
            "labels": [
                (_("Status"), STATUS_COLOURS.get(order.status, ""), order.get_status_display()),
                (_("Payment"), PAYMENT_COLOURS.get(order.payment_status, ""),
                 order.get_payment_status_display()),
                (_("Fulfilment"), FULFILMENT_COLOURS.get(order.fulfilment_status, ""),
                 order.get_fulfilment_status_display()),
            ],
            "refund_due": order.refund_due,
            "moves": moves,
            "links": links,
            "prints": [(_("Packing slip"), self._url("packing_slip", order)),
                       (_("Invoice"), self._url("invoice", order))],
            "totals": totals,
            "shipping_address": address_lines(order.shipping_address),
            "billing_address": address_lines(order.billing_address),
            "customer_url": customer_url,
            "has_account": bool(order.user_id),
            "can_fulfil": bool(moves or links),
            "note_url": self._url("add_note", order) if can_note else "",
            "note_form": RequiredNoteForm(),
        }

    # --- per-order views (``actions_detail``) ---

    def _order_or_404(self, object_id) -> Order:
        if not str(object_id).isdigit():
            raise Http404
        return get_object_or_404(services.with_facts(Order.objects.all()), pk=int(object_id))

    def _back(self, order: Order) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))

    def _render(self, request: HttpRequest, order: Order, template: str, **context) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": order,
            "order": order,
            "order_url": reverse("admin:orders_order_change", args=[order.pk]),
            **context,
        }
        return TemplateResponse(request, template, context)

    def _refused_now(self, request: HttpRequest, order: Order, action: str) -> HttpResponse | None:
        """A GET of an action the order does not allow (a stale page, a typed URL): back to
        the order with the service's reason; nothing is offered. (A POST always goes to the
        service, which decides under the order's lock.)"""
        if request.method == "POST":
            return None
        reason = services.refusal(order, action)
        if not reason:
            return None
        messages.error(request, reason)
        return self._back(order)

    def _confirm(self, request: HttpRequest, object_id, *, action: str, title: str,
                 question: str, submit: str, run: Callable[[Order, str, Actor], object],
                 success: str, danger: bool = False) -> HttpResponse:
        """A move: a POST does it (the order page's buttons post here), a GET asks first,
        saying what it will do and the rule it follows. The service decides; its refusal is the
        message."""
        order = self._order_or_404(object_id)
        refused = self._refused_now(request, order, action)
        if refused is not None:
            return refused
        form = NoteForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                run(order, form.cleaned_data["note"], self._actor(request))
            except ORDER_ERRORS as error:
                messages.error(request, str(error))
            else:
                messages.success(request, success % {"number": order})
            return self._back(order)
        return self._render(request, order, "admin/orders/order/confirm.html", title=title,
                            question=f"{question} {services.RULES[action]}", submit=submit,
                            form=form, danger=danger)

    @action(description=_("Mark paid"), url_path="mark-paid", permissions=["mark_paid"],
            icon="payments")
    def mark_paid_detail(self, request: HttpRequest, object_id) -> HttpResponse:
        return self._confirm(
            request, object_id, action="mark_paid", title=_("Mark paid"),
            question=_("The money for this order was received in full (cash, transfer): a "
                       "manual payment is recorded and the order's payment becomes paid."),
            submit=_("Mark paid"),
            run=lambda order, note, actor: _record_payment(order.pk, actor, note),
            success=_("Order %(number)s marked paid."),
        )

    @action(description=_("Mark delivered"), url_path="mark-delivered", permissions=["deliver"],
            icon="where_to_vote")
    def mark_delivered_detail(self, request: HttpRequest, object_id) -> HttpResponse:
        return self._confirm(
            request, object_id, action="deliver", title=_("Mark delivered"),
            question=_("Every shipment of this order has reached the customer: its fulfilment "
                       "becomes delivered, for good."),
            submit=_("Mark delivered"),
            run=lambda order, note, actor: services.mark_delivered(
                order.pk, actor=actor, note=note),
            success=_("Order %(number)s marked delivered."),
        )

    @action(description=_("Cancel order"), url_path="cancel", permissions=["cancel"],
            icon="cancel")
    def cancel_detail(self, request: HttpRequest, object_id) -> HttpResponse:
        return self._confirm(
            request, object_id, action="cancel", title=_("Cancel order"),
            question=_("Cancel this order: its stock goes back on the shelf. Money already "
                       "paid stays on the order as a refund due, given back with \"Record "
                       "refund\"."),
            submit=_("Cancel order"), danger=True,
            run=lambda order, note, actor: services.cancel_order(
                order.pk, actor=actor, note=note),
            success=_("Order %(number)s cancelled; its stock is back on the shelf."),
        )

    @action(description=_("Create shipment"), url_path="ship", permissions=["ship"],
            icon="local_shipping")
    def create_shipment(self, request: HttpRequest, object_id) -> HttpResponse:
        order = self._order_or_404(object_id)
        refused = self._refused_now(request, order, "ship")
        if refused is not None:
            return refused
        lines = list(order.lines.all())
        form = ShipmentForm(request.POST if request.method == "POST" else None, lines=lines,
                            shippable=services.shippable_quantities(
                                order, {line.pk: line for line in lines}))
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                shipment = services.create_shipment(
                    order.pk,
                    services.ShipmentRequest(
                        carrier=data["carrier"], tracking_number=data["tracking_number"],
                        tracking_url=data["tracking_url"], lines=form.quantities(),
                    ),
                    actor=self._actor(request),
                )
            except ORDER_ERRORS as error:
                messages.error(request, str(error))
            else:
                count = sum(form.quantities().values())
                messages.success(request, ngettext(
                    "Shipment %(id)d created: %(count)d item left the shelf.",
                    "Shipment %(id)d created: %(count)d items left the shelf.", count,
                ) % {"id": shipment.pk, "count": count})
                return self._back(order)
        return self._render(
            request, order, "admin/orders/order/line_form.html", title=_("Create shipment"),
            form=form, submit=_("Create shipment"), quantity_label=_("to ship"),
            intro=str(_("The items leave the shelf and the order's fulfilment follows "
                        "(partially shipped, shipped); its payment does not move. Quantities "
                        "start at everything left to ship; lower them to ship part of the "
                        "order now.")) + " " + services.RULES["ship"],
            empty=_("Nothing is left to ship."),
        )

    @action(description=_("Record refund"), url_path="refund", permissions=["refund"],
            icon="currency_exchange")
    def record_refund(self, request: HttpRequest, object_id) -> HttpResponse:
        order = self._order_or_404(object_id)
        refused = self._refused_now(request, order, "refund")
        if refused is not None:
            return refused
        lines = list(order.lines.all())
        form = RefundForm(request.POST if request.method == "POST" else None, lines=lines,
                          refundable=services.refundable_quantities(
                              order, {line.pk: line for line in lines}))
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                refund = payments.refund_order(
                    order.pk,
                    services.RefundRequest(
                        amount=data["amount"], lines=form.quantities() or None,
                        restock=data["restock"], reason=data["reason"],
                    ),
                    actor=self._actor(request), by_hand=data["by_hand"],
                )
            except ORDER_ERRORS as error:
                messages.error(request, str(error))
            else:
                amount = format_money(refund.amount, order.currency)
                if refund.status == refund.Status.PENDING:
                    messages.warning(request, _("Refund of %(amount)s asked of the provider; "
                                                "it takes effect when the provider confirms it.")
                                     % {"amount": amount})
                else:
                    messages.success(request, _("Refund of %(amount)s recorded.")
                                     % {"amount": amount})
                return self._back(order)
        left = format_money(services.refundable_amount(order), order.currency)
        paid_with = payments.refund_payment_of(order)
        via = (_("It goes back through %(provider)s (payment %(id)s).")
               % {"provider": paid_with.provider, "id": paid_with.pk}) if paid_with else _(
            "No payment of this order went through a provider: record money given back by "
            "hand.")
        return self._render(
            request, order, "admin/orders/order/line_form.html", title=_("Record refund"),
            form=form, submit=_("Record refund"), quantity_label=_("to refund"),
            intro=_("%(left)s can still be refunded. Give an amount, the quantities refunded, "
                    "or both. The order's payment becomes partially refunded or refunded; its "
                    "fulfilment does not move.") % {"left": left}
            + " " + services.RULES["refund"] + " " + via,
            empty="",
        )

    @action(description=_("Add note"), url_path="note", permissions=["note"],
            icon="edit_note")
    def add_note(self, request: HttpRequest, object_id) -> HttpResponse:
        order = self._order_or_404(object_id)
        form = RequiredNoteForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                services.add_note(order.pk, form.cleaned_data["note"], actor=self._actor(request))
            except ORDER_ERRORS as error:
                messages.error(request, str(error))
            else:
                messages.success(request, _("Note added to the timeline."))
            return self._back(order)
        return self._render(request, order, "admin/orders/order/confirm.html",
                            title=_("Add note"), question="", submit=_("Add note"), form=form)

    # --- printables (plain HTML, no admin chrome) ---

    def _printable(self, request: HttpRequest, object_id, template: str) -> HttpResponse:
        order = self._order_or_404(object_id)
        lines = list(order.lines.all())
        currency = order.currency
        context = {
            "store_name": settings.STORE_NAME,
            "order": order,
            "lines": lines,
            "to_ship": [line for line in lines if line.quantity_to_ship],
            "shipping_address": address_lines(order.shipping_address),
            "billing_address": address_lines(order.billing_address),
            "money": {
                "lines": [(line, format_money(line.unit_price, currency),
                           (format_money(line.discount_amount, currency)
                            if line.discount_amount else ""),
                           format_money(line.total, currency)) for line in lines],
                "subtotal": format_money(order.subtotal, currency),
                "discount": format_money(order.discount_total, currency),
                "shipping": format_money(order.shipping_total, currency),
                "total": format_money(order.total, currency),
                "refunded": format_money(order.refunded_total, currency),
                "net": format_money(order.total - order.refunded_total, currency),
            },
            "printed_at": timezone.now(),
        }
        return TemplateResponse(request, template, context)

    @action(description=_("Packing slip"), url_path="packing-slip", permissions=["view"],
            icon="inventory_2", attrs={"target": "_blank"})
    def packing_slip(self, request: HttpRequest, object_id) -> HttpResponse:
        return self._printable(request, object_id, "admin/orders/order/packing_slip.html")

    @action(description=_("Invoice"), url_path="invoice", permissions=["view"],
            icon="receipt_long", attrs={"target": "_blank"})
    def invoice(self, request: HttpRequest, object_id) -> HttpResponse:
        return self._printable(request, object_id, "admin/orders/order/invoice.html")

