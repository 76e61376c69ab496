"""Integration API keys: shown once, stored hashed, scoped; writes attributed to the key."""

import re
from decimal import Decimal

import pytest

from backoffice.catalog.models import Product, Variant
from backoffice.integrations.models import ApiKey, Scope
from backoffice.integrations.services import create_api_key
from backoffice.inventory.models import Stock, StockMovement, Warehouse

pytestmark = pytest.mark.django_db


@pytest.fixture
def variants():
    product = Product.objects.create(name="Tee", slug="tee")
    return [Variant.objects.create(product=product, sku=sku, price="10.00")
            for sku in ("TEE-S", "TEE-M")]


def put_stock(client, key, levels, **extra):
    return client.put("/api/v1/integrations/stock", {"levels": levels, **extra},
                      content_type="application/json", HTTP_X_API_KEY=key)


def test_a_key_is_stored_hashed_and_shown_only_once(staff_client):
    response = staff_client.post("/admin/integrations/apikey/add/",
                                 {"name": "ERP", "scopes": ["stock:write"]}, follow=True)
    html = response.content.decode()
    raw = re.search(r"<code>(bo_[^<]+)</code>", html).group(1)
    key = ApiKey.objects.get()
    assert key.scopes == ["stock:write"]
    assert raw.split("_", 2)[2] not in key.key_hash
    page = staff_client.get(f"/admin/integrations/apikey/{key.pk}/change/").content.decode()
    assert raw not in page


def test_stock_levels_are_set_and_attributed_to_the_key(client, variants):
    key, raw = create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    second = Warehouse.objects.create(code="mombasa", name="Mombasa")
    response = put_stock(client, raw, [
        {"sku": "TEE-S", "quantity": 12},
        {"sku": "TEE-M", "warehouse": "mombasa", "quantity": 4},
    ], reference="count-2026-11")
    assert response.status_code == 200
    assert response.json() == {"received": 2, "changed": 2}
    assert Stock.objects.get(variant=variants[1], warehouse=second).quantity == 4
    movement = StockMovement.objects.get(stock__variant=variants[0])
    assert movement.actor_label == key.label
    assert movement.reference == "count-2026-11"
    assert movement.reason == "count"
    # The same levels again: nothing changes, nothing is written.
    again = put_stock(client, raw, [{"sku": "TEE-S", "quantity": 12}])
    assert again.json() == {"received": 1, "changed": 0}
    assert StockMovement.objects.count() == 2
    [write] = key.writes.all()
    assert (write.endpoint, write.reference, write.summary) == (
        "stock", "count-2026-11", {"stock levels": {"received": 2, "changed": 2}})


def test_an_unknown_sku_changes_nothing(client, variants):
    _, raw = create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    response = put_stock(client, raw, [{"sku": "TEE-S", "quantity": 5},
                                       {"sku": "NOPE", "quantity": 1},
                                       {"sku": "TEE-M", "warehouse": "nowhere", "quantity": 1}])
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["levels.1.sku", "levels.2.warehouse"]
    assert not Stock.objects.exists()


def test_a_level_below_allocated_stock_is_a_conflict(client, variants):
    _, raw = create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    put_stock(client, raw, [{"sku": "TEE-S", "quantity": 5}])
    Stock.objects.update(quantity_allocated=4)
    response = put_stock(client, raw, [{"sku": "TEE-S", "quantity": 3}])
    assert response.status_code == 409
    assert response.json()["code"] == "stock_conflict"
    assert Stock.objects.get().quantity == 5


def test_a_key_without_the_scope_is_forbidden(client, variants):
    _, raw = create_api_key(name="Reports", scopes=[Scope.ORDERS_READ])
    response = put_stock(client, raw, [{"sku": "TEE-S", "quantity": 5}])
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


@pytest.mark.parametrize("key", ["", "bo_deadbeef_wrong", "not-a-key"])
def test_a_missing_or_wrong_key_is_unauthenticated(client, variants, key):
    create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    assert put_stock(client, key, [{"sku": "TEE-S", "quantity": 5}]).status_code == 401


def test_a_revoked_key_stops_working(client, variants, staff_client):
    key, raw = create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    staff_client.post("/admin/integrations/apikey/",
                      {"action": "revoke", "_selected_action": [str(key.pk)]})
    assert put_stock(client, raw, [{"sku": "TEE-S", "quantity": 5}]).status_code == 401


def test_a_customer_token_is_not_an_integration_key(client, variants):
    tokens = client.post("/api/v1/auth/register",
                         {"email": "a@example.com", "password": "correct-horse-battery-9"},
                         content_type="application/json").json()
    response = client.put("/api/v1/integrations/stock", {"levels": [{"sku": "TEE-S",
                                                                      "quantity": 1}]},
                          content_type="application/json",
                          HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert response.status_code == 401


# --- Catalog writes -----------------------------------------------------------------------------

POLO = {
    "handle": "safari-polo", "name": "Safari Polo", "brand": "Kitenge Co",
    "category": "Clothing > Men > Shirts", "published": True,
    "images": [{"url": "https://img.example/polo.jpg", "alt": "A polo"}],
    "variants": [
        {"sku": "POLO-S", "options": {"Size": "S"}, "price": "1200.00", "stock": {"main": 4}},
        {"sku": "POLO-M", "options": {"Size": "M"}, "price": "1250.00",
         "compare_at_price": "1500.00", "stock": {"main": 0}},
    ],
}


def post_products(client, key, products, query=""):
    return client.post(f"/api/v1/integrations/products{query}", {"products": products},
                       content_type="application/json", HTTP_X_API_KEY=key)


@pytest.fixture
def catalog_key():
    return create_api_key(name="ERP", scopes=[Scope.CATALOG_WRITE])


def test_products_are_created_with_variants_images_categories_and_stock(client, catalog_key):
    key, raw = catalog_key
    response = post_products(client, raw, [POLO])
    assert response.status_code == 200, response.content
    assert response.json()["written"] is True
    product = Product.objects.get(slug="safari-polo")
    assert product.category.path == "clothing/men/shirts"
    assert (product.price_min, product.price_max, product.is_in_stock) == (
        Decimal("1200.00"), Decimal("1250.00"), True)
    assert list(product.images.values_list("source_url", flat=True)) == [
        "https://img.example/polo.jpg"]
    assert Variant.objects.get(sku="POLO-M").option_values == {"Size": "M"}
    movement = StockMovement.objects.get(stock__variant__sku="POLO-S")
    assert movement.actor_label == key.label


def test_every_catalog_write_is_recorded_under_its_key(client, catalog_key, staff_client):
    from backoffice.integrations.models import IntegrationWrite

    key, raw = catalog_key
    post_products(client, raw, [POLO], "?dry_run=true")
    assert not IntegrationWrite.objects.exists(), "a dry run writes nothing"
    post_products(client, raw, [POLO])
    write = IntegrationWrite.objects.get()
    assert (write.key, write.endpoint) == (key, "products")
    assert write.summary["products"] == {"created": 1}
    assert write.summary["variants"] == {"created": 2}
    page = staff_client.get("/admin/integrations/integrationwrite/")
    assert page.status_code == 200 and "products: 1 created" in page.content.decode()


def test_sending_the_same_products_again_changes_nothing(client, catalog_key):
    _, raw = catalog_key
    post_products(client, raw, [POLO])
    counts = post_products(client, raw, [POLO]).json()["counts"]
    assert counts["products"].get("created", 0) == 0
    assert counts["products"].get("updated", 0) == 0
    assert Product.objects.count() == 1 and Variant.objects.count() == 2


def test_an_update_changes_only_what_is_sent(client, catalog_key):
    _, raw = catalog_key
    post_products(client, raw, [{**POLO, "variants": [{**POLO["variants"][0],
                                                       "barcode": "6001234"}]}])
    post_products(client, raw, [{"handle": "safari-polo", "name": "Safari Polo",
                                 "variants": [{"sku": "POLO-S", "price": "1100.00"}]}])
    variant = Variant.objects.get(sku="POLO-S")
    assert (variant.price, variant.barcode) == (Decimal("1100.00"), "6001234")
    assert Product.objects.get().brand == "Kitenge Co"


@pytest.mark.parametrize(("change", "field"), [
    ({"price": "12.345"}, "products.0.variants.0.price"),
    ({"stock": {"nowhere": 3}}, "products.0.variants.0.stock.nowhere"),
])
def test_bad_values_name_their_field_and_write_nothing(client, catalog_key, change, field):
    _, raw = catalog_key
    bad = {**POLO, "variants": [{**POLO["variants"][0], **change}]}
    response = post_products(client, raw, [bad])
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert not Product.objects.exists()


def test_a_sku_twice_in_one_call_is_refused(client, catalog_key):
    _, raw = catalog_key
    twin = {**POLO, "handle": "other-polo", "name": "Other"}
    response = post_products(client, raw, [POLO, twin])
    assert response.status_code == 422
    assert any(e["field"].startswith("products.1.variants.0")
               for e in response.json()["errors"])
    assert not Product.objects.exists()


def test_a_dry_run_checks_without_writing(client, catalog_key):
    _, raw = catalog_key
    response = post_products(client, raw, [POLO], query="?dry_run=true")
    assert response.status_code == 200
    body = response.json()
    assert (body["dry_run"], body["written"]) == (True, False)
    assert body["counts"]["products"]["created"] == 1
    assert not Product.objects.exists()


def test_catalog_writes_need_their_scope(client):
    _, raw = create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    assert post_products(client, raw, [POLO]).status_code == 403


def test_null_leaves_a_field_as_it_is(client, catalog_key):
    _, raw = catalog_key
    post_products(client, raw, [{**POLO, "featured": True}])
    response = post_products(client, raw, [{**POLO, "featured": None, "published": None,
                                            "attributes": None, "tags": None}])
    assert response.status_code == 200, response.content
    assert Product.objects.get().is_featured is True
