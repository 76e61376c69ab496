"""Payments: what a provider was asked to take for an order, and everything it told us.

A ``Payment`` is one attempt to be paid for an order through one provider; an order may have
several (a failed M-Pesa push, then a card). ``PaymentEvent`` keeps each thing a provider told
us, as received: webhooks (unique per provider event id, so a replay is stored once and
processed once), answers to status queries, and staff's own records.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from backoffice.money import MONEY_FIELD_KWARGS, format_money
from backoffice.payments.status import PaymentStatus


class Payment(models.Model):
    order = models.ForeignKey(
        "orders.Order", on_delete=models.PROTECT, related_name="payments", verbose_name=_("order")
    )
    provider = models.CharField(_("provider"), max_length=64, db_index=True)
    amount = models.DecimalField(_("amount"), **MONEY_FIELD_KWARGS)
    currency = models.CharField(_("currency"), max_length=3)
    status = models.CharField(
        _("status"), max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    # What ``initiate`` returned (a Stripe Checkout Session, an M-Pesa CheckoutRequestID, a
    # Chapa tx_ref); NULL until the provider answered.
    provider_reference = models.CharField(  # noqa: DJ001
        _("provider reference"), max_length=255, null=True, blank=True
    )
    # The provider's id of the money itself, once paid (Stripe PaymentIntent, M-Pesa receipt).
    provider_payment_id = models.CharField(
        _("provider payment id"), max_length=255, blank=True, db_index=True
    )
    idempotency_key = models.CharField(max_length=100, unique=True, editable=False)
    next_action = models.JSONField(_("next action"), default=dict, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)
    amount_refunded = models.DecimalField(_("refunded"), default=0, **MONEY_FIELD_KWARGS)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    succeeded_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    last_checked_at = models.DateTimeField(_("last asked the provider"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("started"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_reference"], name="one_payment_per_reference"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0, amount_refunded__lte=F("amount")),
                name="payment_refunds_within_amount",
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(status__in=["pending", "requires_action"]),
                name="payment_open_oldest",
            ),
        ]

    def __str__(self) -> str:
        return (f"{self.provider} {format_money(self.amount, self.currency)} "
                f"({self.get_status_display()})")


class PaymentEvent(models.Model):
    class Source(models.TextChoices):
        WEBHOOK = "webhook", _("Webhook")
        QUERY = "query", _("Status query")
        STAFF = "staff", _("Staff")

    provider = models.CharField(_("provider"), max_length=64)
    event_id = models.CharField(_("provider event id"), max_length=255)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices)
    payment = models.ForeignKey(
        Payment, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    # What the provider claims (status, amounts, references), as our ``ProviderEvent`` fields.
    claims = models.JSONField(_("claims"), default=dict, encoder=DjangoJSONEncoder)
    payload = models.JSONField(_("payload"), default=dict, encoder=DjangoJSONEncoder)
    # Signed by the provider, or confirmed by asking it; unsigned callbacks start False.
    verified = models.BooleanField(_("verified"), default=False)
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=500, blank=True)
    error = models.TextField(_("error"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)

    class Meta:
        verbose_name = _("payment event")
        verbose_name_plural = _("payment events")
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="one_event_per_id"),
        ]
        indexes = [
            models.Index(fields=["received_at"], condition=Q(processed_at__isnull=True),
                         name="payment_event_unprocessed"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id}"
