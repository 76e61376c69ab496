"""The cart: guests by token, customers by login, merged at log-in; never more than available."""

from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled

from backoffice.catalog.models import Product, Variant
from backoffice.checkout.models import Cart, CartStatus
from backoffice.inventory.models import Stock, Warehouse
from backoffice.inventory.services import adjust_stock

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def tee():
    product = Product.objects.create(name="Tee", slug="tee")
    small = Variant.objects.create(product=product, sku="TEE-S", name="S", price="800.00")
    medium = Variant.objects.create(product=product, sku="TEE-M", name="M", price="850.00")
    adjust_stock(variant_id=small.pk, quantity_change=5)
    second = Warehouse.objects.create(code="mombasa", name="Mombasa")
    adjust_stock(variant_id=small.pk, quantity_change=2, warehouse_id=second.pk)
    adjust_stock(variant_id=medium.pk, quantity_change=1)
    return small, medium


def guest(client):
    response = client.post("/api/v1/cart")
    assert response.status_code == 201
    return {"HTTP_X_CART_TOKEN": response.json()["token"]}


def add(client, headers, sku, quantity):
    return client.post("/api/v1/cart/lines", {"sku": sku, "quantity": quantity},
                       content_type="application/json", **headers)


def customer(client, email="amina@example.com", **extra):
    tokens = client.post("/api/v1/auth/register", {"email": email, "password": PASSWORD},
                         content_type="application/json", **extra).json()
    return {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}


def test_a_guest_cart_adds_up_lines_and_totals(client, tee):
    headers = guest(client)
    add(client, headers, "TEE-S", 2)
    add(client, headers, "TEE-S", 1)
    body = add(client, headers, "TEE-M", 1).json()
    assert [(line["sku"], line["quantity"], line["line_total"]) for line in body["lines"]] == [
        ("TEE-S", 3, "2400.00"), ("TEE-M", 1, "850.00"),
    ]
    assert (body["subtotal"], body["item_count"]) == ("3250.00", 4)
    assert body["lines"][0]["available"] == 7, "every warehouse counts"


def test_more_than_available_is_refused_with_the_available_quantity(client, tee):
    headers = guest(client)
    add(client, headers, "TEE-S", 6)
    response = add(client, headers, "TEE-S", 2)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "insufficient_stock"
    assert "Only 7" in body["detail"]
    assert body["errors"] == [{"field": "quantity", "code": "insufficient_stock",
                               "message": body["detail"], "sku": "TEE-S", "available": 7}]
    assert client.get("/api/v1/cart", **headers).json()["lines"][0]["quantity"] == 6


def test_clearing_the_cart_empties_it(client, tee):
    headers = guest(client)
    add(client, headers, "TEE-S", 2)
    add(client, headers, "TEE-M", 1)
    cleared = client.delete("/api/v1/cart", **headers)
    assert cleared.status_code == 200 and cleared.json()["lines"] == []
    body = client.get("/api/v1/cart", **headers).json()
    assert body["lines"] == [] and body["item_count"] == 0


def test_allocated_stock_is_not_available(client, tee):
    Stock.objects.filter(variant=tee[1]).update(quantity_allocated=1)
    response = add(client, guest(client), "TEE-M", 1)
    assert response.status_code == 409
    assert "Only 0" in response.json()["detail"]


def test_a_line_keeps_its_price_and_shows_the_change(client, tee):
    headers = guest(client)
    add(client, headers, "TEE-S", 2)
    Variant.objects.filter(sku="TEE-S").update(price=Decimal("900.00"))
    body = client.get("/api/v1/cart", **headers).json()
    line = body["lines"][0]
    assert (line["unit_price"], line["current_price"], line["price_changed"]) == (
        "800.00", "900.00", True)
    assert body["subtotal"] == "1600.00" and body["has_price_changes"] is True
    accepted = client.post("/api/v1/cart/prices/accept", **headers).json()
    assert accepted["subtotal"] == "1800.00" and accepted["has_price_changes"] is False


def test_quantities_change_and_zero_removes(client, tee):
    headers = guest(client)
    line_id = add(client, headers, "TEE-S", 1).json()["lines"][0]["id"]
    url = f"/api/v1/cart/lines/{line_id}"
    changed = client.patch(url, {"quantity": 4}, content_type="application/json", **headers)
    assert changed.json()["lines"][0]["quantity"] == 4
    too_many = client.patch(url, {"quantity": 8}, content_type="application/json", **headers)
    assert too_many.status_code == 409
    emptied = client.patch(url, {"quantity": 0}, content_type="application/json", **headers)
    assert emptied.json()["lines"] == []


def test_unpublished_or_unknown_products_cannot_be_added(client, tee):
    headers = guest(client)
    Product.objects.update(is_active=False)
    assert add(client, headers, "TEE-S", 1).json()["code"] == "not_for_sale"
    assert add(client, headers, "NOPE", 1).status_code == 400


def test_another_carts_line_is_not_found(client, tee):
    mine, theirs = guest(client), guest(client)
    line_id = add(client, mine, "TEE-S", 1).json()["lines"][0]["id"]
    url = f"/api/v1/cart/lines/{line_id}"
    assert client.delete(url, **theirs).status_code == 404
    assert client.patch(url, {"quantity": 2}, content_type="application/json",
                        **theirs).status_code == 404
    assert client.get("/api/v1/cart", **mine).json()["item_count"] == 1


@pytest.mark.parametrize("token", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_an_unknown_cart_token_is_refused(client, token):
    response = client.get("/api/v1/cart", HTTP_X_CART_TOKEN=token)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_a_bad_bearer_token_is_refused_not_treated_as_a_guest(client, tee):
    response = client.get("/api/v1/cart", HTTP_AUTHORIZATION="Bearer expired")
    assert response.status_code == 401


def test_a_customer_has_one_cart_across_requests(client, tee):
    headers = customer(client)
    add(client, headers, "TEE-S", 2)
    assert client.get("/api/v1/cart", **headers).json()["item_count"] == 2
    assert Cart.objects.filter(status=CartStatus.ACTIVE).count() == 1


def test_logging_in_merges_the_guest_cart(client, tee):
    customer_headers = customer(client)
    add(client, customer_headers, "TEE-S", 5)
    cart_headers = guest(client)
    add(client, cart_headers, "TEE-S", 4)
    add(client, cart_headers, "TEE-M", 1)
    tokens = client.post("/api/v1/auth/login", {"email": "amina@example.com",
                                                 "password": PASSWORD},
                         content_type="application/json", **cart_headers).json()
    merged = client.get("/api/v1/cart",
                        HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}").json()
    lines = {line["sku"]: line["quantity"] for line in merged["lines"]}
    assert lines == {"TEE-S": 7, "TEE-M": 1}, "summed, capped at the 7 available"
    assert client.get("/api/v1/cart", **cart_headers).status_code == 401, "the guest cart closed"


def test_registering_keeps_the_guest_cart(client, tee):
    cart_headers = guest(client)
    add(client, cart_headers, "TEE-M", 1)
    headers = customer(client, email="new@example.com", **cart_headers)
    assert client.get("/api/v1/cart", **headers).json()["item_count"] == 1


def test_reading_a_cart_takes_a_fixed_number_of_queries(
    client, tee, django_assert_max_num_queries
):
    headers = guest(client)
    add(client, headers, "TEE-S", 1)
    add(client, headers, "TEE-M", 1)
    with cachalot_disabled(), django_assert_max_num_queries(3):
        client.get("/api/v1/cart", **headers)
