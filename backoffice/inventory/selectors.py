"""Reads of stock: available quantities, stock status and inventory value, computed in SQL.

Available = on hand - allocated (reservations join in when checkout adds them). A stock row is
*out* when nothing is available, *low* when what is available is at or below its threshold, and
*in stock* otherwise. A variant or a product is judged on its totals over every warehouse (a
product over its active variants): out when the total available is 0, low when it is at or below
the summed thresholds.

A variant sold without stock (not tracked, or on backorder: ``catalog.models.sells_without_stock``)
is *in stock* whatever its rows say, and so is a product with such an active variant. The stock
rows themselves (``with_stock_levels``) still show what the shelf has, and the low-stock report
watches the rows of backorder variants (tracked: someone must reorder), never those of variants
whose stock is not tracked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import models
from django.db.models import (
    Case,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from backoffice.catalog.models import Variant, sells_without_stock
from backoffice.inventory.models import Stock
from backoffice.money import MONEY_DECIMAL_PLACES

logger = logging.getLogger(__name__)

# Quantity x cost can exceed a price's digits; the value column gets room for it.
VALUE_FIELD = DecimalField(max_digits=20, decimal_places=MONEY_DECIMAL_PLACES)


class StockStatus(models.TextChoices):
    IN_STOCK = "in_stock", _("In stock")
    LOW = "low", _("Low")
    OUT = "out", _("Out of stock")


def _status(available: str, threshold: str, always_in_stock: Q | Exists | None = None) -> Case:
    """A Case on two annotations (or fields): out, low or in stock; in stock whenever
    ``always_in_stock`` holds (sold without stock)."""
    first = [] if always_in_stock is None else [
        When(always_in_stock, then=Value(StockStatus.IN_STOCK.value))
    ]
    return Case(
        *first,
        When(**{f"{available}__lte": 0}, then=Value(StockStatus.OUT.value)),
        When(**{f"{available}__lte": F(threshold)}, then=Value(StockStatus.LOW.value)),
        default=Value(StockStatus.IN_STOCK.value),
        output_field=models.CharField(max_length=10),
    )


def _available_expression() -> ExpressionWrapper:
    return ExpressionWrapper(F("quantity") - F("quantity_allocated"), output_field=IntegerField())


def with_stock_levels(queryset: QuerySet[Stock] | None = None) -> QuerySet[Stock]:
    """Stock rows with ``available``, ``stock_status`` and ``inventory_value`` (on hand x cost;
    NULL when the variant has no cost price). The cost is a subquery, not a join: a join an
    annotation adds stays in the list's ``COUNT`` even though the count drops the annotation."""
    queryset = Stock.objects.all() if queryset is None else queryset
    cost = Subquery(Variant.objects.filter(pk=OuterRef("variant_id")).values("cost_price")[:1])
    return queryset.annotate(
        available=_available_expression(),
        inventory_value=ExpressionWrapper(F("quantity") * cost, output_field=VALUE_FIELD),
    ).annotate(stock_status=_status("available", "low_stock_threshold"))


def filter_stock_status(queryset: QuerySet, status: str) -> QuerySet:
    """Narrow a queryset annotated with ``stock_status`` (any of the ``with_*`` here)."""
    if status not in StockStatus.values:
        raise ValueError(f"unknown stock status {status!r}")
    return queryset.filter(stock_status=status)


def low_stock_rows(queryset: QuerySet[Stock] | None = None) -> QuerySet[Stock]:
    """Stock rows whose available quantity is at or below their threshold (out ones included),
    of active variants whose stock is tracked (backorder ones too: they still need reordering)."""
    return with_stock_levels(queryset).filter(
        available__lte=F("low_stock_threshold"), variant__is_active=True,
        variant__track_inventory=True,
    )


def _stock_totals(outer: str, *, active_variants_only: bool) -> tuple[Subquery, Subquery]:
    """Subqueries summing available and thresholds of the stock rows of ``OuterRef(pk)``."""
    rows = Stock.objects.filter(**{outer: OuterRef("pk")})
    if active_variants_only:
        rows = rows.filter(variant__is_active=True)
    rows = rows.order_by().values(outer)
    available = rows.annotate(total=Sum(_available_expression())).values("total")
    threshold = rows.annotate(total=Sum("low_stock_threshold")).values("total")
    return (
        Coalesce(Subquery(available, output_field=IntegerField()), 0),
        Coalesce(Subquery(threshold, output_field=IntegerField()), 0),
    )


def with_variant_stock(queryset: QuerySet) -> QuerySet:
    """Variants with ``available_total`` and ``threshold_total`` over warehouses, and
    ``stock_status`` (in stock when sold without stock)."""
    available, threshold = _stock_totals("variant", active_variants_only=False)
    return queryset.annotate(available_total=available, threshold_total=threshold).annotate(
        stock_status=_status("available_total", "threshold_total", sells_without_stock())
    )


def with_variant_stock_grouped(queryset: QuerySet) -> QuerySet:
    """What ``with_variant_stock`` annotates, from one grouped LEFT JOIN on the stock rows
    instead of two correlated subqueries per variant: about half the cost to build and run for
    a page of variants (the storefront's listings). A test keeps the two equal."""
    available = Coalesce(
        Sum(ExpressionWrapper(F("stocks__quantity") - F("stocks__quantity_allocated"),
                              output_field=IntegerField())),
        0,
    )
    threshold = Coalesce(Sum("stocks__low_stock_threshold"), 0)
    return queryset.annotate(available_total=available, threshold_total=threshold).annotate(
        stock_status=_status("available_total", "threshold_total", sells_without_stock())
    )


def with_product_stock(queryset: QuerySet) -> QuerySet:
    """Products with ``available_total``, ``threshold_total`` over their active variants in every
    warehouse, and ``stock_status`` (in stock when an active variant sells without stock)."""
    available, threshold = _stock_totals("variant__product", active_variants_only=True)
    sold_without_stock = Exists(
        Variant.objects.filter(sells_without_stock(), product=OuterRef("pk"), is_active=True)
    )
    return queryset.annotate(available_total=available, threshold_total=threshold).annotate(
        stock_status=_status("available_total", "threshold_total", sold_without_stock)
    )


@dataclass(frozen=True)
class InventoryTotals:
    on_hand: int
    allocated: int
    available: int
    value: Decimal


def inventory_totals(queryset: QuerySet[Stock] | None = None) -> InventoryTotals:
    """Totals over stock rows (all, or a filtered queryset) in one aggregate query."""
    queryset = Stock.objects.all() if queryset is None else queryset
    totals = queryset.aggregate(
        on_hand=Coalesce(Sum("quantity"), 0),
        allocated=Coalesce(Sum("quantity_allocated"), 0),
        value=Coalesce(
            Sum(F("quantity") * F("variant__cost_price"), output_field=VALUE_FIELD),
            Value(Decimal("0")),
            output_field=VALUE_FIELD,
        ),
    )
    return InventoryTotals(
        on_hand=totals["on_hand"],
        allocated=totals["allocated"],
        available=totals["on_hand"] - totals["allocated"],
        value=Decimal(totals["value"]).quantize(Decimal("0.01")),
    )


@dataclass(frozen=True)
class LowStockRow:
    stock_id: int
    variant_id: int
    sku: str
    product_name: str
    warehouse_code: str
    available: int
    threshold: int
    status: str


def low_stock_report() -> list[LowStockRow]:
    """Every active variant's stock row at or below its threshold, lowest first, in one query."""
    rows = (
        low_stock_rows()
        .order_by("available", "variant__sku", "warehouse__code")
        .values_list(
            "pk", "variant_id", "variant__sku", "variant__product__name", "warehouse__code",
            "available", "low_stock_threshold", "stock_status",
        )
    )
    return [LowStockRow(*row) for row in rows]



@dataclass(frozen=True)
class LowStockSummary:
    count: int  # stock rows (variant, warehouse) at or below their threshold
    worst: list[LowStockRow]


def low_stock_summary(limit: int = 10) -> LowStockSummary:
    """How many stock rows ``low_stock_report`` lists, and ``limit`` of the lowest (least
    available first; ties by variant): one query, the count a subquery computed once. Both
    parts read partial indexes of the low rows and the watched variants (``Stock`` and
    ``Variant``'s ``Meta.indexes``), so the cost follows the low rows, not the stock table."""
    count = low_stock_rows().order_by().annotate(
        total=Func(F("pk"), function="COUNT")).values("total")
    rows = list(
        low_stock_rows()
        .annotate(total=Subquery(count, output_field=IntegerField()))
        .order_by("available", "variant_id", "warehouse_id")
        .values_list(
            "pk", "variant_id", "variant__sku", "variant__product__name", "warehouse__code",
            "available", "low_stock_threshold", "stock_status", "total",
        )[:limit]
    )
    return LowStockSummary(count=rows[0][-1] if rows else 0,
                           worst=[LowStockRow(*row[:-1]) for row in rows])


def stock_status_condition(status: str, *, per: str) -> Q:
    """A filter on ``pk`` for variants (``per="variant"``) or products
    (``per="variant__product"``, active variants only) in a stock status, as the ``with_*``
    annotations judge it, but built on one grouped aggregate over the stock table: filtering
    100k products this way is one hash aggregate, not a correlated subquery per product."""
    if status not in StockStatus.values:
        raise ValueError(f"unknown stock status {status!r}")
    rows = Stock.objects.all()
    if per != "variant":
        rows = rows.filter(variant__is_active=True)
    totals = (
        rows.order_by()
        .values(per)
        .annotate(total=Sum(_available_expression()), threshold=Sum("low_stock_threshold"))
    )
    # Sold without stock (not tracked, on backorder): in stock whatever the rows say.
    if per == "variant":
        free = Q(track_inventory=False) | Q(allow_backorder=True)
    else:
        free = Q(pk__in=Variant.objects.filter(sells_without_stock(), is_active=True)
                 .values("product"))
    if status == StockStatus.OUT:
        return ~Q(pk__in=totals.filter(total__gt=0).values(per)) & ~free
    if status == StockStatus.LOW:
        return Q(pk__in=totals.filter(total__gt=0, total__lte=F("threshold")).values(per)) & ~free
    return Q(pk__in=totals.filter(total__gt=F("threshold")).values(per)) | free
