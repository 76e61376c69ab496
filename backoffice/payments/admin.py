"""Payments in the admin: read-only records, changed only through the services.

Staff see every payment with what its provider told us (the events), ask a provider where an
open payment stands, and process an event again once what stopped it is fixed. Marking an
order paid by hand and refunding are actions of the order page.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display

from backoffice import permissions
from backoffice.admin_access import GuardedActionsMixin, permission_check
from backoffice.admin_records import ReadOnlyRecord
from backoffice.inventory.services import Actor
from backoffice.money import format_money
from backoffice.payments import services
from backoffice.payments.models import Payment, PaymentEvent
from backoffice.payments.status import OPEN_STATUSES, PaymentStatus

STATUS_COLOURS = {
    PaymentStatus.PENDING: "info", PaymentStatus.REQUIRES_ACTION: "info",
    PaymentStatus.SUCCEEDED: "success", PaymentStatus.FAILED: "danger",
    PaymentStatus.CANCELLED: "warning", PaymentStatus.PARTIALLY_REFUNDED: "warning",
    PaymentStatus.REFUNDED: "warning",
}


class PaymentEventInline(ReadOnlyRecord, TabularInline):
    model = PaymentEvent
    extra = 0
    can_delete = False
    hide_title = True
    fields = ["received_at", "source", "event_id", "claimed", "verified", "processed_at",
              "outcome", "error"]
    readonly_fields = fields
    ordering = ["received_at", "id"]

    @display(description=_("says"))
    def claimed(self, obj: PaymentEvent) -> str:
        claims = obj.claims or {}
        amount = claims.get("amount")
        return " ".join(str(p) for p in (claims.get("status"), amount) if p)


@admin.register(Payment)
class PaymentAdmin(GuardedActionsMixin, ReadOnlyRecord, ModelAdmin):
    list_display = ["id", "order_link", "provider", "amount_display", "status_label",
                    "provider_reference", "created_at", "succeeded_at"]
    list_filter = ["status", "provider", "created_at"]
    search_fields = ["order__number", "provider_reference", "provider_payment_id", "phone"]
    search_help_text = _("An order number, or the provider's reference or receipt.")
    list_select_related = ["order"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    inlines = [PaymentEventInline]
    fields = ["order_link", "provider", "amount_display", "status_label", "message",
              "provider_reference", "provider_payment_id", "phone", "next_action",
              "created_by", "created_at", "succeeded_at", "last_checked_at"]
    readonly_fields = fields
    actions = ["ask_provider"]
    actions_detail = ["ask_provider_detail", "refund_duplicate_detail"]

    @display(description=_("order"), ordering="order__id")
    def order_link(self, obj: Payment) -> str:
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">#{}</a>', url, obj.order.number)

    @display(description=_("amount"), ordering="amount")
    def amount_display(self, obj: Payment) -> str:
        text = format_money(obj.amount, obj.currency)
        if obj.amount_refunded:
            text += f" ({_('refunded')} {format_money(obj.amount_refunded, obj.currency)})"
        return text

    @display(description=_("status"), ordering="status", label=STATUS_COLOURS)
    def status_label(self, obj: Payment) -> tuple[str, str]:
        return obj.status, obj.get_status_display()

    # Asking a provider acts on its answer (the order may become paid): "change payment".
    has_ask_permission = permission_check("payments.change_payment")
    has_refund_permission = permission_check(permissions.REFUND_ORDER)

    def _ask(self, request: HttpRequest, payment: Payment) -> None:
        if payment.status not in OPEN_STATUSES:
            messages.info(request, _("Payment %(id)s is %(status)s: nothing to ask.")
                          % {"id": payment.pk, "status": payment.get_status_display().lower()})
            return
        try:
            outcome = services.reconcile_payment(payment)
        except Exception as exc:  # noqa: BLE001 - the provider's failure, shown to staff
            messages.error(request, _("%(provider)s could not be asked: %(error)s")
                           % {"provider": payment.provider, "error": exc})
        else:
            messages.success(request, _("Payment %(id)s: %(outcome)s")
                             % {"id": payment.pk, "outcome": outcome})

    @action(description=_("Ask the provider now"), permissions=["ask"])
    def ask_provider(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in queryset[:50]:
            self._ask(request, payment)

    @action(description=_("Ask the provider now"), url_path="ask", permissions=["ask"],
            icon="sync")
    def ask_provider_detail(self, request: HttpRequest, object_id) -> HttpResponse:
        payment = get_object_or_404(Payment, pk=object_id)
        if request.method == "POST":
            self._ask(request, payment)
            return self._back(payment)
        return self._confirm(request, payment, _("Ask the provider now"),
                             _("Ask %(provider)s where this payment stands, and act on its "
                               "answer.") % {"provider": payment.provider}, _("Ask"))


    @action(description=_("Refund: paid twice"), url_path="refund-duplicate",
            permissions=["refund"], icon="currency_exchange")
    def refund_duplicate_detail(self, request: HttpRequest, object_id) -> HttpResponse:
        """A second payment of an order paid already goes back in full; the order stands."""
        payment = get_object_or_404(Payment, pk=object_id)
        if request.method == "POST":
            try:
                services.refund_duplicate(payment.pk, actor=Actor(
                    user=request.user, label=request.user.get_username()))
            except services.PaymentError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, _("Payment %(id)s is being given back.")
                                 % {"id": payment.pk})
            return self._back(payment)
        return self._confirm(
            request, payment, _("Refund: paid twice"),
            _("This order was paid by another payment first. Give all of this one back "
              "through %(provider)s? The order is not changed.") % {"provider": payment.provider},
            _("Give it back"), danger=True)

    def _back(self, payment: Payment) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:payments_payment_change", args=[payment.pk]))

    def _confirm(self, request: HttpRequest, payment: Payment, title: str, question: str,
                 submit: str, danger: bool = False) -> HttpResponse:
        """A GET asks first; the form posts back to the same action."""
        return TemplateResponse(request, "admin/orders/order/confirm.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta,
            "original": payment, "order": payment,
            "order_url": reverse("admin:payments_payment_change", args=[payment.pk]),
            "title": title, "question": question, "submit": submit, "form": None,
            "danger": danger,
        })


@admin.register(PaymentEvent)
class PaymentEventAdmin(GuardedActionsMixin, ReadOnlyRecord, ModelAdmin):
    list_display = ["received_at", "provider", "source", "event_id", "payment", "verified",
                    "processed_at", "outcome", "error"]
    list_filter = ["provider", "source", "verified", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["event_id", "payment__order__number"]
    list_select_related = ["payment"]
    ordering = ["-received_at", "-id"]
    show_full_result_count = False
    fields = ["provider", "source", "event_id", "payment", "verified", "received_at",
              "processed_at", "attempts", "outcome", "error", "claims", "payload"]
    readonly_fields = fields
    actions = ["process_again"]

    has_process_permission = permission_check("payments.change_paymentevent")

    @action(description=_("Process again"), permissions=["process"])
    def process_again(self, request: HttpRequest, queryset: QuerySet[PaymentEvent]) -> None:
        """Events left with an error (the payment was unknown then, a provider was down) are
        acted on again; events already processed stay as they are."""
        done = 0
        for event in queryset.filter(processed_at__isnull=True)[:100]:
            services.process_event(event.pk)
            done += 1
        for event in queryset.exclude(processed_at__isnull=True).exclude(error="")[:100]:
            # Processed with an error (no such payment yet): give it one more go.
            PaymentEvent.objects.filter(pk=event.pk).update(processed_at=None, error="")
            services.process_event(event.pk)
            done += 1
        messages.success(request, ngettext("%(count)d event processed again.",
                                           "%(count)d events processed again.", done)
                         % {"count": done})
