"""Stock per (variant, warehouse), and the ledger of every change to it.

``quantity`` is on hand; ``quantity_allocated`` is promised to orders not yet shipped. Available
= quantity - allocated (- unexpired reservations, once checkout adds them). Database constraints
keep both non-negative and allocated within on hand, whatever code writes the row. Every change
goes through ``backoffice.inventory.services`` and writes a ``StockMovement``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.lookups import LessThanOrEqual
from django.utils.translation import gettext_lazy as _

# On hand minus allocated, as ``selectors.with_stock_levels`` computes ``available``.
AVAILABLE = F("quantity") - F("quantity_allocated")


class Warehouse(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=120)
    address = models.TextField(_("address"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    is_default = models.BooleanField(
        _("default"), default=False, help_text=_("Where imports and new stock go unless told.")
    )

    class Meta:
        verbose_name = _("warehouse")
        verbose_name_plural = _("warehouses")
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_warehouse"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Stock(models.Model):
    variant = models.ForeignKey(
        "catalog.Variant", on_delete=models.CASCADE, related_name="stocks"
    )
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="stocks")
    quantity = models.PositiveIntegerField(_("on hand"), default=0)
    quantity_allocated = models.PositiveIntegerField(_("allocated"), default=0)
    low_stock_threshold = models.PositiveIntegerField(
        _("low-stock threshold"), default=5, help_text=_("At or below this available is 'low'.")
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("stock")
        verbose_name_plural = _("stock")
        permissions = [("adjust_stock", _("Can adjust stock (writes a stock movement)"))]
        constraints = [
            models.UniqueConstraint(fields=["variant", "warehouse"], name="one_stock_per_place"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="stock_not_negative"),
            models.CheckConstraint(
                condition=Q(quantity_allocated__gte=0), name="allocation_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(quantity_allocated__lte=F("quantity")),
                name="allocation_within_stock",
            ),
        ]
        indexes = [
            # The rows at or below their threshold, by available quantity: the dashboard's
            # "Low stock" count and lowest rows (``selectors.low_stock_summary``). The condition
            # is written as the selectors' filter compiles, so the database can use the index.
            models.Index(
                AVAILABLE, F("variant"),
                condition=Q(LessThanOrEqual(AVAILABLE, F("low_stock_threshold"))),
                name="reports_stock_low",
            ),
        ]

    def __str__(self) -> str:
        """``DEMO-30 (Linen Shirt) in Main warehouse``: load the row with
        ``select_related("variant__product", "warehouse")`` where many are shown."""
        return f"{self.variant.sku} ({self.variant.product.name}) in {self.warehouse.name}"

    @property
    def quantity_available(self) -> int:
        return self.quantity - self.quantity_allocated


class MovementReason(models.TextChoices):
    IMPORT = "import", _("Import")
    ADJUSTMENT = "adjustment", _("Manual adjustment")
    COUNT = "count", _("Stock count")
    RECEIVED = "received", _("Goods received")
    DAMAGED = "damaged", _("Damaged or lost")
    RETURN = "return", _("Customer return")
    ALLOCATION = "allocation", _("Allocated to an order")
    RELEASE = "release", _("Allocation released")
    SHIPMENT = "shipment", _("Shipped")


class StockMovement(models.Model):
    """One change to one stock row: who, why, by how much, and what it left."""

    stock = models.ForeignKey(Stock, on_delete=models.CASCADE, related_name="movements")
    reason = models.CharField(_("reason"), max_length=20, choices=MovementReason.choices)
    quantity_change = models.IntegerField(_("on-hand change"), default=0)
    allocated_change = models.IntegerField(_("allocated change"), default=0)
    quantity_after = models.PositiveIntegerField(_("on hand after"))
    allocated_after = models.PositiveIntegerField(_("allocated after"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(
        _("by"), max_length=120, blank=True, help_text=_("A job, an import or an API key.")
    )
    reference = models.CharField(_("reference"), max_length=120, blank=True, db_index=True)
    note = models.CharField(_("note"), max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("stock movement")
        verbose_name_plural = _("stock movements")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.reason} {self.quantity_change:+d}"


class LowStock(Stock):
    """Stock rows at or below their threshold: a changelist of its own in the admin."""

    class Meta:
        proxy = True
        verbose_name = _("low stock")
        verbose_name_plural = _("low stock")
