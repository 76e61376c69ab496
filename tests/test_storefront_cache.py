"""The storefront response cache: a hit costs no query, and every kind of write shows at once.

These tests commit for real (transactional): stock stamps change in ``on_commit`` callbacks and
cachalot renews its table marks after the commit, as in production.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from backoffice.bulk import insert_rows
from backoffice.catalog import documents, storefront_cache
from backoffice.catalog.models import Category, Product, ProductImage, Variant
from backoffice.catalog.services import change_prices_by_percentage, set_products_published
from backoffice.imports.services import import_catalog
from backoffice.inventory.models import Stock, Warehouse
from backoffice.inventory.services import StockLevel, adjust_stock, bulk_set_stock_levels
from backoffice.inventory.signals import stock_changed, stock_stamp

pytestmark = pytest.mark.django_db(transaction=True)

LISTING = "/api/v1/products?ordering=price"


def make(name, category, prices, stock=(5,), **fields):
    product = Product.objects.create(name=name, slug=name.lower().replace(" ", "-"),
                                     category=category, brand="Acme", **fields)
    for position, price in enumerate(prices):
        variant = Variant.objects.create(
            product=product, sku=f"{product.slug}-{position}".upper(), price=price,
            name=f"v{position}", option_values={"Size": ["S", "M", "L"][position % 3]},
            position=position,
        )
        quantity = stock[position] if position < len(stock) else 0
        if quantity:
            adjust_stock(variant_id=variant.pk, quantity_change=quantity)
    return product


@pytest.fixture
def shop():
    # Transactional tests empty every table after each test, the migration's warehouse too.
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    shirts = Category.objects.create(name="Shirts", slug="shirts", parent=clothing)
    polo = make("Blue Polo", shirts, ["25.00", "30.00"])
    lamp = make("Brass Lamp", None, ["40.00"], stock=(20,))
    ProductImage.objects.create(product=polo, source_url="https://img.example/polo.jpg")
    return {"polo": polo, "lamp": lamp}


@pytest.fixture
def api():
    """An anonymous storefront: no session cookie, no token (those bypass the cache)."""
    return Client()


def get(api, url, expected=200):
    response = api.get(url)
    assert response.status_code == expected, response.content
    return response


def item(body, name):
    return next(i for i in body["items"] if i["name"] == name)


def availability(body, sku):
    variants = body["variants"] if "variants" in body else [
        v for i in body["items"] for v in i["variants"]]
    return next(v["availability"] for v in variants if v["sku"] == sku)


# --- Hits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    LISTING, "/api/v1/products?category=clothing&page_size=1&page=2",
    "/api/v1/products/blue-polo", "/api/v1/categories", "/api/v1/categories/clothing/shirts",
])
def test_a_repeated_read_is_a_hit_that_makes_no_query(api, shop, url, django_assert_num_queries):
    first = get(api, url)
    assert first["X-Cache"] == "miss"
    with django_assert_num_queries(0):
        second = get(api, url)
    assert second["X-Cache"] == "hit"
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"]
    # The middleware's headers are still there, and Server-Timing tells the hit.
    assert second["X-Request-ID"] and second["X-Request-ID"] != first["X-Request-ID"]
    assert second["Server-Timing"].startswith('db;dur=0.00;desc="0 queries", total;dur=')
    assert second["Server-Timing"].endswith('cache;desc="hit"')


def test_the_query_string_is_normalized_but_keeps_what_changes_the_answer(api, shop):
    get(api, "/api/v1/products?brand=Acme&ordering=price&page_size=5")
    assert get(api, "/api/v1/products?page_size=5&ordering=price&brand=Acme")["X-Cache"] == "hit"
    assert get(api, "/api/v1/products?page_size=5&ordering=price&brand=Acme&brand=Acme"
               )["X-Cache"] == "miss", "a repeated value is another query"
    # A repeated option keeps its last value: reversing them asks something else.
    get(api, "/api/v1/products?option=Size:M&option=Size:S")
    assert get(api, "/api/v1/products?option=Size:S&option=Size:M")["X-Cache"] == "miss"


def test_errors_are_never_cached(api, shop):
    for url, status in [("/api/v1/products/nothing-here", 404),
                        ("/api/v1/products?category=nowhere", 404),
                        ("/api/v1/categories/nowhere", 404),
                        ("/api/v1/products?page=0", 422)]:
        get(api, url, status)
        with CaptureQueriesContext(connection):
            again = get(api, url, status)
        assert again["X-Cache"] == "miss", url


def test_requests_with_credentials_or_a_cart_bypass_the_cache(api, shop, staff_client):
    get(api, LISTING)  # stored for anonymous readers
    for headers in ({"HTTP_AUTHORIZATION": "Bearer whatever"}, {"HTTP_X_API_KEY": "k"},
                    {"HTTP_X_CART_TOKEN": "t"}):
        with cachalot_disabled(), CaptureQueriesContext(connection) as queries:
            response = api.get("/api/v1/products?ordering=name", **headers)
        assert response["X-Cache"] == "bypass" and len(queries) > 0
    # A logged-in staff member (session cookie) neither.
    assert staff_client.get(LISTING)["X-Cache"] == "bypass"
    # Nothing a bypassed request built was stored.
    assert get(api, "/api/v1/products?ordering=name")["X-Cache"] == "miss"


@override_settings(STOREFRONT_CACHE_TIMEOUT=0)
def test_the_cache_can_be_turned_off(api, shop):
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            response = get(api, LISTING)
        assert "X-Cache" not in response and len(queries) > 0


# --- Every kind of write shows at once ------------------------------------------------------


def test_a_price_change_through_the_catalog_service(api, shop):
    before = get(api, LISTING).json()
    assert item(before, "Blue Polo")["price_min"] == "25.00"
    get(api, "/api/v1/products/blue-polo")
    change_prices_by_percentage(product_ids=[shop["polo"].pk], percentage=Decimal("-10"))
    after = get(api, LISTING)
    assert after["X-Cache"] == "miss"
    polo = item(after.json(), "Blue Polo")
    assert polo["price_min"] == "22.50"
    assert [v["price"] for v in polo["variants"]] == ["22.50", "27.00"]
    detail = get(api, "/api/v1/products/blue-polo").json()
    assert [v["price"] for v in detail["variants"]] == ["22.50", "27.00"]


def test_a_price_change_through_the_admin(api, shop, staff_client):
    from django.contrib.admin import helpers

    get(api, LISTING)
    response = staff_client.post("/admin/catalog/product/", {
        "action": "change_prices", helpers.ACTION_CHECKBOX_NAME: [shop["lamp"].pk],
        "percentage": "50", "apply": "yes",
    })
    assert response.status_code == 302
    assert item(get(api, LISTING).json(), "Brass Lamp")["price_min"] == "60.00"


def test_a_variant_saved_in_the_admin_shell_way(api, shop):
    """One variant saved on its own (the admin's inline, the shell): signals, then the ORM."""
    get(api, "/api/v1/products/brass-lamp")
    variant = shop["lamp"].variants.get()
    variant.price, variant.compare_at_price = Decimal("35.00"), Decimal("40.00")
    variant.save()
    detail = get(api, "/api/v1/products/brass-lamp").json()
    assert detail["variants"][0]["discount_percentage"] == "12.50"
    assert detail["price_min"] == "35.00"


def test_unpublishing_a_product(api, shop):
    assert get(api, LISTING).json()["count"] == 2
    get(api, "/api/v1/products/brass-lamp")
    set_products_published(product_ids=[shop["lamp"].pk], published=False)
    body = get(api, LISTING).json()
    assert body["count"] == 1 and [i["name"] for i in body["items"]] == ["Blue Polo"]
    get(api, "/api/v1/products/brass-lamp", 404)


def test_a_category_deactivated_in_the_admin(api, shop, staff_client):
    from django.contrib.admin import helpers

    assert [n["path"] for n in get(api, "/api/v1/categories").json()] == ["clothing"]
    staff_client.post("/admin/catalog/category/", {
        "action": "deactivate_categories",
        helpers.ACTION_CHECKBOX_NAME: [Category.objects.get(slug="clothing").pk],
    })
    assert get(api, "/api/v1/categories").json() == []


def test_a_stock_change_through_adjust_stock(api, shop):
    sku = "BLUE-POLO-0"  # 5 units at a threshold of 5: low
    assert availability(get(api, LISTING).json(), sku) == "low"
    assert availability(get(api, "/api/v1/products/blue-polo").json(), sku) == "low"
    catalog_stamp = storefront_cache.current_stamp(stock=False)
    adjust_stock(variant_id=Variant.objects.get(sku=sku).pk, quantity_change=10)
    # Nothing the catalog stores changed (still in stock, same prices): only the stock stamp did.
    assert storefront_cache.current_stamp(stock=False) == catalog_stamp
    assert availability(get(api, LISTING).json(), sku) == "in_stock"
    assert availability(get(api, "/api/v1/products/blue-polo").json(), sku) == "in_stock"


def test_a_stock_change_through_bulk_set_stock_levels(api, shop):
    variant = Variant.objects.get(sku="BRASS-LAMP-0")
    warehouse = Warehouse.objects.get(is_default=True)
    assert availability(get(api, LISTING).json(), variant.sku) == "in_stock"
    bulk_set_stock_levels([StockLevel(variant.pk, warehouse.pk, 3)])
    assert availability(get(api, LISTING).json(), variant.sku) == "low"
    # A caller that refreshes the listing columns itself, later, changes the stamp all the same.
    bulk_set_stock_levels([StockLevel(variant.pk, warehouse.pk, 0)], refresh_listings=False)
    assert availability(get(api, "/api/v1/products/brass-lamp").json(), variant.sku) == "out"


def test_a_low_stock_threshold_edited_in_the_admin(api, shop, staff_client):
    stock = Stock.objects.get(variant__sku="BLUE-POLO-0")
    assert availability(get(api, LISTING).json(), "BLUE-POLO-0") == "low"
    response = staff_client.post(f"/admin/inventory/stock/{stock.pk}/change/",
                                 {"low_stock_threshold": "1"})
    assert response.status_code == 302, response.content
    assert availability(get(api, LISTING).json(), "BLUE-POLO-0") == "in_stock"


def test_an_import_shows_at_once(api, shop):
    assert get(api, LISTING).json()["count"] == 2
    csv = ("handle,name,brand,sku,price,stock:main\n"
           "brass-lamp,Brass Lamp,Acme,BRASS-LAMP-0,44.00,\n"
           "new-kettle,New Kettle,Acme,KETTLE-1,15.00,3\n")
    result = import_catalog(stream=io.BytesIO(csv.encode()), filename="c.csv",
                            file_format="native")
    assert result.errors == [] and result.written
    body = get(api, LISTING).json()
    assert body["count"] == 3
    assert item(body, "Brass Lamp")["price_min"] == "44.00"
    kettle = item(body, "New Kettle")
    assert kettle["in_stock"] is True and kettle["variants"][0]["availability"] == "low"


def test_a_review_changes_the_rating_shown(api, shop):
    get(api, "/api/v1/products/blue-polo")
    token = api.post("/api/v1/auth/register",
                     {"email": "r@example.com", "password": "correct-horse-battery-9"},
                     content_type="application/json").json()["access_token"]
    api.post("/api/v1/products/blue-polo/reviews", {"rating": 4},
             content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert get(api, "/api/v1/products/blue-polo").json()["rating_average"] == "4.00"


# --- The stamps -------------------------------------------------------------------------------


def test_bulk_inserts_by_copy_tell_the_query_cache(shop):
    """COPY (PostgreSQL) goes around cachalot's cursor hooks: insert_rows invalidates itself."""
    from cachalot.api import get_last_invalidation

    before = get_last_invalidation(ProductImage)
    stamp = storefront_cache.current_stamp()
    insert_rows(ProductImage, [{"product_id": shop["lamp"].pk,
                                "source_url": "https://img.example/lamp.jpg"}])
    assert get_last_invalidation(ProductImage) > before
    assert storefront_cache.current_stamp() != stamp


def test_the_stock_stamp_changes_after_the_commit_and_not_on_a_rollback(shop):
    variant_id = Variant.objects.get(sku="BRASS-LAMP-0").pk
    before = stock_stamp()
    with pytest.raises(RuntimeError), transaction.atomic():
        adjust_stock(variant_id=variant_id, quantity_change=1)
        raise RuntimeError("rolled back")
    assert stock_stamp() == before
    with transaction.atomic():
        adjust_stock(variant_id=variant_id, quantity_change=1)
        inside = stock_stamp()
        assert inside != before, "the writing transaction reads its own writes"
        # Everybody else still sees the committed stamp until the commit.
        from django.core.cache import cache

        assert cache.get("inventory:stock-stamp") in before
    after = stock_stamp()
    assert after not in {before, inside}


def test_a_mark_evicted_from_the_cache_never_brings_an_old_stamp_back(shop):
    from cachalot.settings import cachalot_settings
    from django.core.cache import cache

    first = storefront_cache.current_stamp()
    change_prices_by_percentage(product_ids=[shop["lamp"].pk], percentage=Decimal("10"))
    second = storefront_cache.current_stamp()
    # The newest mark goes (evicted, expired): the stamp moves on, it does not go back.
    cache.delete(cachalot_settings.CACHALOT_TABLE_KEYGEN("default", "catalog_variant"))
    third = storefront_cache.current_stamp()
    assert len({first, second, third}) == 3
    assert storefront_cache.current_stamp() == third, "and stays put until the next write"


def test_the_query_cache_is_back_on_after_a_miss_that_raised(api, shop):
    from cachalot.api import LOCAL_STORAGE

    def failing():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        storefront_cache._render_fresh(failing)
    assert getattr(LOCAL_STORAGE, "cachalot_enabled", True) is True


def test_pages_and_orderings_of_one_listing_share_its_count(api, shop):
    for i in range(5):
        make(f"Filler {i}", None, ["12.00"])
    get(api, "/api/v1/products?page_size=2")
    documents.rebuild_all()  # the products' answers kept, as after a first view of each
    for query in ("page_size=2&page=2", "page_size=2&page=3&ordering=name"):
        with CaptureQueriesContext(connection) as queries:
            body = get(api, f"/api/v1/products?{query}").json()
        assert body["count"] == 7 and len(body["items"]) == 2
        assert not any("COUNT(" in q["sql"] for q in queries), "the count came from the cache"
        assert len(queries) == 1, [q["sql"][:80] for q in queries]  # the page


@pytest.mark.django_db  # not transactional: one transaction for the whole test
def test_inside_a_transaction_the_writer_reads_its_own_stock_changes(api):
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    product = make("Solo", None, ["9.00"], stock=(5,))
    sku = product.variants.get().sku
    assert availability(get(api, "/api/v1/products/solo").json(), sku) == "low"
    adjust_stock(variant_id=product.variants.get().pk, quantity_change=10)
    assert availability(get(api, "/api/v1/products/solo").json(), sku) == "in_stock"
    stock_changed()  # as often as anyone likes
    assert availability(get(api, "/api/v1/products/solo").json(), sku) == "in_stock"


def test_the_answers_file_cache_checks_its_size_now_and_then(tmp_path, monkeypatch):
    from backoffice import cache as file_cache

    store = file_cache.FileBasedCache(str(tmp_path), {"OPTIONS": {"MAX_ENTRIES": 10}})
    listings = []
    real = store._list_cache_files
    monkeypatch.setattr(store, "_list_cache_files", lambda: listings.append(1) or real())
    for i in range(40):
        store.set(f"k{i}", i)
    assert len(listings) == 1, "one look at the directory, not one per write"
    monkeypatch.setattr(file_cache.time, "monotonic",
                        lambda: store._last_cull + file_cache.CULL_INTERVAL)
    store.set("one-more", 1)
    assert len(listings) == 2 and len(real()) < 41, "and it culls when it looks"
