"""The sales rollup: each day's figures, computed once from the orders and kept, so that the
dashboard and the reports never add up a year of orders.

A day is the store's day (``settings.TIME_ZONE``). ``DailySales`` holds a day's totals per
currency, ``DailyBreakdown`` the same day cut by product, category, payment provider and coupon,
``MonthlyBreakdown`` the sum of a whole month's ``DailyBreakdown`` rows (so that a year by
product reads twelve months, not 365 days) and ``MonthlyBreakdownTotal`` those summed over every
key. All are written only by ``backoffice.reports.rollup`` (``rebuild_days``), which recomputes
a day from the orders and replaces its rows, then its month's from the days; readers take the
rollup for the days it covers and compute the rest (today, and any day not yet counted) live
(``backoffice.reports.selectors``).

How sales are counted (the one definition, also in docs/reports.md):

- an order is a **sale on the day it was paid** (``Order.paid_at``); an order never paid (an
  unpaid order, a cancelled unpaid one, cash on delivery not yet collected) is no sale;
- **gross** is the goods at their price (the order's subtotal), **discounts** its coupon discount,
  **shipping** what the customer paid for delivery;
- a **refund** counts on the day it was recorded (``Refund.created_at``; succeeded ones only),
  whatever day the order was paid: a day's figures never move because of a later refund;
- **net** = gross - discounts + shipping - refunds: the money the store kept.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

from backoffice.money import MONEY_DECIMAL_PLACES

# A day's or a year's sum of prices: room beyond one price's 14 digits.
SUM_FIELD_KWARGS = {"max_digits": 18, "decimal_places": MONEY_DECIMAL_PLACES,
                    "default": Decimal("0")}


class _Figures(models.Model):
    orders = models.PositiveIntegerField(_("orders"), default=0)
    items = models.PositiveIntegerField(_("items"), default=0)
    gross = models.DecimalField(_("gross sales"), **SUM_FIELD_KWARGS)
    discounts = models.DecimalField(_("discounts"), **SUM_FIELD_KWARGS)
    shipping = models.DecimalField(_("shipping"), **SUM_FIELD_KWARGS)
    refunds = models.DecimalField(_("refunds"), **SUM_FIELD_KWARGS)
    refunded_items = models.PositiveIntegerField(_("items refunded"), default=0)
    net = models.DecimalField(_("net sales"), **SUM_FIELD_KWARGS)

    class Meta:
        abstract = True


class DailySales(_Figures):
    """One day's sales in one currency (the store sells in ``STORE_CURRENCY``; orders from
    before a change of currency keep theirs and are never added to another's). A day counted
    with nothing sold has a row of zeros: the latest day with a row is how far the rollup has
    counted."""

    day = models.DateField(_("day"))
    currency = models.CharField(_("currency"), max_length=3)
    refund_count = models.PositiveIntegerField(_("refunds made"), default=0)
    computed_at = models.DateTimeField(_("computed at"))

    class Meta:
        verbose_name = _("daily sales")
        verbose_name_plural = _("sales reports")
        ordering = ["day", "currency"]
        default_permissions = ()
        permissions = [("view_reports", "Can view sales reports and the dashboard's figures")]
        constraints = [
            models.UniqueConstraint(fields=["day", "currency"], name="one_daily_sales_row"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.currency}"


class Dimension(models.TextChoices):
    PRODUCT = "product", _("Product")
    CATEGORY = "category", _("Category")
    PROVIDER = "provider", _("Payment provider")
    COUPON = "coupon", _("Coupon")


class DailyBreakdown(_Figures):
    """One day's sales of one product, category, payment provider or coupon, in one currency.

    - ``key`` is the product's or category's id, the provider's code or the coupon's code in
      capitals ("" for no product, no category, no provider recorded); ``label`` its name when
      the day was counted (a product renamed later keeps its old name on past days, and a
      product keeps the category it had then).
    - Products and categories: ``gross`` is the lines' price x quantity, ``discounts`` their
      share of the coupon discount, ``refunds`` the value of the items refunded that day (a
      refund given as an amount, without items, counts in the day's totals but against no
      product); ``shipping`` is 0. ``orders`` counts orders with the product (or category).
    - Providers and coupons: order figures, as ``DailySales`` has them.
    """

    day = models.DateField(_("day"))
    currency = models.CharField(_("currency"), max_length=3)
    dimension = models.CharField(_("by"), max_length=10, choices=Dimension.choices)
    key = models.CharField(_("key"), max_length=64, blank=True)
    label = models.CharField(_("name"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("daily sales breakdown")
        verbose_name_plural = _("daily sales breakdowns")
        ordering = ["day", "dimension", "key"]
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["dimension", "day", "currency", "key"],
                                    name="one_daily_breakdown_row"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.dimension} {self.key}"


class MonthlyBreakdown(_Figures):
    """A whole month's ``DailyBreakdown`` rows added up: one row per month, currency,
    dimension and key, with the same figures (``orders`` adds up the days' counts, as a range of
    days does) and the greatest of the days' labels (as a range of days takes it).

    Kept by the rollup for **complete months** only, those whose last day has been counted (the
    latest ``DailySales`` day is on or after it): written in the transaction that counts that
    day, and written again in the transaction that recomputes any of its days, from the daily
    rows (``rollup.rebuild_months``), so that a month's rows are always its days' rows added
    up. A month still under way has none; readers take its days from ``DailyBreakdown``.
    """

    month = models.DateField(_("month"), help_text=_("The month's first day."))
    currency = models.CharField(_("currency"), max_length=3)
    dimension = models.CharField(_("by"), max_length=10, choices=Dimension.choices)
    key = models.CharField(_("key"), max_length=64, blank=True)
    label = models.CharField(_("name"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("monthly sales breakdown")
        verbose_name_plural = _("monthly sales breakdowns")
        ordering = ["month", "dimension", "key"]
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["dimension", "month", "currency", "key"],
                                    name="one_monthly_breakdown_row"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.dimension} {self.key}"


class MonthlyBreakdownTotal(_Figures):
    """A complete month's ``MonthlyBreakdown`` rows of one dimension and currency added up (the
    total line of a report over whole months, without adding up 17,000 product rows a month).
    Written with them (``rollup.rebuild_months``)."""

    month = models.DateField(_("month"), help_text=_("The month's first day."))
    currency = models.CharField(_("currency"), max_length=3)
    dimension = models.CharField(_("by"), max_length=10, choices=Dimension.choices)

    class Meta:
        verbose_name = _("monthly sales breakdown total")
        verbose_name_plural = _("monthly sales breakdown totals")
        ordering = ["month", "dimension"]
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["dimension", "month", "currency"],
                                    name="one_monthly_breakdown_total"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.dimension} total"
