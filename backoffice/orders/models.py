"""Orders: what was bought, at what price, shipped where, and everything that happened since.

An order keeps snapshots (addresses, product and variant names, SKUs, prices), so editing the
catalog or an address book never rewrites history. Totals are computed once by checkout
(``backoffice.checkout.pricing``) and stored. An order's payment and fulfilment states, its
cancellation and its overall status (derived from them) are moved only by
``backoffice.orders.services``, under the order's row lock; each move writes an ``OrderEvent``
(see ``backoffice.orders.status`` for the machines).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from backoffice.money import MONEY_FIELD_KWARGS, format_money
from backoffice.orders.status import (
    FulfilmentStatus,
    OrderStatus,
    PaymentStatus,
    State,
    label,
    refund_due,
)


class Order(models.Model):
    # NULL until the id is known (set in the same transaction); unique, so never two alike.
    number = models.CharField(  # noqa: DJ001
        _("number"), max_length=20, unique=True, null=True, editable=False
    )
    token = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False,
        help_text=_("Lets a guest see their order without an account."),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="orders", verbose_name=_("customer"),
    )
    email = models.EmailField(_("email"), db_index=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True, db_index=True)
    # Derived from the two states below and cancellation (``status.overall_status``); stored
    # so that lists filter on it.
    status = models.CharField(
        _("status"), max_length=20, choices=OrderStatus.choices, default=OrderStatus.OPEN,
    )
    payment_status = models.CharField(
        _("payment"), max_length=20, choices=PaymentStatus.choices,
        default=PaymentStatus.UNPAID,
    )
    fulfilment_status = models.CharField(
        _("fulfilment"), max_length=20, choices=FulfilmentStatus.choices,
        default=FulfilmentStatus.UNFULFILLED,
    )
    pay_on_delivery = models.BooleanField(
        _("paid on delivery"), default=False,
        help_text=_("Cash on delivery (a payment staff collect): the order may ship before it is "
                    "paid, and its payment window never runs out."),
    )
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3)
    subtotal = models.DecimalField(_("subtotal"), **MONEY_FIELD_KWARGS)
    discount_total = models.DecimalField(_("discount"), default=0, **MONEY_FIELD_KWARGS)
    shipping_total = models.DecimalField(_("shipping"), default=0, **MONEY_FIELD_KWARGS)
    total = models.DecimalField(_("total"), **MONEY_FIELD_KWARGS)
    refunded_total = models.DecimalField(_("refunded"), default=0, **MONEY_FIELD_KWARGS)
    shipping_method_code = models.CharField(_("shipping method"), max_length=64)
    shipping_method_name = models.CharField(_("shipping method name"), max_length=120)
    shipping_address = models.JSONField(_("shipping address"))
    billing_address = models.JSONField(_("billing address"))
    coupon = models.ForeignKey(
        "promotions.Coupon", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="orders",
    )
    coupon_code = models.CharField(_("coupon code"), max_length=64, blank=True)
    payment_method = models.CharField(_("payment method"), max_length=64, blank=True)
    payment_due_at = models.DateTimeField(
        _("pay by"), null=True, blank=True,
        help_text=_("Unpaid after this, the order is cancelled and its stock released."),
    )
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    customer_note = models.TextField(_("customer note"), blank=True)
    # NULL for orders made without one (e.g. by staff); many NULLs may coexist under unique.
    idempotency_key = models.CharField(  # noqa: DJ001
        max_length=255, unique=True, null=True, editable=False
    )
    cart = models.ForeignKey(
        "checkout.Cart", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(_("placed at"), auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-created_at", "-id"]
        # The actions staff roles are given one by one (``backoffice.roles``); checked by the
        # order services (``backoffice.permissions.require``).
        permissions = [
            ("ship_order", _("Can ship orders (create shipments)")),
            ("deliver_order", _("Can mark orders delivered")),
            ("cancel_order", _("Can cancel orders, paid ones too")),
            ("cancel_unpaid_order", _("Can cancel unpaid orders")),
            ("refund_order", _("Can refund orders")),
            ("mark_order_paid", _("Can mark orders paid")),
            ("add_order_note", _("Can add notes to orders")),
            ("export_orders", _("Can export orders")),
        ]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="order_newest"),
            models.Index(fields=["status", "-created_at"], name="order_status_newest"),
            models.Index(fields=["user", "-created_at"], name="order_customer_newest"),
            models.Index(
                fields=["payment_due_at"],
                condition=Q(status="open", payment_status="unpaid", pay_on_delivery=False),
                name="order_open_unpaid_due",
            ),
            # "To fulfil": a small part of a big table, counted on every admin page.
            models.Index(
                fields=["-created_at"],
                condition=Q(status="open", fulfilment_status__in=[
                    "unfulfilled", "partially_shipped", "partially_delivered"]),
                name="order_open_unshipped",
            ),
            # The reports' live half: today's sales are a range on the time orders were paid.
            models.Index(fields=["paid_at"], name="reports_order_paid_at"),
            # The dashboard's "refund due" count (``selectors.refund_due_q``), over few rows.
            models.Index(
                fields=["id"],
                condition=Q(payment_status="overpaid") | (
                    Q(status="cancelled")
                    & Q(payment_status__in=["paid", "partially_refunded", "overpaid"])
                ),
                name="reports_order_refund_due",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total__gte=0), name="order_total_not_negative"),
            models.CheckConstraint(
                condition=Q(refunded_total__gte=0, refunded_total__lte=F("total")),
                name="order_refunds_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.number}" if self.number else f"order {self.pk}"

    @property
    def refund_due(self) -> bool:
        """The store holds money it must give back (a cancelled order's, a second payment)."""
        return refund_due(status=self.status, payment=self.payment_status)

    @property
    def customer_name(self) -> str:
        address = self.billing_address or self.shipping_address or {}
        return " ".join(p for p in (address.get("first_name"), address.get("last_name")) if p)


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    variant = models.ForeignKey(
        "catalog.Variant", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    product_id_snapshot = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    product_name = models.CharField(_("product"), max_length=255)
    variant_name = models.CharField(_("variant"), max_length=255, blank=True)
    sku = models.CharField(_("SKU"), max_length=64, db_index=True)
    options = models.JSONField(_("options"), default=dict, blank=True)
    unit_price = models.DecimalField(_("unit price"), **MONEY_FIELD_KWARGS)
    quantity = models.PositiveIntegerField(_("quantity"))
    discount_amount = models.DecimalField(
        _("discount"), default=0, **MONEY_FIELD_KWARGS,
        help_text=_("This line's share of the order's coupon discount."),
    )
    total = models.DecimalField(_("total"), **MONEY_FIELD_KWARGS)
    quantity_shipped = models.PositiveIntegerField(_("shipped"), default=0)
    quantity_refunded = models.PositiveIntegerField(_("refunded"), default=0)

    class Meta:
        verbose_name = _("order line")
        verbose_name_plural = _("order lines")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="order_line_quantity"),
            models.CheckConstraint(
                condition=Q(quantity_shipped__lte=F("quantity")), name="shipped_within_ordered"
            ),
            models.CheckConstraint(
                condition=Q(quantity_refunded__lte=F("quantity")), name="refunded_within_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"

    @property
    def quantity_to_ship(self) -> int:
        return max(self.quantity - self.quantity_shipped - self.quantity_refunded, 0)


class Allocation(models.Model):
    """Stock of one warehouse promised to one order line (``quantity_allocated`` on the row)."""

    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="allocations")
    stock = models.ForeignKey("inventory.Stock", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()

    class Meta:
        verbose_name = _("allocation")
        verbose_name_plural = _("allocations")
        constraints = [
            models.UniqueConstraint(fields=["line", "stock"], name="one_allocation_per_place"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of line {self.line_id} from stock {self.stock_id}"


class OrderEvent(models.Model):
    class Kind(models.TextChoices):
        PLACED = "placed", _("Placed")
        STATUS = "status", _("Status changed")
        SHIPMENT = "shipment", _("Shipment")
        REFUND = "refund", _("Refund")
        PAYMENT = "payment", _("Payment")
        NOTE = "note", _("Note")

    State = State  # which of the order's states a status move is about

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # A status move (``Kind.STATUS``): which of the order's states moved, from what, to what
    # (values of that state's machine).
    state = models.CharField(max_length=12, blank=True, choices=State.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    actor_label = models.CharField(_("by"), max_length=120, blank=True)
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("order event")
        verbose_name_plural = _("order events")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        if self.kind == self.Kind.STATUS:
            return f"{self.state}: {self.from_status} → {self.to_status}"
        return self.get_kind_display()

    @property
    def change(self) -> str:
        """"Payment: unpaid → paid", in words."""
        if not self.to_status:
            return ""
        state = self.state or State.ORDER
        to = label(state, self.to_status)
        moved = f"{label(state, self.from_status)} → {to}" if self.from_status else to
        return f"{State(state).label}: {moved}"


class Shipment(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    carrier = models.CharField(_("carrier"), max_length=120, blank=True)
    tracking_number = models.CharField(_("tracking number"), max_length=120, blank=True)
    tracking_url = models.URLField(_("tracking URL"), max_length=500, blank=True)
    shipped_at = models.DateTimeField(_("shipped at"))
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("shipment")
        verbose_name_plural = _("shipments")
        ordering = ["shipped_at", "id"]

    def __str__(self) -> str:
        return f"{self.carrier} {self.tracking_number}".strip() or f"shipment {self.pk}"


class ShipmentLine(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines")
    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="shipment_lines")
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="shipment_line_quantity"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of line {self.line_id}"


class Refund(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending at the provider")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="refunds")
    # The payment the money goes back to (NULL: given back by hand, or from before payments).
    payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, null=True, blank=True,
        related_name="refunds",
    )
    amount = models.DecimalField(_("amount"), **MONEY_FIELD_KWARGS)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    restock = models.BooleanField(_("restocked"), default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SUCCEEDED)
    provider_refund_id = models.CharField(max_length=255, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    actor_label = models.CharField(_("by"), max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]
        # The reports' live half: today's refunds are a range on the time they were recorded.
        indexes = [models.Index(fields=["created_at"], name="reports_refund_created_at")]

    def __str__(self) -> str:
        return format_money(self.amount, self.order.currency)


class RefundLine(models.Model):
    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="lines")
    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="refund_lines")
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="refund_line_quantity"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of line {self.line_id}"
