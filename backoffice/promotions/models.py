"""Coupons: a code worth a percentage or a fixed amount off, with limits.

Codes are case-insensitive (unique whatever the case). ``times_used`` counts redemptions; the
database refuses more than ``usage_limit``, and ``services.redeem`` locks the coupon row, so a
limit holds under concurrent checkouts.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _

from backoffice.money import MONEY_FIELD_KWARGS


class Coupon(models.Model):
    class Kind(models.TextChoices):
        PERCENTAGE = "percentage", _("Percentage off")
        FIXED = "fixed", _("Fixed amount off")

    code = models.CharField(_("code"), max_length=64, help_text=_("Customers type it; any case."))
    description = models.CharField(_("description"), max_length=255, blank=True)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.PERCENTAGE)
    value = models.DecimalField(
        _("value"), **MONEY_FIELD_KWARGS,
        help_text=_("Percent (e.g. 10 for 10%) or an amount in the store currency."),
    )
    starts_at = models.DateTimeField(_("valid from"), null=True, blank=True)
    ends_at = models.DateTimeField(_("valid until"), null=True, blank=True)
    usage_limit = models.PositiveIntegerField(
        _("uses in all"), null=True, blank=True, help_text=_("Empty: no limit.")
    )
    usage_limit_per_customer = models.PositiveIntegerField(
        _("uses per customer"), null=True, blank=True,
        help_text=_("Counted by account, or by email for guests. Empty: no limit."),
    )
    minimum_subtotal = models.DecimalField(
        _("minimum subtotal"), null=True, blank=True, **MONEY_FIELD_KWARGS
    )
    categories = models.ManyToManyField(
        "catalog.Category", blank=True, related_name="+",
        help_text=_("Only products in these categories (or below) are discounted."),
    )
    products = models.ManyToManyField(
        "catalog.Product", blank=True, related_name="+",
        help_text=_("Only these products are discounted (with categories: either)."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    times_used = models.PositiveIntegerField(_("times used"), default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(Upper("code"), name="coupon_code_any_case"),
            models.CheckConstraint(condition=Q(value__gt=0), name="coupon_value_positive"),
            models.CheckConstraint(
                condition=~Q(kind="percentage") | Q(value__lte=100),
                name="coupon_percentage_at_most_100",
            ),
            models.CheckConstraint(
                condition=Q(usage_limit__isnull=True) | Q(times_used__lte=F("usage_limit")),
                name="coupon_used_within_limit",
            ),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True) | Q(ends_at__isnull=True)
                | Q(ends_at__gt=F("starts_at")),
                name="coupon_window_in_order",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def save(self, *args, **kwargs) -> None:
        self.code = self.code.strip()
        if self.pk is not None and not self._state.adding and kwargs.get("update_fields") is None:
            # ``times_used`` is counted by checkout with UPDATE ... + 1 under the row lock; a
            # form or an import saving the copy it read would write back a stale count.
            kwargs["update_fields"] = [
                f.attname for f in self._meta.concrete_fields
                if not f.primary_key and f.attname != "times_used"
            ]
        super().save(*args, **kwargs)


class CouponRedemption(models.Model):
    coupon = models.ForeignKey(Coupon, on_delete=models.CASCADE, related_name="redemptions")
    order = models.OneToOneField(
        "orders.Order", on_delete=models.CASCADE, related_name="coupon_redemption"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    email = models.EmailField()
    discount = models.DecimalField(**MONEY_FIELD_KWARGS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("coupon redemption")
        verbose_name_plural = _("coupon redemptions")
        indexes = [
            models.Index(fields=["coupon", "user"], name="redemption_by_customer"),
            models.Index(fields=["coupon", "email"], name="redemption_by_email"),
        ]

    def __str__(self) -> str:
        return f"{self.coupon_id} on order {self.order_id}"
