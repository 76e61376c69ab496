"""The catalog and stock admin: every page within a query budget that does not grow with rows,
filters, search, and the bulk actions."""

import re
from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled
from django.contrib.admin import helpers
from django.contrib.messages import get_messages

from backoffice.catalog.demo import generate_catalog
from backoffice.catalog.models import Category, Product, ProductImage, Variant
from backoffice.inventory.models import Stock, Warehouse
from backoffice.inventory.services import StockLevel, bulk_set_stock_levels, default_warehouse

pytestmark = pytest.mark.django_db

# Queries per page (measured on SQLite and PostgreSQL), whatever the number of rows: the session
# and user (2), the sidebar's badges (failed jobs, orders to fulfil: 2), the count and the page
# of results, filter choices and inlines, and on PostgreSQL the planner's row estimate for an
# unfiltered list.
CHANGELIST_BUDGETS = {
    "/admin/catalog/category/": 8,
    "/admin/catalog/product/": 8,
    "/admin/catalog/variant/": 8,
    "/admin/inventory/stock/": 9,
    "/admin/inventory/lowstock/": 8,
    "/admin/inventory/stockmovement/": 9,
    "/admin/inventory/warehouse/": 8,
    "/admin/catalog/product/?stock_status=low": 7,
    "/admin/catalog/product/?q=G3-1-1": 8,  # an exact-SKU lookup first
    "/admin/catalog/product/?is_active__exact=1&brand__icontains=a": 7,
    "/admin/catalog/variant/?stock_status=out": 7,
    "/admin/inventory/stock/?stock_status=low": 8,
}
ADD_FORM_BUDGETS = {
    "/admin/catalog/category/add/": 6,
    "/admin/catalog/product/add/": 6,
    "/admin/catalog/variant/add/": 6,
    "/admin/inventory/warehouse/add/": 6,
}


def _catalog(rows: int) -> dict:
    """``rows`` generated products, plus one product with ``rows`` variants stocked in the
    default warehouse and a category with ``rows`` children."""
    generate_catalog(rows, seed=3)
    big = Product.objects.create(name="Big", slug="big", category=Category.objects.first())
    variants = Variant.objects.bulk_create(
        Variant(product=big, sku=f"BIG-{i}", price=Decimal("5.00"), compare_at_price="6.00")
        for i in range(rows)
    )
    ProductImage.objects.bulk_create(
        ProductImage(product=big, source_url=f"https://example.com/{i}.jpg") for i in range(rows)
    )
    warehouse = default_warehouse()
    bulk_set_stock_levels(
        [StockLevel(variant_id=v.pk, warehouse_id=warehouse.pk, quantity=3) for v in variants]
    )
    parent = Category.objects.create(name="Parent", slug="parent")
    for i in range(rows):
        Category.objects.create(name=f"Child {i}", slug=f"child-{i}", parent=parent)
    stock = Stock.objects.filter(variant=variants[0]).get()
    return {
        f"/admin/catalog/product/{big.pk}/change/": 11,  # + the stock per warehouse table
        f"/admin/catalog/variant/{variants[0].pk}/change/": 8,
        f"/admin/catalog/category/{parent.pk}/change/": 6,
        f"/admin/inventory/stock/{stock.pk}/change/": 7,
        f"/admin/inventory/lowstock/{stock.pk}/change/": 7,
        f"/admin/inventory/stockmovement/{stock.movements.get().pk}/change/": 7,
        f"/admin/inventory/warehouse/{warehouse.pk}/change/": 6,
        f"/admin/inventory/stockmovement/?stock__id__exact={stock.pk}": 8,
        f"/admin/catalog/product/?category__id__exact={parent.pk}": 10,
    }


@pytest.mark.parametrize("rows", [5, 60])
def test_every_catalog_and_stock_page_stays_within_its_query_budget(
    staff_client, django_assert_max_num_queries, rows
):
    pages = {**CHANGELIST_BUDGETS, **ADD_FORM_BUDGETS, **_catalog(rows)}
    for url, budget in pages.items():
        with cachalot_disabled(), django_assert_max_num_queries(budget, info=url):
            response = staff_client.get(url)
        assert response.status_code == 200, url


def test_product_list_shows_price_range_discount_and_stock(staff_client):
    product = Product.objects.create(name="Kikoi", slug="kikoi")
    cheap = Variant.objects.create(product=product, sku="K-1", price="10.00",
                                   compare_at_price="20.00")
    Variant.objects.create(product=product, sku="K-2", price="1250.00")
    bulk_set_stock_levels(
        [StockLevel(variant_id=cheap.pk, warehouse_id=default_warehouse().pk, quantity=3)]
    )
    html = staff_client.get("/admin/catalog/product/").content.decode()
    assert "USD 10.00 – 1,250.00" in html
    assert "up to 50.00%" in html
    assert "3 · Low" in html


def test_the_product_page_shows_stock_per_warehouse_with_links_to_adjust_it(staff_client):
    product = Product.objects.create(name="Kikoi", slug="kikoi")
    variant = Variant.objects.create(product=product, sku="K-1", price="10.00")
    second = Warehouse.objects.create(code="mombasa", name="Mombasa")
    bulk_set_stock_levels([
        StockLevel(variant_id=variant.pk, warehouse_id=default_warehouse().pk, quantity=3),
        StockLevel(variant_id=variant.pk, warehouse_id=second.pk, quantity=8),
    ])
    html = staff_client.get(f"/admin/catalog/product/{product.pk}/change/").content.decode()
    for stock in Stock.objects.filter(variant=variant):
        assert f"/admin/inventory/stock/{stock.pk}/change/" in html
    # One unfold table row per place: SKU, warehouse name, on hand, allocated, available.
    cells = "".join(rf"<td[^>]*>\s*{text}\s*</td>\s*" for text in ("Mombasa", 8, 0, 8))
    assert re.search(cells, html)


def _product(name: str, category=None, quantity: int = 0, **variant) -> Product:
    product = Product.objects.create(name=name, slug=name.lower(), category=category)
    v = Variant.objects.create(product=product, sku=f"SKU-{name}", price="10.00", **variant)
    if quantity:
        bulk_set_stock_levels(
            [StockLevel(variant_id=v.pk, warehouse_id=default_warehouse().pk, quantity=quantity)]
        )
    return product


def _listed(client, query: str) -> set[str]:
    response = client.get(f"/admin/catalog/product/?{query}")
    assert response.status_code == 200
    return {p.name for p in response.context["cl"].result_list}


def test_the_category_filter_includes_products_of_every_descendant(staff_client):
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    men = Category.objects.create(name="Men", slug="men", parent=clothing)
    shirts = Category.objects.create(name="Shirts", slug="shirts", parent=men)
    home = Category.objects.create(name="Home", slug="home")
    _product("Polo", shirts)
    _product("Belt", men)
    _product("Scarf", clothing)
    _product("Pan", home)
    assert _listed(staff_client, f"category__id__exact={clothing.pk}") == {"Polo", "Belt", "Scarf"}
    assert _listed(staff_client, f"category__id__exact={men.pk}") == {"Polo", "Belt"}
    assert _listed(staff_client, f"category__id__exact={shirts.pk}") == {"Polo"}


def test_the_stock_filter_tells_in_stock_low_and_out(staff_client):
    _product("Plenty", quantity=50)
    _product("Few", quantity=2)
    _product("None")
    assert _listed(staff_client, "stock_status=in_stock") == {"Plenty"}
    assert _listed(staff_client, "stock_status=low") == {"Few"}
    assert _listed(staff_client, "stock_status=out") == {"None"}


def test_search_finds_a_product_once_by_name_sku_or_barcode(staff_client):
    product = Product.objects.create(name="Safari Boot", slug="safari-boot")
    for i in range(3):
        Variant.objects.create(product=product, sku=f"BOOT-{i}", price="80.00",
                               barcode=f"600{i}")
    _product("Other")
    assert _listed(staff_client, "q=safari") == {"Safari Boot"}
    response = staff_client.get("/admin/catalog/product/?q=BOOT")
    assert [p.name for p in response.context["cl"].result_list] == ["Safari Boot"]
    assert _listed(staff_client, "q=6002") == {"Safari Boot"}
    assert _listed(staff_client, "q=BOOT-1") == {"Safari Boot"}


def _post_action(client, url: str, action: str, objects, **data):
    payload = {"action": action, helpers.ACTION_CHECKBOX_NAME: [o.pk for o in objects], **data}
    return client.post(url, payload)


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_publish_unpublish_feature_and_unfeature_in_bulk(staff_client):
    a, b = _product("A"), _product("B")
    url = "/admin/catalog/product/"
    _post_action(staff_client, url, "unpublish", [a, b])
    assert not Product.objects.filter(is_active=True).exists()
    _post_action(staff_client, url, "publish", [a])
    _post_action(staff_client, url, "feature", [a, b])
    assert set(Product.objects.filter(is_active=True).values_list("name", flat=True)) == {"A"}
    assert Product.objects.filter(is_featured=True).count() == 2
    _post_action(staff_client, url, "unfeature", [b])
    assert list(Product.objects.filter(is_featured=True).values_list("name", flat=True)) == ["A"]


def test_the_price_action_shows_a_form_first_and_changes_nothing_until_applied(staff_client):
    product = _product("Mug")
    response = _post_action(staff_client, "/admin/catalog/product/", "change_prices", [product])
    assert response.status_code == 200
    assert "Change by (%)" in response.content.decode()
    assert Variant.objects.get().price == Decimal("10.00")


def test_a_percentage_price_cut_rounds_half_up_and_keeps_compare_at_at_or_above_price(
    staff_client,
):
    product = Product.objects.create(name="Lamp", slug="lamp")
    Variant.objects.create(product=product, sku="L-1", price="19.99")
    Variant.objects.create(product=product, sku="L-2", price="10.05", compare_at_price="12.00")
    response = _post_action(
        staff_client, "/admin/catalog/product/", "change_prices", [product],
        percentage="-10", apply="yes",
    )
    assert response.status_code == 302
    prices = dict(Variant.objects.values_list("sku", "price"))
    assert prices == {"L-1": Decimal("17.99"), "L-2": Decimal("9.05")}  # 17.991, 9.045 half-up
    assert Variant.objects.get(sku="L-2").compare_at_price == Decimal("12.00")
    assert "Changed the price of 2 variants." in _messages(response)


def test_a_price_rise_lifts_a_compare_at_price_that_would_fall_below_it(staff_client):
    product = Product.objects.create(name="Rug", slug="rug")
    Variant.objects.create(product=product, sku="R-1", price="100.00", compare_at_price="105.00")
    _post_action(
        staff_client, "/admin/catalog/product/", "change_prices", [product],
        percentage="10", apply="yes",
    )
    variant = Variant.objects.get()
    assert (variant.price, variant.compare_at_price) == (Decimal("110.00"), Decimal("110.00"))


def test_a_price_change_that_would_make_prices_negative_is_refused_and_changes_nothing(
    staff_client,
):
    product = _product("Chair")
    response = _post_action(
        staff_client, "/admin/catalog/product/", "change_prices", [product],
        percentage="-150", apply="yes",
    )
    assert response.status_code == 302
    assert Variant.objects.get().price == Decimal("10.00")
    assert any("negative" in message for message in _messages(response))


def test_moving_products_to_a_category_in_bulk(staff_client):
    kitchen = Category.objects.create(name="Kitchen", slug="kitchen")
    a, b = _product("Pot"), _product("Pan")
    _post_action(
        staff_client, "/admin/catalog/product/", "move_to_category", [a, b],
        category=kitchen.pk, apply="yes",
    )
    assert set(Product.objects.values_list("category", flat=True)) == {kitchen.pk}


def test_categories_list_in_tree_order_with_counts_including_descendants(staff_client):
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    men = Category.objects.create(name="Men", slug="men", parent=clothing)
    Category.objects.create(name="Aprons", slug="aprons")
    _product("Polo", men)
    response = staff_client.get("/admin/catalog/category/")
    rows = [(c.name, c.product_count) for c in response.context["cl"].result_list]
    assert rows == [("Aprons", 0), ("Clothing", 1), ("Men", 1)]
    assert "padding-left: 1.5rem" in response.content.decode()


def test_a_category_moves_through_its_form_and_its_subtree_paths_follow(staff_client):
    men = Category.objects.create(name="Men", slug="men")
    shirts = Category.objects.create(name="Shirts", slug="shirts", parent=men)
    Category.objects.create(name="Polo", slug="polo", parent=shirts)
    women = Category.objects.create(name="Women", slug="women")
    response = staff_client.post(
        f"/admin/catalog/category/{shirts.pk}/change/",
        {"name": "Shirts", "slug": "shirts", "parent": women.pk, "position": 0, "is_active": "on"},
    )
    assert response.status_code == 302
    assert set(Category.objects.values_list("path", flat=True)) == {
        "men", "women", "women/shirts", "women/shirts/polo",
    }


def test_a_category_form_refuses_a_parent_inside_its_own_subtree(staff_client):
    men = Category.objects.create(name="Men", slug="men")
    shirts = Category.objects.create(name="Shirts", slug="shirts", parent=men)
    response = staff_client.post(
        f"/admin/catalog/category/{men.pk}/change/",
        {"name": "Men", "slug": "men", "parent": shirts.pk, "position": 0},
    )
    assert response.status_code == 200
    assert "cannot move under itself" in response.content.decode()
    men.refresh_from_db()
    assert men.parent is None


def test_the_move_action_reports_a_refused_move_as_a_message_not_an_error_page(staff_client):
    a = Category.objects.create(name="A", slug="a")
    b = Category.objects.create(name="B", slug="b")
    Category.objects.create(name="Sale", slug="sale", parent=a)
    sale_b = Category.objects.create(name="Sale", slug="sale", parent=b)
    shoes = Category.objects.create(name="Shoes", slug="shoes")
    response = _post_action(
        staff_client, "/admin/catalog/category/", "move_categories", [sale_b, shoes],
        parent=a.pk, position="", apply="yes",
    )
    assert response.status_code == 302
    messages = _messages(response)
    assert any("already has a category with the slug 'sale'" in m for m in messages)
    assert "Moved 1 category." in messages
    assert Category.objects.get(pk=shoes.pk).path == "a/shoes"
    assert Category.objects.get(pk=sale_b.pk).path == "b/sale"


@pytest.mark.postgres
def test_an_unfiltered_big_table_is_counted_from_the_planner_estimate(monkeypatch):
    from django.db import connection

    from backoffice.catalog import admin as catalog_admin

    generate_catalog(20, seed=5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
    monkeypatch.setattr(catalog_admin, "ESTIMATE_COUNT_ABOVE", 1)
    paginator = catalog_admin.EstimatedCountPaginator(Product.objects.order_by("pk"), 10)
    assert paginator.count == 20  # from pg_class.reltuples, no COUNT(*)
    filtered = catalog_admin.EstimatedCountPaginator(
        Product.objects.filter(name__startswith="zzz").order_by("pk"), 10
    )
    assert filtered.count == 0  # a filtered list is counted exactly


def test_a_product_is_created_with_its_variants_in_one_admin_form(staff_client):
    shirts = Category.objects.create(name="Shirts", slug="shirts")
    data = {
        "name": "Linen Shirt", "slug": "linen-shirt", "description": "", "brand": "Kitenge Co",
        "product_type": "", "category": shirts.pk, "tags": "",
        "is_active": "on", "seo_title": "", "seo_description": "",
        "variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "1", "variants-MAX_NUM_FORMS": "1000",
        "images-TOTAL_FORMS": "0", "images-INITIAL_FORMS": "0",
        "images-MIN_NUM_FORMS": "0", "images-MAX_NUM_FORMS": "1000",
    }
    for i, (sku, price, compare_at) in enumerate([("LS-M", "40.00", ""), ("LS-L", "42.00", "50")]):
        data.update({
            f"variants-{i}-sku": sku, f"variants-{i}-name": sku[-1], f"variants-{i}-price": price,
            f"variants-{i}-compare_at_price": compare_at, f"variants-{i}-cost_price": "",
            f"variants-{i}-barcode": "", f"variants-{i}-option_values__name": "",
            f"variants-{i}-is_active": "on", f"variants-{i}-position": str(i),
        })
    response = staff_client.post("/admin/catalog/product/add/", data)
    assert response.status_code == 302, response.context["errors"]
    product = Product.objects.get(slug="linen-shirt")
    assert sorted(product.variants.values_list("sku", flat=True)) == ["LS-L", "LS-M"]

    data["slug"] = "linen-shirt-2"
    data["variants-1-compare_at_price"] = "41.00"  # below the price
    data["variants-0-sku"], data["variants-1-sku"] = "LS2-M", "LS2-L"
    response = staff_client.post("/admin/catalog/product/add/", data)
    assert response.status_code == 200
    assert "The compare-at price must not be below the price." in response.content.decode()


def test_a_deep_page_lists_the_right_rows_in_order(staff_client):
    Product.objects.bulk_create(
        Product(name=f"P{i:03d}", slug=f"p{i:03d}", brand="Acme") for i in range(120)
    )
    response = staff_client.get("/admin/catalog/product/?o=1&p=2&brand__icontains=acme")
    names = [p.name for p in response.context["cl"].result_list]
    assert names == [f"P{i:03d}" for i in range(50, 100)]
    assert response.context["cl"].result_count == 120
