"""The admin's searches (``backoffice.admin_search``): an exact SKU, barcode, order number, email
or phone alone, else a contains search that still finds a middle part; no row twice, a fixed
number of queries and no join in the paginator's count; on PostgreSQL, trigram indexes that
the contains searches use."""

from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext, override_settings

from backoffice.catalog.models import Product, Variant
from backoffice.inventory.models import Stock, Warehouse
from backoffice.inventory.services import default_warehouse
from backoffice.orders.models import Order, OrderLine

pytestmark = pytest.mark.django_db

VARIANTS = "/admin/catalog/variant/"
PRODUCTS = "/admin/catalog/product/"
STOCK = "/admin/inventory/stock/"
ORDERS = "/admin/orders/order/"


@pytest.fixture
def catalog():
    linen = Product.objects.create(name="Linen Shirt", slug="linen-shirt")
    boot = Product.objects.create(name="Safari Boot", slug="safari-boot")
    cotton = Product.objects.create(name="Cotton Shirt", slug="cotton-shirt")
    skus = {"TEE-1": linen, "TEE-10": linen, "TEE-100": linen, "BOOT-7": boot, "XTEE-5": boot,
            "CS-1": cotton}
    variants = {
        sku: Variant.objects.create(product=product, sku=sku, price=Decimal("10.00"),
                                    barcode=f"60012345{n:05d}")
        for n, (sku, product) in enumerate(skus.items())
    }
    second = Warehouse.objects.create(code="second", name="Second")
    for variant in variants.values():
        for warehouse in (default_warehouse(), second):
            Stock.objects.create(variant=variant, warehouse=warehouse, quantity=5)
    return variants


def _order(number: str, email: str, phone: str, *skus: str) -> Order:
    order = Order.objects.create(
        number=number, email=email, phone=phone, currency="USD", subtotal=Decimal("10"),
        total=Decimal("10"), shipping_method_code="flat", shipping_method_name="Flat",
        shipping_address={}, billing_address={},
    )
    for sku in skus:
        OrderLine.objects.create(order=order, product_name="P", sku=sku, quantity=1,
                                 unit_price=Decimal("5"), total=Decimal("5"))
    return order


@pytest.fixture
def orders():
    return {
        "amina": _order("10001", "Amina@Example.com", "+254712345678", "TEE-1"),
        "wanjiru": _order("10002", "wanjiru@example.com", "+254711222333", "MUG", "TEE-1"),
        "otieno": _order("100021", "otieno@mail.test", "", "MUG"),
    }


def _found(client, url: str, term: str) -> list:
    with cachalot_disabled():
        response = client.get(url, {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def _skus(client, url: str, term: str) -> list[str]:
    return sorted(v.sku for v in _found(client, url, term))


def test_variants_exact_sku_or_barcode_alone_else_contains(staff_client, catalog):
    assert _skus(staff_client, VARIANTS, "TEE-1") == ["TEE-1"]  # not TEE-10, TEE-100
    assert _skus(staff_client, VARIANTS, "TEE-10") == ["TEE-10"]
    assert _skus(staff_client, VARIANTS, "6001234500004") == ["XTEE-5"]
    # Not exact (another case): a contains search, case-insensitive.
    assert _skus(staff_client, VARIANTS, "tee-10") == ["TEE-10", "TEE-100"]
    # A middle part; a prefix; a barcode's start.
    assert _skus(staff_client, VARIANTS, "EE-1") == ["TEE-1", "TEE-10", "TEE-100"]
    assert _skus(staff_client, VARIANTS, "TEE") == ["TEE-1", "TEE-10", "TEE-100", "XTEE-5"]
    assert _skus(staff_client, VARIANTS, "600123450000") == [
        "BOOT-7", "CS-1", "TEE-1", "TEE-10", "TEE-100", "XTEE-5"]
    # The product's name, every word in any order.
    assert _skus(staff_client, VARIANTS, "shirt LINEN") == ["TEE-1", "TEE-10", "TEE-100"]
    assert _skus(staff_client, VARIANTS, "shirt") == ["CS-1", "TEE-1", "TEE-10", "TEE-100"]
    assert _skus(staff_client, VARIANTS, "nothing") == []


def test_stock_by_exact_sku_or_part_of_it_lists_each_row_once(staff_client, catalog):
    rows = _found(staff_client, STOCK, "TEE-1")  # in both warehouses
    assert sorted(s.variant.sku for s in rows) == ["TEE-1", "TEE-1"]
    rows = _found(staff_client, STOCK, "ee-10")
    assert sorted(s.variant.sku for s in rows) == ["TEE-10", "TEE-10", "TEE-100", "TEE-100"]
    assert {s.variant.sku for s in _found(staff_client, STOCK, "boot")} == {"BOOT-7", "XTEE-5"}


def test_products_by_exact_sku_sku_prefix_barcode_or_name_each_once(staff_client, catalog):
    def names(term: str) -> list[str]:
        return sorted(p.name for p in _found(staff_client, PRODUCTS, term))

    assert names("TEE-1") == ["Linen Shirt"]
    assert names("TEE") == ["Linen Shirt"]  # three matching SKUs, listed once
    assert names("XTEE") == ["Safari Boot"]
    assert names("6001234500005") == ["Cotton Shirt"]
    assert names("shirt") == ["Cotton Shirt", "Linen Shirt"]
    assert names("afar") == ["Safari Boot"]


@override_settings(STORE_COUNTRY="KE")
def test_orders_by_number_email_phone_or_line_sku_each_once(staff_client, orders):
    def found(term: str) -> list[str]:
        return sorted(o.number for o in _found(staff_client, ORDERS, term))

    assert found("10002") == ["10002"]  # not 100021, which contains it
    assert found("#10002") == ["10002"]
    assert found("amina@example.com") == ["10001"]  # any case
    assert found("wanjiru") == ["10002"]
    assert found("EXAMPLE.com") == ["10001", "10002"]
    assert found("0712 345 678") == ["10001"]  # typed as in Kenya, stored in E.164
    assert found("711222") == ["10002"]
    assert found("MUG") == ["10002", "100021"]  # an exact line SKU, each order once
    assert found("TEE-1") == ["10001", "10002"]
    assert found("nobody@example.com") == []


# Queries of a searched changelist, the same on SQLite and PostgreSQL: the session and user (2),
# the sidebar's badges (failed jobs, failed deliveries, orders to fulfil: 3), the exact step
# when it applies (1), the count and the page (2); the stock list reads its warehouse filter's
# choices (1), the order list the active plugins (1: read once a request, for its payment and
# shipping method filters).
SEARCH_QUERIES = [
    (VARIANTS, "TEE-1", 8),  # exact
    (VARIANTS, "EE-1", 8),  # exact step found nothing, then contains
    (STOCK, "TEE-1", 9),
    (PRODUCTS, "shirt", 8),
    (ORDERS, "10002", 9),
    (ORDERS, "wanjiru", 9),
]


@pytest.mark.parametrize(("url", "term", "expected"), SEARCH_QUERIES)
def test_a_search_costs_a_fixed_number_of_queries_and_counts_without_a_join(
    staff_client, catalog, orders, url, term, expected
):
    staff_client.get(url)  # the session, the content types
    with cachalot_disabled(), CaptureQueriesContext(connection) as captured:
        response = staff_client.get(url, {"q": term})
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1
    sql = [query["sql"] for query in captured.captured_queries]
    assert len(sql) == expected, "\n".join(sql)
    table = response.context["cl"].model._meta.db_table
    counts = [q for q in sql if q.startswith("SELECT COUNT(*)") and f'FROM "{table}"' in q]
    assert counts and all(" JOIN " not in q.split(" WHERE ", 1)[0] for q in counts), counts
    assert not any("DISTINCT" in q for q in sql)


# --- PostgreSQL: the trigram indexes and their use ------------------------------------------

TRIGRAM_INDEXES = {
    "variant_sku_trgm": "catalog_variant", "product_name_trgm": "catalog_product",
    "order_email_trgm": "orders_order", "order_phone_trgm": "orders_order",
}


@pytest.mark.postgres
def test_the_trigram_indexes_exist():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, tablename, indexdef FROM pg_indexes "
                       "WHERE indexname = ANY(%s)", [list(TRIGRAM_INDEXES)])
        rows = {name: (table, definition) for name, table, definition in cursor.fetchall()}
    assert {name: table for name, (table, _d) in rows.items()} == TRIGRAM_INDEXES
    assert all("gin_trgm_ops" in definition for _t, definition in rows.values())


def _plan(model, term: str) -> str:
    """The plan of ``model``'s admin search for ``term``, sequential scans off (a small table
    would be scanned anyway)."""
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    queryset, _ = model_admin.get_search_results(request, model._default_manager.all(), term)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.order_by().explain()


@pytest.mark.postgres
def test_contains_searches_read_the_trigram_indexes(catalog, orders):
    # Enough products that reading a whole b-tree costs more than the trigram index, with the
    # index's pending list merged (as autovacuum does) and the table analyzed.
    Product.objects.bulk_create(Product(name=f"Filler {n}", slug=f"filler-{n}")
                                for n in range(2000))
    with connection.cursor() as cursor:
        cursor.execute("SELECT gin_clean_pending_list('product_name_trgm')")
        cursor.execute("ANALYZE catalog_product")
    assert "variant_sku_trgm" in _plan(Variant, "EE-10")
    assert "product_name_trgm" in _plan(Product, "afar")
    assert "order_email_trgm" in _plan(Order, "wanjiru")
    assert "order_phone_trgm" in _plan(Order, "711222")


# --- The reports' indexes, declared by their models now -------------------------------------

REPORT_INDEXES = {
    "reports_order_paid_at": "orders_order", "reports_order_refund_due": "orders_order",
    "reports_refund_created_at": "orders_refund", "reports_stock_low": "inventory_stock",
    "reports_variant_watched": "catalog_variant",
}


def test_the_reports_indexes_are_declared_by_their_models_and_exist():
    from django.apps import apps

    declared = {index.name: model._meta.db_table for model in apps.get_models()
                for index in model._meta.indexes if index.name in REPORT_INDEXES}
    assert declared == REPORT_INDEXES
    with connection.cursor() as cursor:
        for name, table in REPORT_INDEXES.items():
            assert name in connection.introspection.get_constraints(cursor, table), name
