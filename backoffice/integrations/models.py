"""API keys for ERPs, warehouse systems and scripts: shown once, stored hashed, scoped."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Scope(models.TextChoices):
    CATALOG_WRITE = "catalog:write", _("Write the catalog")
    STOCK_WRITE = "stock:write", _("Write stock levels")
    ORDERS_READ = "orders:read", _("Read orders")
    ORDERS_WRITE = "orders:write", _("Move orders through their statuses")


class ApiKey(models.Model):
    name = models.CharField(_("name"), max_length=100, help_text=_("Who uses it, e.g. 'ERP'."))
    prefix = models.CharField(_("prefix"), max_length=12, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]
        permissions = [("manage_api_keys", _("Can create and revoke API keys"))]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def label(self) -> str:
        """How its writes are attributed in ledgers and events."""
        return f"API key {self.name} ({self.prefix})"


class IntegrationWrite(models.Model):
    """One write an API key made to the catalog or stock: which key, where, and what changed
    (the counts of the import engine or the stock levels changed). Order moves are recorded in
    the orders' own timeline under the key's name."""

    key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="writes")
    endpoint = models.CharField(_("endpoint"), max_length=100)
    reference = models.CharField(_("reference"), max_length=120, blank=True)
    summary = models.JSONField(_("what changed"), default=dict)
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("integration write")
        verbose_name_plural = _("integration writes")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.endpoint} by {self.key_id}"
