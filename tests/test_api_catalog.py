"""Catalog browsing: listing columns kept true, filters, orderings, pages and query budgets."""

from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled
from django.db.models import F

from backoffice.catalog.models import Category, Product, ProductImage, Variant
from backoffice.catalog.services import change_prices_by_percentage, refresh_listings
from backoffice.inventory.models import Stock
from backoffice.inventory.services import adjust_stock

pytestmark = pytest.mark.django_db


def make(name, category, prices, stock=(5,), brand="Acme", **fields):
    product = Product.objects.create(name=name, slug=name.lower().replace(" ", "-"),
                                     category=category, brand=brand, **fields)
    for position, price in enumerate(prices):
        variant = Variant.objects.create(
            product=product, sku=f"{product.slug}-{position}".upper(), price=price,
            name=f"v{position}", option_values={"Size": ["S", "M", "L"][position % 3]},
            position=position,
        )
        quantity = stock[position] if position < len(stock) else 0
        if quantity:
            adjust_stock(variant_id=variant.pk, quantity_change=quantity)
    product.refresh_from_db()
    return product


@pytest.fixture
def shop():
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    men = Category.objects.create(name="Men", slug="men", parent=clothing)
    shirts = Category.objects.create(name="Shirts", slug="shirts", parent=men)
    home = Category.objects.create(name="Home", slug="home")
    return {
        "polo": make("Blue Polo", shirts, ["25.00", "30.00"], brand="Kitenge Co",
                     attributes={"material": "cotton"}),
        "jacket": make("Rain Jacket", men, ["90.00"], stock=(0,), is_featured=True),
        "lamp": make("Brass Lamp", home, ["40.00"]),
        "draft": make("Hidden Draft", home, ["10.00"], is_active=False),
    }


def listing(client, query=""):
    response = client.get(f"/api/v1/products?{query}")
    assert response.status_code == 200, response.content
    return response.json()


def names(page):
    return [item["name"] for item in page["items"]]


# --- Listing columns ---------------------------------------------------------------------------


def test_listing_columns_follow_variants_stock_and_price_changes(shop):
    polo = shop["polo"]
    assert (polo.price_min, polo.price_max, polo.is_in_stock) == (
        Decimal("25.00"), Decimal("30.00"), True)
    assert shop["jacket"].is_in_stock is False

    Variant.objects.filter(product=polo, price="25.00").first().delete()  # one at a time: signal
    polo.refresh_from_db()
    assert polo.price_min == Decimal("30.00")

    change_prices_by_percentage(product_ids=[polo.pk], percentage=Decimal("-10"))
    polo.refresh_from_db()
    assert polo.price_min == Decimal("27.00")

    jacket_variant = shop["jacket"].variants.get()
    adjust_stock(variant_id=jacket_variant.pk, quantity_change=2)
    shop["jacket"].refresh_from_db()
    assert shop["jacket"].is_in_stock is True
    Stock.objects.filter(variant=jacket_variant).update(quantity_allocated=2)
    refresh_listings([shop["jacket"].pk])
    shop["jacket"].refresh_from_db()
    assert shop["jacket"].is_in_stock is False, "allocated units are not in stock"


def test_allocations_refresh_the_listing_only_when_a_row_crosses_zero(
    shop, django_assert_num_queries
):
    """The stock services rewrite a product's listing columns only when a row's available
    quantity crosses zero; elsewhere the column cannot change, and is not even read."""
    from backoffice.inventory.services import allocate, release

    lamp = shop["lamp"]
    variant = lamp.variants.get()
    Stock.objects.filter(variant=variant).update(low_stock_threshold=0)  # no low-stock alert
    with cachalot_disabled(), django_assert_num_queries(3):  # lock, update, ledger
        first = allocate({variant.pk: 1})  # 4 of 5 left
    lamp.refresh_from_db()
    assert lamp.is_in_stock is True
    last = allocate({variant.pk: 4})
    lamp.refresh_from_db()
    assert lamp.is_in_stock is False, "the last unit is promised"
    release(last)
    lamp.refresh_from_db()
    assert lamp.is_in_stock is True, "back on the shelf"
    release(first)
    lamp.refresh_from_db()
    assert lamp.is_in_stock is True


def test_a_nightly_refresh_repairs_columns_written_around_the_services(shop):
    Product.objects.filter(pk=shop["lamp"].pk).update(price_min=None, is_in_stock=False)
    assert refresh_listings() == 1, "only the broken row is rewritten"
    assert refresh_listings() == 0
    shop["lamp"].refresh_from_db()
    assert (shop["lamp"].price_min, shop["lamp"].is_in_stock) == (Decimal("40.00"), True)


def test_reviews_keep_the_products_rating_columns(client, shop):
    token = client.post("/api/v1/auth/register",
                        {"email": "r@example.com", "password": "correct-horse-battery-9"},
                        content_type="application/json").json()["access_token"]
    client.post("/api/v1/products/blue-polo/reviews", {"rating": 4},
                content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    shop["polo"].refresh_from_db()
    assert (shop["polo"].rating_average, shop["polo"].rating_count) == (Decimal("4.00"), 1)


# --- Categories --------------------------------------------------------------------------------


def test_the_whole_tree_in_one_query(client, shop, django_assert_num_queries):
    with cachalot_disabled(), django_assert_num_queries(1):
        tree = client.get("/api/v1/categories").json()
    assert [node["path"] for node in tree] == ["clothing", "home"]
    assert tree[0]["children"][0]["children"][0]["path"] == "clothing/men/shirts"


def test_a_category_with_breadcrumbs_children_and_average_price(client, shop):
    body = client.get("/api/v1/categories/clothing/men").json()
    assert [c["path"] for c in body["breadcrumbs"]] == ["clothing", "clothing/men"]
    assert [c["slug"] for c in body["children"]] == ["shirts"]
    assert body["average_price"] == "57.50"  # (25.00 + 90.00) / 2
    assert client.get("/api/v1/categories/nowhere").status_code == 404


# --- Listings ----------------------------------------------------------------------------------


def test_only_published_products_are_listed_newest_first(client, shop):
    page = listing(client)
    assert names(page) == ["Brass Lamp", "Rain Jacket", "Blue Polo"]
    assert page["count"] == 3


def test_a_category_includes_its_descendants(client, shop):
    assert set(names(listing(client, "category=clothing"))) == {"Blue Polo", "Rain Jacket"}
    assert names(listing(client, "category=clothing/men/shirts")) == ["Blue Polo"]
    unknown = client.get("/api/v1/products?category=nowhere")
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["field"] == "category"


@pytest.mark.parametrize(("query", "expected"), [
    ("brand=Kitenge+Co", {"Blue Polo"}),
    ("brand=Kitenge+Co&brand=Acme", {"Blue Polo", "Rain Jacket", "Brass Lamp"}),
    ("min_price=30&max_price=90", {"Rain Jacket", "Brass Lamp"}),
    ("in_stock=true", {"Blue Polo", "Brass Lamp"}),
    ("in_stock=false", {"Rain Jacket"}),
    ("featured=true", {"Rain Jacket"}),
    ("option=Size:M", {"Blue Polo"}),
    ("attribute=material:cotton", {"Blue Polo"}),
    ("q=lamp", {"Brass Lamp"}),
    ("q=BLUE-POLO-1", {"Blue Polo"}),
])
def test_filters(client, shop, query, expected):
    assert set(names(listing(client, query))) == expected


@pytest.mark.parametrize("query", [
    "option=Size__regex:(", "option=Size__contains:S", "attribute=material__regex:(",
    "attribute=material__gt:a", "option=Size__isnull:true", "attribute=a.b[0]:x",
])
def test_option_and_attribute_names_are_keys_never_lookups(client, shop, query):
    response = client.get(f"/api/v1/products?{query}")
    assert response.status_code == 200, response.content[:500]
    assert response.json()["items"] == [], "an unknown key matches nothing"


def test_a_key_with_lookup_characters_matches_as_the_key_it_is(client, shop):
    Product.objects.filter(name="Blue Polo").update(
        attributes={"material": "cotton", "fit__cut": "slim"})
    refresh_listings()
    assert names(listing(client, "attribute=fit__cut:slim")) == ["Blue Polo"]
    assert names(listing(client, "attribute=fit__cut:wide")) == []


@pytest.mark.parametrize(("ordering", "expected"), [
    ("price", ["Blue Polo", "Brass Lamp", "Rain Jacket"]),
    ("-price", ["Rain Jacket", "Brass Lamp", "Blue Polo"]),
    ("name", ["Blue Polo", "Brass Lamp", "Rain Jacket"]),
])
def test_orderings(client, shop, ordering, expected):
    assert names(listing(client, f"ordering={ordering}")) == expected


def test_pages_are_stable_with_a_total(client, shop):
    for i in range(7):
        make(f"Same Price {i}", None, ["40.00"])
    seen = []
    for page in (1, 2, 3, 4):
        body = listing(client, f"ordering=price&page_size=3&page={page}")
        assert body["count"] == 10
        seen += names(body)
    assert len(seen) == 10 == len(set(seen)), "no product twice, none skipped"


def test_listing_items_carry_variants_prices_and_availability(client, shop):
    ProductImage.objects.create(product=shop["polo"], source_url="https://img.example/p.jpg",
                                alt_text="A blue polo")
    item = next(i for i in listing(client)["items"] if i["name"] == "Blue Polo")
    assert (item["price_min"], item["price_max"], item["in_stock"]) == ("25.00", "30.00", True)
    assert item["image"] == {"url": "https://img.example/p.jpg", "alt": "A blue polo"}
    assert [(v["sku"], v["availability"]) for v in item["variants"]] == [
        ("BLUE-POLO-0", "low"), ("BLUE-POLO-1", "out")]  # 5 units at a threshold of 5


@pytest.mark.parametrize("query", [
    "", "category=clothing&ordering=price", "page=2&page_size=2", "q=polo&in_stock=true",
    "option=Size:S&brand=Acme&ordering=-price", "ordering=rating&featured=false",
])
def test_a_page_is_three_queries_whatever_the_filters(client, shop, query,
                                                      django_assert_max_num_queries):
    """Three with the products' answers kept (a category's subtree or an exact-SKU lookup, the
    count, the page; four with both, or with PostgreSQL's estimate and an exact count after
    it); the first view after a change builds those of the page's products in eight more,
    whatever their number."""
    for i in range(30):
        make(f"Filler {i}", shop["polo"].category, ["12.00", "13.00", "14.00"])
    with cachalot_disabled(), django_assert_max_num_queries(4 + 8):
        first = client.get(f"/api/v1/products?{query}")
    assert first.status_code == 200
    with cachalot_disabled(), django_assert_max_num_queries(3):
        again = client.get(f"/api/v1/products?{query}&seen=1")  # not a response cache hit
    assert again.json() == first.json()


def test_a_category_and_a_search_are_four_queries(client, shop, django_assert_max_num_queries):
    client.get("/api/v1/products?category=clothing&q=polo")  # builds the answers
    with cachalot_disabled(), django_assert_max_num_queries(4):
        body = client.get("/api/v1/products?category=clothing&q=polo&seen=1").json()
    assert [item["name"] for item in body["items"]] == ["Blue Polo"]


@pytest.mark.parametrize("query", ["page=0", "page_size=101", "ordering=cheapest",
                                   "min_price=-1", "option=Size", "in_stock=maybe"])
def test_bad_listing_parameters_are_a_422(client, shop, query):
    response = client.get(f"/api/v1/products?{query}")
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# --- Detail ------------------------------------------------------------------------------------


def test_product_detail_in_one_query_once_kept(client, shop, django_assert_num_queries):
    ProductImage.objects.create(product=shop["polo"], source_url="https://img.example/1.jpg")
    ProductImage.objects.create(product=shop["polo"], source_url="https://img.example/2.jpg",
                                position=1)
    with cachalot_disabled(), django_assert_num_queries(1 + 8):  # building it
        first = client.get("/api/v1/products/blue-polo").json()
    with cachalot_disabled(), django_assert_num_queries(1):
        body = client.get("/api/v1/products/blue-polo?seen=1").json()
    assert body == first
    assert [c["path"] for c in body["breadcrumbs"]] == [
        "clothing", "clothing/men", "clothing/men/shirts"]
    assert [i["url"] for i in body["images"]] == ["https://img.example/1.jpg",
                                                  "https://img.example/2.jpg"]
    assert body["attributes"] == {"material": "cotton"}
    assert "quantity" not in str(body["variants"]), "no warehouse numbers"


def test_an_unpublished_product_is_not_found(client, shop):
    assert client.get("/api/v1/products/hidden-draft").status_code == 404


def test_stored_listing_columns_equal_the_live_definitions(shop):
    """refresh_listings is one aggregate UPDATE for speed; it must say what the selectors say."""
    from backoffice.catalog.selectors import with_price_range
    from backoffice.inventory.selectors import with_product_stock

    extra = make("Odd One", None, ["5.00", "7.00", "9.00"], stock=(0, 3, 0))
    Variant.objects.filter(product=extra, price="9.00").update(is_active=False)
    make("No Variants", None, [])
    Stock.objects.filter(variant__product=shop["lamp"]).update(quantity_allocated=5)
    Product.objects.update(price_min=None, price_max=None, is_in_stock=True)
    refresh_listings()
    live = with_product_stock(with_price_range(Product.objects.all()))
    for product in live:
        assert product.price_min == product.price_from, product.name
        assert product.price_max == product.price_to, product.name
        # In stock: some stock row of an active variant has more than is allocated.
        has_free_row = Stock.objects.filter(
            variant__product=product, variant__is_active=True,
            quantity__gt=F("quantity_allocated"),
        ).exists()
        assert product.is_in_stock is has_free_row, product.name


@pytest.mark.postgres
def test_the_search_expression_matches_its_gin_index(shop):
    from django.db import connection

    from backoffice.catalog.storefront import ProductFilters, filter_products

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    # Without the is_active condition (whose btree a tiny table prefers): only the GIN index can
    # serve the search, and only if the compiled expression is the indexed one.
    plan = filter_products(ProductFilters(search="blue polo"), Product.objects.all()).explain()
    assert "product_search_simple" in plan, plan


def test_one_word_searches_find_an_exact_sku_first(client, shop):
    assert names(listing(client, "q=blue-polo-1")) == ["Blue Polo"]  # any case
    assert names(listing(client, "q=polo")) == ["Blue Polo"]  # a word, not a SKU


def test_the_grouped_variant_stock_selector_says_what_the_subquery_one_says(shop):
    """Listings read availability through a grouped join (cheaper); it must agree with the
    selector the admin and the cart use, row for row."""
    from backoffice.inventory.models import Warehouse
    from backoffice.inventory.selectors import with_variant_stock, with_variant_stock_grouped

    second = Warehouse.objects.create(code="second", name="Second")
    odd = make("Odd Stock", None, ["5.00", "6.00", "7.00", "8.00"], stock=(3, 0, 20, 6))
    variants = list(odd.variants.order_by("pk"))
    adjust_stock(variant_id=variants[0].pk, quantity_change=4, warehouse_id=second.pk)
    Stock.objects.filter(variant=variants[2]).update(quantity_allocated=20)  # all allocated
    Stock.objects.filter(variant=variants[3]).update(low_stock_threshold=2)
    expected = {
        v.pk: (v.available_total, v.threshold_total, v.stock_status)
        for v in with_variant_stock(Variant.objects.all())
    }
    grouped = {
        v.pk: (v.available_total, v.threshold_total, v.stock_status)
        for v in with_variant_stock_grouped(Variant.objects.all())
    }
    assert grouped == expected
    assert {status for _, _, status in expected.values()} == {"in_stock", "low", "out"}


@pytest.mark.postgres
def test_a_large_listing_answers_the_planners_estimate_and_says_so(client, shop):
    """Above ``LISTING_EXACT_COUNT_UP_TO`` products (as the planner expects them) a listing's
    count is PostgreSQL's estimate, flagged; a search, a small listing and SQLite count."""
    from django.db import connection
    from django.test.utils import override_settings

    for n in range(40):
        make(f"Kikoi {n}", None, ["12.00"])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
    with override_settings(STOREFRONT_CACHE_TIMEOUT=0):  # no answer nor count kept
        exact = listing(client)
    assert (exact["count"], exact["count_exact"]) == (43, True)
    with override_settings(LISTING_EXACT_COUNT_UP_TO=10, STOREFRONT_CACHE_TIMEOUT=0):
        estimated = listing(client)
        assert estimated["count_exact"] is False
        assert 10 < estimated["count"] <= 60, "the planner's figure for 43 published products"
        assert len(estimated["items"]) == 24
        searched = listing(client, "q=kikoi")
        assert searched["count_exact"] is True and searched["count"] == 40


@pytest.mark.postgres
def test_a_large_listings_estimate_is_kept_until_a_product_or_category_is_written(client, shop):
    """A listing answering the planner's estimate keeps it (``ListingEstimate``): its next page
    is one query. Any statement writing products or categories (a save, a raw UPDATE: the
    trigger sees them all) makes it stale, and the next page asks the planner again. Filters
    of the customer's own values (a price here) keep nothing."""
    from cachalot.api import cachalot_disabled
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from backoffice.catalog import documents
    from backoffice.catalog.models import ListingEstimate

    for n in range(40):
        make(f"Kikoi {n}", None, ["12.00"])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
    documents.rebuild_all()  # every answer kept: the queries counted are the listing's

    def page(query=""):
        with CaptureQueriesContext(connection) as queries:
            body = listing(client, query)
        assert body["count_exact"] is False and 10 < body["count"] <= 60, body["count"]
        return body, [q["sql"] for q in queries.captured_queries]

    with override_settings(LISTING_EXACT_COUNT_UP_TO=10, STOREFRONT_CACHE_TIMEOUT=0), \
            cachalot_disabled():
        first, sql = page()
        assert any(s.startswith("EXPLAIN") for s in sql)
        kept = ListingEstimate.objects.get()
        assert (kept.key, kept.estimate) == ('["", null, null]', first["count"])
        again, sql = page("page=2")
        assert len(sql) == 1 and again["count"] == first["count"], sql
        assert len(again["items"]) == 19
        for write in (
            lambda: shop["polo"].save(),
            lambda: Category.objects.get(slug="home").save(),
            lambda: Product.objects.filter(slug="kikoi-1").update(name="Kikoi one"),
        ):
            write()
            _, sql = page()
            assert any(s.startswith("EXPLAIN") for s in sql), "stale after the write"
            _, sql = page()
            assert len(sql) == 1, sql
        _, sql = page("min_price=1")
        _, sql = page("min_price=1")
        assert any(s.startswith("EXPLAIN") for s in sql), sql
        assert ListingEstimate.objects.count() == 1


@pytest.mark.parametrize("ordering", ["newest", "name", "rating"])
def test_a_listing_walked_by_cursor_is_the_listing_walked_by_page(client, shop, ordering):
    """``next``/``after`` give the same products in the same order as page numbers, each once,
    ties on the sort key included; the last page has no ``next``."""
    for n in range(9):
        kanga = make(f"Kanga {n}", None, ["12.00"])
        # Equal names, ratings and (in threes) creation times: ties broken by id.
        Product.objects.filter(pk=kanga.pk).update(
            name=f"Kanga {n % 3}", rating_average="4.00" if n % 3 == 1 else "0.00",
            created_at=Product.objects.get(slug=f"kanga-{n - n % 3}").created_at)
    by_page, page = [], 1
    while True:
        body = listing(client, f"ordering={ordering}&page_size=4&page={page}")
        if not body["items"]:
            break
        by_page += [item["slug"] for item in body["items"]]
        page += 1
    by_cursor, query = [], f"ordering={ordering}&page_size=4"
    while True:
        body = listing(client, query)
        by_cursor += [item["slug"] for item in body["items"]]
        if body["next"] is None:
            break
        query = f"ordering={ordering}&page_size=4&after={body['next']}"
    assert by_cursor == by_page and len(by_page) == len(set(by_page)) == 12


@pytest.mark.postgres
@pytest.mark.parametrize("ordering", ["newest", "name", "rating"])
def test_deep_pages_by_number_from_kept_anchors_are_the_pages_by_offset(client, shop, ordering,
                                                                         monkeypatch):
    """A page asked by number past ``ANCHOR_EVERY`` products starts at the kept anchor before
    it (a cursor) and skips only the rest: the same products as ``OFFSET`` from the start, ties
    on the sort key included, and again after writes have moved products (anchors stale)."""
    from cachalot.api import cachalot_disabled
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from backoffice.catalog import storefront
    from backoffice.catalog.models import ListingAnchors

    monkeypatch.setattr(storefront, "ANCHOR_EVERY", 5)
    for n in range(9):
        kanga = make(f"Kanga {n}", None, ["12.00"])
        Product.objects.filter(pk=kanga.pk).update(
            name=f"Kanga {n % 3}", rating_average="4.00" if n % 3 == 1 else "0.00",
            created_at=Product.objects.get(slug=f"kanga-{n - n % 3}").created_at)

    def pages(size):
        found, page = [], 1
        while body := listing(client, f"ordering={ordering}&page_size={size}&page={page}"):
            if not body["items"]:
                return found
            found.append([item["slug"] for item in body["items"]])
            page += 1

    def by_offset(size):
        with monkeypatch.context() as patched:
            patched.setattr(storefront, "listing_key", lambda filters: None)
            return pages(size)

    with override_settings(STOREFRONT_CACHE_TIMEOUT=0), cachalot_disabled():  # no answer kept
        for write in (None, lambda: make("Aaa kikoi", None, ["1.00"]),
                      lambda: Product.objects.filter(slug="kanga-4").update(name="Zulu")):
            if write:
                write()
            for size in (4, 3):
                assert pages(size) == by_offset(size)
            with CaptureQueriesContext(connection) as queries:
                listing(client, f"ordering={ordering}&page_size=4&page=3")
            sql = [q["sql"] for q in queries.captured_queries]
            assert any("LIMIT 5 OFFSET 3" in q for q in sql), "from the 5th product's anchor"
    assert ListingAnchors.objects.filter(key__contains=ordering).count() == 1


@pytest.mark.postgres
def test_a_process_reads_the_anchors_again_only_after_a_write(client, shop, monkeypatch):
    """The anchors a process holds serve its deep pages without reading the kept ones (the
    page's own query tells whether a write came since); after a write they are read again."""
    from cachalot.api import cachalot_disabled
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from backoffice.catalog import storefront

    monkeypatch.setattr(storefront, "ANCHOR_EVERY", 5)
    for n in range(12):
        make(f"Kanga {n}", None, ["12.00"])

    def anchors_read(query):
        with CaptureQueriesContext(connection) as queries:
            body = listing(client, query)
        return body, any("catalog_listinganchors" in q["sql"] and "jsonb_array_elements" in q["sql"]
                         for q in queries.captured_queries)

    with override_settings(STOREFRONT_CACHE_TIMEOUT=0), cachalot_disabled():
        first, read = anchors_read("page_size=4&page=3")
        assert read
        again, read = anchors_read("page_size=4&page=3")
        assert not read and again["items"] == first["items"]
        assert anchors_read("page_size=4&page=4")[1] is False
        Product.objects.filter(slug="kanga-0").update(brand="Moved")
        after, read = anchors_read("page_size=4&page=3")
        assert read and after["items"] == first["items"]


@pytest.mark.postgres
def test_anchors_kept_with_another_step_are_not_read(client, shop, monkeypatch):
    """A release with another ``ANCHOR_EVERY`` finds the anchors the last one kept still fresh:
    read with the new step, the 2nd anchor of 5 would be taken for the 2nd of 3. They are kept
    under their step, so the new one keeps its own and its pages are the pages by ``OFFSET``."""
    from cachalot.api import cachalot_disabled
    from django.test.utils import override_settings

    from backoffice.catalog import storefront

    for n in range(14):
        make(f"Kanga {n}", None, ["12.00"])

    def page(number):
        return [item["slug"] for item in
                listing(client, f"ordering=name&page_size=2&page={number}")["items"]]

    expected = [p.slug for p in Product.objects.filter(is_active=True).order_by("name", "id")]
    with override_settings(STOREFRONT_CACHE_TIMEOUT=0), cachalot_disabled():
        for step in (5, 3):
            monkeypatch.setattr(storefront, "ANCHOR_EVERY", step)
            assert [page(n) for n in (4, 5, 6)] == [expected[6:8], expected[8:10],
                                                    expected[10:12]], step


@pytest.mark.postgres
def test_a_deep_page_whose_anchors_writes_keep_moving_is_read_by_offset(client, shop,
                                                                       monkeypatch):
    """Anchors made stale again by a write each time they are kept: after two tries the page
    is read by ``OFFSET``, right all the same."""
    from cachalot.api import cachalot_disabled
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from backoffice.catalog import storefront

    monkeypatch.setattr(storefront, "ANCHOR_EVERY", 5)
    for n in range(9):
        make(f"Kanga {n}", None, ["12.00"])
    keep = storefront._keep_anchors

    def keep_then_write(*args):
        keep(*args)
        Product.objects.filter(slug="kanga-0").update(brand="Moved")  # the sequence moves

    monkeypatch.setattr(storefront, "_keep_anchors", keep_then_write)
    with override_settings(STOREFRONT_CACHE_TIMEOUT=0), cachalot_disabled():
        with CaptureQueriesContext(connection) as queries:
            page = listing(client, "page_size=4&page=3")
        expected = [p.slug for p in Product.objects.filter(is_active=True)
                    .order_by("-created_at", "-id")[8:12]]
    assert [item["slug"] for item in page["items"]] == expected
    assert any("LIMIT 5 OFFSET 8" in q["sql"] for q in queries.captured_queries)


def test_a_bad_cursor_is_a_422_naming_it(client, shop):
    first = listing(client, "page_size=1")
    assert first["next"]
    for query in (f"after={first['next']}&ordering=name", "after=garbage",
                  f"after={first['next']}&page=2", f"after={first['next']}&ordering=price"):
        response = client.get(f"/api/v1/products?{query}")
        assert response.status_code == 422, query
        assert response.json()["errors"][0]["field"] == "after", query
    assert listing(client, "ordering=price&page_size=1")["next"] is None
