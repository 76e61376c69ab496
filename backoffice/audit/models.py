"""The audit trail: who changed money, stock, plugins, API keys or roles, and when.

One row per staff (or API key) action, written by the service that does it, in the same
transaction (a refused or failed action leaves none). Jobs and webhooks are not recorded here:
their changes are in the order timelines and the stock ledger, which stay as they are. Rows
never hold a secret value: a plugin's secret settings are named, never shown.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AuditAction(models.TextChoices):
    ORDER_MARKED_PAID = "order.marked_paid", _("Order marked paid")
    ORDER_REFUNDED = "order.refunded", _("Refund recorded")
    ORDER_CANCELLED = "order.cancelled", _("Order cancelled")
    ORDER_SHIPPED = "order.shipped", _("Shipment created")
    ORDER_DELIVERED = "order.delivered", _("Delivery recorded")
    DUPLICATE_REFUNDED = "payment.duplicate_refunded", _("Second payment given back")
    STOCK_ADJUSTED = "stock.adjusted", _("Stock adjusted")
    STOCK_LEVELS_SET = "stock.levels_set", _("Stock levels set")
    IMPORT_STARTED = "import.started", _("Import run")
    PLUGIN_CHANGED = "plugin.changed", _("Plugin settings changed")
    PLUGIN_ACTIVATED = "plugin.activated", _("Plugin switched on")
    PLUGIN_DEACTIVATED = "plugin.deactivated", _("Plugin switched off")
    API_KEY_CREATED = "api_key.created", _("API key created")
    API_KEY_REVOKED = "api_key.revoked", _("API key revoked")
    ROLE_COPIED = "role.copied", _("Role copied")
    CUSTOMERS_EXPORTED = "customers.exported", _("Customers exported")
    CUSTOMER_ERASED = "customer.erased", _("Customer account closed and erased")
    SIGN_IN_PROVIDER_CHANGED = "sign_in.provider_changed", _("Sign-in provider changed")
    BREAKGLASS_LOGIN = "sign_in.breakglass", _("Break-glass sign-in")


class AuditEntry(models.Model):
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+", verbose_name=_("staff user"),
    )
    # The username, or the API key's label: kept when the user is deleted.
    actor_label = models.CharField(_("who"), max_length=150)
    action = models.CharField(_("action"), max_length=40, choices=AuditAction.choices)
    # What was acted on: its model (``app_label.model_name``), key and name at the time.
    object_type = models.CharField(_("object type"), max_length=100, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    summary = models.CharField(_("summary"), max_length=500, blank=True)
    # Details for programs (amounts, field names changed); never a secret value.
    data = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["action", "-created_at"], name="audit_action_newest"),
            models.Index(fields=["actor", "-created_at"], name="audit_actor_newest"),
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.object_repr} by {self.actor_label}"
