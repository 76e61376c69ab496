"""Reads of the catalog done in SQL: discounts, price ranges, product counts down the tree.

Each function takes a queryset and returns it annotated, so the admin, the API and jobs can stack
them and still run one query per page. Money stays ``Decimal``.
"""

from __future__ import annotations

from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    Max,
    Min,
    OuterRef,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Coalesce

from backoffice.catalog.models import Category, Product, Variant
from backoffice.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS

MONEY_FIELD = DecimalField(max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES)
PERCENT_FIELD = DecimalField(max_digits=5, decimal_places=2)


def _discount_amount(price: str, compare_at: str) -> Case:
    return Case(
        When(
            **{f"{compare_at}__gt": F(price)},
            then=ExpressionWrapper(F(compare_at) - F(price), output_field=MONEY_FIELD),
        ),
        default=None,
        output_field=MONEY_FIELD,
    )


class _PercentOff(Func):
    """``ROUND(100 * (was - now) / was, 2)``. SQLite stores whole prices as integers and would
    divide them as integers (10 * 100 / 30 = 33), so there the divisor is made a REAL first."""

    output_field = PERCENT_FIELD

    def as_sql(self, compiler, connection, **extra_context):
        price_sql, price_params = compiler.compile(self.source_expressions[0])
        was_sql, was_params = compiler.compile(self.source_expressions[1])
        divisor = f"CAST({was_sql} AS REAL)" if connection.vendor == "sqlite" else was_sql
        sql = f"ROUND(100 * ({was_sql} - {price_sql}) / {divisor}, 2)"
        return sql, (*was_params, *price_params, *was_params)


def _discount_percentage(price: str, compare_at: str) -> Case:
    return Case(
        When(**{f"{compare_at}__gt": F(price)}, then=_PercentOff(F(price), F(compare_at))),
        default=None,
        output_field=PERCENT_FIELD,
    )


def with_discount(queryset: QuerySet[Variant] | None = None) -> QuerySet[Variant]:
    """Variants with ``discount_amount`` (compare-at - price) and ``discount_percentage``
    (rounded to 2 places); both NULL when the variant is not discounted."""
    queryset = Variant.objects.all() if queryset is None else queryset
    return queryset.annotate(
        discount_amount=_discount_amount("price", "compare_at_price"),
        discount_percentage=_discount_percentage("price", "compare_at_price"),
    )


def price_bounds() -> dict[str, Subquery]:
    """``price_min``/``price_max`` of ``OuterRef("pk")``'s active variants (NULL without any):
    the expressions behind both the live annotation and the stored listing columns."""
    grouped = Variant.objects.filter(
        product=OuterRef("pk"), is_active=True
    ).order_by().values("product")
    return {
        "price_min": Subquery(grouped.annotate(v=Min("price")).values("v"),
                              output_field=MONEY_FIELD),
        "price_max": Subquery(grouped.annotate(v=Max("price")).values("v"),
                              output_field=MONEY_FIELD),
    }


def with_price_range(queryset: QuerySet[Product] | None = None) -> QuerySet[Product]:
    """Products with ``price_from``/``price_to``, computed now over active variants (NULL
    without any; ``price_min``/``price_max`` are the stored copies listings use), and
    ``discount_max``, the biggest discount percentage among them (NULL when none is on sale)."""
    queryset = Product.objects.all() if queryset is None else queryset
    active = Variant.objects.filter(product=OuterRef("pk"), is_active=True).order_by()
    bounds = price_bounds()
    return queryset.annotate(
        price_from=bounds["price_min"],
        price_to=bounds["price_max"],
        discount_max=Subquery(
            with_discount(active.filter(compare_at_price__gt=F("price")))
            .order_by("-discount_percentage")
            .values("discount_percentage")[:1],
            output_field=PERCENT_FIELD,
        ),
    )


def with_variant_count(queryset: QuerySet[Product]) -> QuerySet[Product]:
    """Products with ``variant_count`` (all variants, active or not)."""
    counts = (
        Variant.objects.filter(product=OuterRef("pk"))
        .order_by()
        .values("product")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return queryset.annotate(
        variant_count=Coalesce(Subquery(counts, output_field=IntegerField()), 0)
    )


def with_product_count(queryset: QuerySet[Category] | None = None) -> QuerySet[Category]:
    """Categories with ``product_count``: products whose primary category is the node or any
    node below it. One correlated subquery on the nested-set range (same tree, lft within the
    node's lft..rght), so a page of categories is one query whatever the depth."""
    queryset = Category.objects.all() if queryset is None else queryset
    counts = (
        Product.objects.filter(
            category__tree_id=OuterRef("tree_id"),
            category__lft__gte=OuterRef("lft"),
            category__lft__lte=OuterRef("rght"),
        )
        .order_by()
        .values("category__tree_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return queryset.annotate(
        product_count=Coalesce(Subquery(counts, output_field=IntegerField()), 0)
    )


def products_in_category(category: Category, queryset: QuerySet[Product] | None = None):
    """Products whose primary category is ``category`` or one of its descendants."""
    queryset = Product.objects.all() if queryset is None else queryset
    return queryset.filter(
        category__tree_id=category.tree_id,
        category__lft__gte=category.lft,
        category__lft__lte=category.rght,
    )


def category_tree(queryset: QuerySet[Category] | None = None) -> QuerySet[Category]:
    """Categories in tree order (depth first, siblings by position and name)."""
    queryset = Category.objects.all() if queryset is None else queryset
    return queryset.order_by("tree_id", "lft")
