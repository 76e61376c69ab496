"""Catalog rules (prices, SKUs) and the SQL annotations: discounts, price ranges, stock, counts."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from backoffice.catalog.models import Category, Product, Variant
from backoffice.catalog.selectors import (
    products_in_category,
    with_discount,
    with_price_range,
    with_product_count,
    with_variant_count,
)
from backoffice.inventory.models import Stock, Warehouse
from backoffice.inventory.selectors import (
    StockStatus,
    filter_stock_status,
    inventory_totals,
    low_stock_report,
    low_stock_rows,
    with_product_stock,
    with_stock_levels,
    with_variant_stock,
)
from backoffice.inventory.services import default_warehouse

pytestmark = pytest.mark.django_db


@pytest.fixture
def product():
    return Product.objects.create(name="Tee", slug="tee")


# --- Model rules -------------------------------------------------------------------------------


def test_a_negative_price_is_refused_by_validation_and_by_the_database(product):
    variant = Variant(product=product, sku="NEG", price=Decimal("-1.00"))
    with pytest.raises(ValidationError) as error:
        variant.full_clean()
    assert "price" in error.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        Variant.objects.create(product=product, sku="NEG", price=Decimal("-1.00"))


def test_a_compare_at_price_below_the_price_is_refused_with_a_clear_message(product):
    variant = Variant(
        product=product, sku="CMP", price=Decimal("10.00"), compare_at_price=Decimal("9.99")
    )
    with pytest.raises(ValidationError) as error:
        variant.full_clean()
    assert error.value.message_dict["compare_at_price"] == [
        "The compare-at price must not be below the price."
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        variant.save()


def test_a_duplicate_sku_is_refused_by_validation_and_by_the_database(product):
    Variant.objects.create(product=product, sku="DUP-1", price=Decimal("5.00"))
    twin = Variant(product=product, sku="DUP-1", price=Decimal("6.00"))
    with pytest.raises(ValidationError) as error:
        twin.full_clean()
    assert error.value.message_dict["sku"] == ["Variant with this SKU already exists."]
    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()


def test_negative_stock_is_refused_by_the_database(product):
    variant = Variant.objects.create(product=product, sku="S-1", price=Decimal("1.00"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Stock.objects.create(variant=variant, warehouse=default_warehouse(), quantity=-1)


# --- Catalog selectors -------------------------------------------------------------------------


def test_discount_amount_and_percentage_are_exact_decimals_and_null_without_a_discount(product):
    Variant.objects.bulk_create([
        Variant(product=product, sku="D-1", price=Decimal("75.00"),
                compare_at_price=Decimal("100.00")),
        Variant(product=product, sku="D-2", price=Decimal("20.00"),
                compare_at_price=Decimal("30.00")),
        Variant(product=product, sku="D-3", price=Decimal("20.00"),
                compare_at_price=Decimal("20.00")),
        Variant(product=product, sku="D-4", price=Decimal("20.00")),
    ])
    rows = {
        v.sku: (v.discount_amount, v.discount_percentage)
        for v in with_discount(Variant.objects.all())
    }
    assert rows == {
        "D-1": (Decimal("25.00"), Decimal("25.00")),
        "D-2": (Decimal("10.00"), Decimal("33.33")),
        "D-3": (None, None),
        "D-4": (None, None),
    }
    assert all(isinstance(amount, Decimal) for amount, _ in rows.values() if amount is not None)


def test_price_range_covers_active_variants_only_and_shows_the_biggest_discount(product):
    Variant.objects.bulk_create([
        Variant(product=product, sku="R-1", price=Decimal("12.50")),
        Variant(product=product, sku="R-2", price=Decimal("30.00"),
                compare_at_price=Decimal("40.00")),
        Variant(product=product, sku="R-3", price=Decimal("1.00"), is_active=False),
    ])
    empty = Product.objects.create(name="Empty", slug="empty")
    rows = {p.pk: p for p in with_variant_count(with_price_range(Product.objects.all()))}
    assert rows[product.pk].price_from == Decimal("12.50")
    assert rows[product.pk].price_to == Decimal("30.00")
    assert rows[product.pk].discount_max == Decimal("25.00")
    assert rows[product.pk].variant_count == 3
    assert rows[empty.pk].price_from is None
    assert rows[empty.pk].discount_max is None
    assert rows[empty.pk].variant_count == 0


@pytest.fixture
def tree():
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    men = Category.objects.create(name="Men", slug="men", parent=clothing)
    shirts = Category.objects.create(name="Shirts", slug="shirts", parent=men)
    women = Category.objects.create(name="Women", slug="women", parent=clothing)
    home = Category.objects.create(name="Home", slug="home")
    return {"clothing": clothing, "men": men, "shirts": shirts, "women": women, "home": home}


def test_product_count_includes_every_descendant_in_one_query(
    tree, django_assert_num_queries
):
    for slug, category in [("a", "shirts"), ("b", "shirts"), ("c", "men"), ("d", "women"),
                           ("e", "home")]:
        Product.objects.create(name=slug, slug=slug, category=tree[category])
    Product.objects.create(name="none", slug="none")
    with django_assert_num_queries(1):
        counts = dict(with_product_count().values_list("slug", "product_count"))
    assert counts == {"clothing": 4, "men": 3, "shirts": 2, "women": 1, "home": 1}
    assert set(products_in_category(tree["men"]).values_list("slug", flat=True)) == {"a", "b", "c"}


# --- Stock selectors ---------------------------------------------------------------------------


@pytest.fixture
def stocked(product):
    """Two warehouses; variant A: 10 on hand (3 allocated) + 4, cost 2.50; B: 2 on hand; C: 0."""
    main = default_warehouse()
    second = Warehouse.objects.create(code="nairobi", name="Nairobi")
    a = Variant.objects.create(product=product, sku="A", price=Decimal("9.00"),
                               cost_price=Decimal("2.50"))
    b = Variant.objects.create(product=product, sku="B", price=Decimal("9.00"))
    c = Variant.objects.create(product=product, sku="C", price=Decimal("9.00"),
                               cost_price=Decimal("1.00"))
    Stock.objects.bulk_create([
        Stock(variant=a, warehouse=main, quantity=10, quantity_allocated=3, low_stock_threshold=5),
        Stock(variant=a, warehouse=second, quantity=4, low_stock_threshold=5),
        Stock(variant=b, warehouse=main, quantity=2, low_stock_threshold=5),
        Stock(variant=c, warehouse=main, quantity=0, low_stock_threshold=5),
    ])
    return {"a": a, "b": b, "c": c, "main": main, "second": second}


def test_stock_rows_have_available_status_and_inventory_value(stocked):
    rows = {
        (s.variant.sku, s.warehouse.code): (s.available, s.stock_status, s.inventory_value)
        for s in with_stock_levels().select_related("variant", "warehouse")
    }
    assert rows == {
        ("A", "main"): (7, "in_stock", Decimal("25.00")),
        ("A", "nairobi"): (4, "low", Decimal("10.00")),
        ("B", "main"): (2, "low", None),
        ("C", "main"): (0, "out", Decimal("0.00")),
    }


def test_variant_stock_sums_warehouses_and_judges_on_the_totals(stocked):
    rows = {
        v.sku: (v.available_total, v.threshold_total, v.stock_status)
        for v in with_variant_stock(Variant.objects.all())
    }
    assert rows == {"A": (11, 10, "in_stock"), "B": (2, 5, "low"), "C": (0, 5, "out")}
    low = filter_stock_status(with_variant_stock(Variant.objects.all()), StockStatus.LOW)
    assert list(low.values_list("sku", flat=True)) == ["B"]


def test_product_stock_counts_active_variants_only(stocked, product):
    product = with_product_stock(Product.objects.all()).get(pk=product.pk)
    assert (product.available_total, product.threshold_total, product.stock_status) == (
        13, 20, "low"
    )
    Stock.objects.update(low_stock_threshold=1)
    product = with_product_stock(Product.objects.all()).get(pk=product.pk)
    assert (product.available_total, product.stock_status) == (13, "in_stock")
    Stock.objects.update(low_stock_threshold=5)
    Variant.objects.filter(sku="A").update(is_active=False)
    product = with_product_stock(Product.objects.all()).get(pk=product.pk)
    assert (product.available_total, product.threshold_total, product.stock_status) == (
        2, 10, "low"
    )
    no_stock = Product.objects.create(name="Ghost", slug="ghost")
    assert with_product_stock(Product.objects.all()).get(pk=no_stock.pk).stock_status == "out"


def test_inventory_totals_are_one_aggregate(stocked, django_assert_num_queries):
    with django_assert_num_queries(1):
        totals = inventory_totals()
    assert totals.on_hand == 16
    assert totals.allocated == 3
    assert totals.available == 13
    assert totals.value == Decimal("35.00")  # 14 x 2.50 + 0 x 1.00; B has no cost


def test_low_stock_report_lists_rows_at_or_below_threshold_lowest_first(stocked):
    report = low_stock_report()
    assert [(r.sku, r.warehouse_code, r.available, r.status) for r in report] == [
        ("C", "main", 0, "out"),
        ("B", "main", 2, "low"),
        ("A", "nairobi", 4, "low"),
    ]
    Variant.objects.filter(sku="C").update(is_active=False)
    assert low_stock_rows().count() == 2


@pytest.mark.parametrize("status", StockStatus.values)
def test_the_grouped_stock_status_filter_agrees_with_the_annotation(stocked, product, status):
    from backoffice.inventory.selectors import stock_status_condition

    Product.objects.create(name="No stock at all", slug="no-stock")
    variants = with_variant_stock(Variant.objects.all())
    by_condition = variants.filter(stock_status_condition(status, per="variant"))
    assert set(by_condition.values_list("sku", flat=True)) == set(
        variants.filter(stock_status=status).values_list("sku", flat=True)
    )
    products = with_product_stock(Product.objects.all())
    by_condition = products.filter(stock_status_condition(status, per="variant__product"))
    assert set(by_condition.values_list("pk", flat=True)) == set(
        products.filter(stock_status=status).values_list("pk", flat=True)
    )
