"""The catalog for ERPs: read-back with a keyset cursor, prices by SKU, archiving, categories."""

import json
from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled

from backoffice.catalog.models import Category, Product, Variant
from backoffice.integrations.models import IntegrationWrite, Scope
from backoffice.integrations.services import create_api_key
from backoffice.inventory.models import Warehouse

pytestmark = pytest.mark.django_db
API = "/api/v1/integrations"


@pytest.fixture
def key():
    assert Warehouse.objects.filter(code="main", is_default=True).exists()  # a migration's
    return create_api_key(name="ERP", scopes=[Scope.CATALOG_WRITE])[1]


def call(client, key, method, path, body=None, **params):
    data = json.dumps(body) if body is not None else None
    if method == "get":
        return client.get(f"{API}{path}", params, HTTP_X_API_KEY=key)
    return client.generic(method.upper(), f"{API}{path}", data or "",
                          content_type="application/json", HTTP_X_API_KEY=key)


def product(handle, *, price="10.00", published=True, category="Clothing > Shirts", **extra):
    return {"handle": handle, "name": handle.title(), "published": published,
            "category": category, **extra,
            "variants": [{"sku": f"{handle.upper()}-1", "price": price, "stock": {"main": 3}}]}


def upsert(client, key, *products):
    response = call(client, key, "post", "/products", {"products": list(products)})
    assert response.status_code == 200, response.json()
    return response


def assert_error(response, status, code):
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"detail", "code", "errors"}
    assert body["code"] == code
    return body


def sync(client, key, limit, *, since=None, between_pages=None):
    """Follow next_cursor to the end; returns the handles in the order read, and the as_of of
    the first page. ``between_pages(n)`` runs after page n."""
    handles, cursor, as_of, n = [], None, None, 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {}),
                  **({"updated_since": since} if since else {})}
        body = call(client, key, "get", "/products", **params).json()
        as_of = as_of or body["as_of"]
        handles += [item["handle"] for item in body["items"]]
        cursor, n = body["next_cursor"], n + 1
        if cursor is None:
            return handles, as_of
        if between_pages:
            between_pages(n)


def test_a_sync_sees_every_product_once_while_the_catalog_changes(client, key):
    upsert(client, key, *(product(f"p{i:02}", published=i % 4 != 0) for i in range(12)))

    def change(n):
        if n == 1:  # p00 was on page 1 (read), p11 not yet: both change now
            assert call(client, key, "put", "/prices", {"prices": [
                {"sku": "P00-1", "price": "11.00"}, {"sku": "P11-1", "price": "12.00"}]},
            ).json()["changed"] == 2
            upsert(client, key, product("p12"))  # a new product during the sync

    handles, as_of = sync(client, key, 5, between_pages=change)
    everyone = {f"p{i:02}" for i in range(13)}
    assert set(handles) == everyone, "drafts and new products included, none lost"
    once = [h for h in handles if h != "p00"]
    assert len(once) == len(set(once)), "no product repeated, except one changed after it was read"
    assert handles.count("p00") == 2, "changed after it was read: it comes again"
    # The next sync from the first page's as_of: only what changed since.
    later, _ = sync(client, key, 5, since=as_of)
    assert set(later) == {"p00", "p11", "p12"}


def test_a_product_reads_back_as_written_with_money_as_strings(client, key):
    upsert(client, key, product(
        "linen", price="1499.50", category="Clothing > Shirts", extra_categories=["Sale"],
        tags=["linen"], attributes={"material": "linen"}, brand="Savanna", seo_title="Linen",
        images=[{"url": "https://cdn.example.com/l.jpg", "alt": "Front"}],
    ) | {"variants": [{"sku": "LIN-M", "name": "M", "options": {"Size": "M"}, "price": "1499.50",
                       "compare_at_price": "1799.00", "cost_price": "800.00", "barcode": "123",
                       "weight_grams": 300, "stock": {"main": 7}}]})
    body = call(client, key, "get", "/products/linen").json()
    assert body["category"] == "Clothing > Shirts"
    assert body["extra_categories"] == ["Sale"]
    assert body["images"] == [{"url": "https://cdn.example.com/l.jpg", "alt": "Front"}]
    assert (body["brand"], body["tags"], body["attributes"], body["published"]) == (
        "Savanna", ["linen"], {"material": "linen"}, True)
    [variant] = body["variants"]
    assert variant == {
        "sku": "LIN-M", "name": "M", "options": {"Size": "M"}, "price": "1499.50",
        "compare_at_price": "1799.00", "cost_price": "800.00", "barcode": "123",
        "weight_grams": 300, "active": True, "track_inventory": True, "allow_backorder": False,
        "stock": {"main": 7},
    }
    listed = call(client, key, "get", "/products").json()["items"]
    assert listed == [body]
    assert_error(call(client, key, "get", "/products/nope"), 404, "not_found")
    assert_error(call(client, key, "get", "/products", cursor="bm9wZQ"), 422, "invalid_cursor")


def test_a_page_costs_the_same_queries_whatever_its_size(client, key, django_assert_num_queries):
    upsert(client, key, *(product(f"q{i:02}", extra_categories=["Sale", "New > Now"],
                                  images=[{"url": f"https://cdn.example.com/{i}.jpg"}])
                          for i in range(25)))
    call(client, key, "get", "/products", limit=1)  # the key's "last used" is written once
    counts = []
    for limit in (2, 25):
        with cachalot_disabled(), django_assert_num_queries(8) as captured:
            # key, page keys, products + category, variants, stock, images, extra categories,
            # category names
            body = call(client, key, "get", "/products", limit=limit).json()
        assert len(body["items"]) == limit
        counts.append(len(captured))
    assert counts[0] == counts[1]


def test_variant_changes_move_the_product_and_stock_does_not(client, key):
    upsert(client, key, product("tee"), product("cap"))
    since = call(client, key, "get", "/products").json()["as_of"]
    assert sync(client, key, 10, since=since)[0] == []
    # Only a variant's price, through the product upsert: the product row is not written.
    upsert(client, key, product("tee", price="12.00"))
    assert sync(client, key, 10, since=since)[0] == ["tee"]
    _, stock_key = create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    assert client.put(f"{API}/stock", {"levels": [{"sku": "CAP-1", "quantity": 40}]},
                      content_type="application/json", HTTP_X_API_KEY=stock_key
                      ).json()["changed"] == 1
    assert sync(client, key, 10, since=since)[0] == ["tee"], "stock levels are not a change"


def test_prices_are_all_or_nothing_and_idempotent(client, key):
    upsert(client, key, product("tee", price="10.00"), product("cap", price="5.00"))
    cap = Product.objects.get(slug="cap")
    refused = call(client, key, "put", "/prices", {"prices": [
        {"sku": "TEE-1", "price": "20.00"},
        {"sku": "NOPE", "price": "1.00"},
        {"sku": "CAP-1", "price": "9.00", "compare_at_price": "8.00"},
        {"sku": "ALSO-NOPE", "price": "1.00"},
        {"sku": "TEE-1", "price": "21.00"},
    ]})
    errors = assert_error(refused, 422, "validation_error")["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [
        ("prices.1.sku", "unknown_sku"), ("prices.2.compare_at_price", "below_price"),
        ("prices.3.sku", "unknown_sku"), ("prices.4.sku", "duplicate_sku")]
    assert "NOPE" in errors[0]["message"] and "ALSO-NOPE" in errors[2]["message"]
    assert Variant.objects.get(sku="TEE-1").price == Decimal("10.00"), "nothing changed"
    floats = call(client, key, "put", "/prices", {"prices": [{"sku": "TEE-1", "price": 20.5}]})
    assert_error(floats, 422, "validation_error")
    assert_error(call(client, key, "put", "/prices", {"prices": [
        {"sku": "TEE-1", "price": "20.005"}]}), 422, "validation_error")

    body = {"prices": [{"sku": "TEE-1", "price": "20.00"},
                       {"sku": "CAP-1", "price": "4.00", "compare_at_price": "5.00"}],
            "reference": "list-7"}
    assert call(client, key, "put", "/prices", body).json() == {"received": 2, "changed": 2}
    assert call(client, key, "put", "/prices", body).json() == {"received": 2, "changed": 0}
    cap.refresh_from_db()
    assert (cap.price_min, cap.price_max) == (Decimal("4.00"), Decimal("4.00")), "listing"
    read = call(client, key, "get", "/products/cap").json()["variants"][0]
    assert (read["price"], read["compare_at_price"]) == ("4.00", "5.00")
    # Left out, the compare-at price is kept; null clears it; one kept below a new price refuses.
    kept = call(client, key, "put", "/prices", {"prices": [{"sku": "CAP-1", "price": "6.00"}]})
    assert assert_error(kept, 422, "validation_error")["errors"][0]["field"] == (
        "prices.0.compare_at_price")
    cleared = {"prices": [{"sku": "CAP-1", "price": "6.00", "compare_at_price": None}]}
    assert call(client, key, "put", "/prices", cleared).json()["changed"] == 1
    assert Variant.objects.get(sku="CAP-1").compare_at_price is None
    assert list(IntegrationWrite.objects.filter(endpoint="prices").values_list(
        "reference", "summary")) == [
        ("api", {"prices": {"received": 1, "changed": 1}}),
        ("list-7", {"prices": {"received": 2, "changed": 2}})]


def test_archive_and_unarchive_are_idempotent(client, key):
    upsert(client, key, product("tee"))
    first = call(client, key, "post", "/products/tee/archive").json()
    assert first == {"handle": "tee", "published": False, "changed": True}
    assert call(client, key, "post", "/products/tee/archive").json()["changed"] is False
    assert Product.objects.get(slug="tee").is_active is False
    assert call(client, key, "get", "/products/tee").json()["published"] is False
    assert call(client, key, "post", "/products/tee/unarchive").json() == {
        "handle": "tee", "published": True, "changed": True}
    assert [w.endpoint for w in IntegrationWrite.objects.order_by("id")][1:] == [
        "products/archive", "products/unarchive"]
    assert_error(call(client, key, "post", "/products/nope/archive"), 404, "not_found")


def test_categories_are_made_renamed_and_moved_by_path_idempotently(client, key):
    made = call(client, key, "post", "/categories", {"path": "Clothing > Men > Shirts"})
    assert made.status_code == 201
    assert made.json()["created"] == 3
    again = call(client, key, "post", "/categories", {"path": "clothing > men > shirts"})
    assert (again.status_code, again.json()["created"]) == (200, 0)
    assert again.json()["category"]["path"] == "Clothing > Men > Shirts"

    rename = {"path": "Clothing > Men > Shirts", "name": "Tops"}
    assert call(client, key, "patch", "/categories", rename).json()["changed"] == ["name"]
    assert call(client, key, "patch", "/categories", rename).json()["changed"] == []
    move = {"path": "Clothing > Men > Tops", "parent": "Clothing", "position": 2}
    moved = call(client, key, "patch", "/categories", move).json()
    assert moved["changed"] == ["parent", "position"]
    assert (moved["category"]["path"], moved["category"]["slug_path"]) == (
        "Clothing > Tops", "clothing/shirts")
    assert call(client, key, "patch", "/categories", move).json()["changed"] == []
    listed = call(client, key, "get", "/categories").json()
    assert [(c["path"], c["parent"]) for c in listed["items"]] == [
        ("Clothing", None), ("Clothing > Men", "Clothing"), ("Clothing > Tops", "Clothing")]
    # The product upsert finds the same node by its path of names.
    upsert(client, key, product("tee", category="Clothing > Tops"))
    assert Category.objects.count() == 3
    assert call(client, key, "get", "/products/tee").json()["category"] == "Clothing > Tops"

    assert_error(call(client, key, "patch", "/categories",
                      {"path": "Clothing", "parent": "Clothing > Men"}), 409, "conflict")
    assert_error(call(client, key, "patch", "/categories",
                      {"path": "Clothing > Men", "parent": "Nowhere"}), 422, "unknown_category")
    assert_error(call(client, key, "patch", "/categories", {"path": "No > Such", "active": False}),
                 404, "not_found")
    assert_error(call(client, key, "post", "/categories", {"path": "A >  > B"}), 422,
                 "invalid_path")
    assert_error(call(client, key, "patch", "/categories",
                      {"path": "Clothing > Men", "name": "Tops"}), 409, "conflict")


def test_every_route_needs_a_catalog_key(client, key):
    _, stock_only = create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    routes = [("get", "/products", None), ("get", "/products/tee", None),
              ("post", "/products/tee/archive", None), ("post", "/products/tee/unarchive", None),
              ("put", "/prices", {"prices": [{"sku": "X", "price": "1.00"}]}),
              ("get", "/categories", None), ("post", "/categories", {"path": "A"}),
              ("patch", "/categories", {"path": "A", "name": "B"})]
    for method, path, body in routes:
        assert_error(call(client, "", method, path, body), 401, "not_authenticated")
        assert_error(call(client, "bo_wrong_key", method, path, body), 401, "not_authenticated")
        assert_error(call(client, stock_only, method, path, body), 403, "insufficient_scope")
