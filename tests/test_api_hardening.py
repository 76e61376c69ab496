"""The API against what its schema fuzzing found: time offsets PostgreSQL cannot take, webhook
bodies over the upload limit, unknown paths posted to without a CSRF token, digits that are not
ASCII digits, and integers written ``3.0``. Each runs on the database ``DATABASE_URL`` names
(SQLite, or PostgreSQL, where the offsets were a 500)."""

import json
import logging
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import jsonschema_rs
import pytest
from django.test import Client
from pydantic import TypeAdapter, ValidationError

from backoffice.catalog.models import Product, Variant
from backoffice.integrations.services import create_api_key
from backoffice.inventory.models import Stock
from backoffice.inventory.services import adjust_stock
from backoffice.orders.models import Order
from backoffice.payments.models import PaymentEvent
from backoffice.plugin_host.services import activate_plugins, update_plugin_config
from shop_api.api import api
from shop_api.schemas import Money, PriceFilter

pytestmark = pytest.mark.django_db
ADDRESS = {"first_name": "Amina", "line1": "Moi Avenue 1", "city": "Nairobi", "country": "KE"}


@pytest.fixture
def mug():
    activate_plugins(["flat_rate_shipping", "manual_payment"])
    product = Product.objects.create(name="Mug", slug="mug")
    variant = Variant.objects.create(product=product, sku="MUG", name="", price="300.00")
    adjust_stock(variant_id=variant.pk, quantity_change=50)
    return variant


def _key(*scopes: str) -> dict:
    return {"HTTP_X_API_KEY": create_api_key(name="ERP", scopes=list(scopes))[1]}


def _cart(client) -> dict:
    return {"HTTP_X_CART_TOKEN": client.post("/api/v1/cart").json()["token"]}


def _order(client) -> Order:
    headers = _cart(client)
    client.post("/api/v1/cart/lines", {"sku": "MUG", "quantity": 1},
                content_type="application/json", **headers)
    placed = client.post("/api/v1/checkout", {
        "shipping_method": "flat_rate", "shipping_address": ADDRESS, "email": "g@example.com",
    }, content_type="application/json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()), **headers)
    assert placed.status_code == 201, placed.json()
    return Order.objects.get(number=placed.json()["number"])


def _is_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"detail", "code", "errors"} and body["code"] == code, body
    return body


# --- 1. updated_since with any RFC 3339 offset --------------------------------------------------


def test_updated_since_takes_offsets_postgresql_does_not_and_compares_them_in_utc(client, mug):
    order = _order(client)
    # 2020-02-23T13:03:51-17:07 is 2020-02-24T06:10:51 UTC.
    moment = datetime(2020, 2, 24, 6, 10, 51, tzinfo=UTC)
    Order.objects.filter(pk=order.pk).update(updated_at=moment)
    reader = _key("orders:read")

    def count(since: str) -> int:
        response = client.get("/api/v1/integrations/orders", {"updated_since": since}, **reader)
        assert response.status_code == 200, response.content
        return response.json()["count"]

    assert count("2020-02-23T13:03:51-17:07") == 1, "at the very second, in another offset"
    assert count("2020-02-23T13:03:52-17:07") == 0, "a second later"
    assert count("2020-02-25T06:09:51+23:59") == 1, "the same moment from the other side"
    assert count("2020-02-25T06:09:52+23:59") == 0
    assert count("2020-02-24T06:10:51Z") == 1
    assert count("2020-02-24T06:10:51") == 1, "no offset is UTC"


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59",
                                   "2020-02-30T00:00:00Z", "yesterday"])
def test_an_updated_since_with_no_time_in_utc_is_a_422_in_the_error_shape(client, since):
    response = client.get("/api/v1/integrations/orders", {"updated_since": since},
                          **_key("orders:read"))
    body = _is_error(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["updated_since"]


# --- 2. webhook bodies over the upload limit ----------------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/payments/webhooks/stripe/",
                                 f"/api/v1/payments/webhooks/mpesa/?token={'x' * 32}"])
def test_a_webhook_over_the_upload_limit_is_a_413_logged_as_a_warning_and_stores_nothing(
        client, settings, caplog, url):
    body = json.dumps({"id": "evt_big", "padding": "x" * (3 * 1024 * 1024)})
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    with caplog.at_level(logging.INFO):
        response = client.post(url, body, content_type="application/json",
                               HTTP_STRIPE_SIGNATURE="t=1,v1=00")
    answer = _is_error(response, 413, "payload_too_large")
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in answer["detail"]
    assert not PaymentEvent.objects.exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and r.name == "shop_api.errors"]
    assert len(warnings) == 1 and "over the limit" in warnings[0].getMessage()
    assert warnings[0].exc_info is None, "a client's mistake: no traceback"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no error, no traceback"


def test_a_webhook_under_the_limit_still_reaches_its_provider(client):
    update_plugin_config(identifier="stripe", active=True, changes={
        "secret_key": "sk_test_123", "webhook_secret": "whsec_test_secret"})
    body = json.dumps({"id": "evt_1", "padding": "x" * (2 * 1024 * 1024)})  # big, not too big
    response = client.post("/api/v1/payments/webhooks/stripe/", body,
                           content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00")
    _is_error(response, 400, "invalid_webhook")  # Stripe's signature check refused it
    assert not PaymentEvent.objects.exists()


def test_any_body_over_the_limit_is_a_413_in_the_error_shape(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post("/api/v1/cart/lines", {"sku": "MUG" * 500, "quantity": 1},
                           content_type="application/json", **_cart(client))
    _is_error(response, 413, "payload_too_large")


def test_the_schema_documents_the_413_of_every_operation_with_a_body():
    schema = api.get_openapi_schema()
    with_body = [(path, method, operation) for path, methods in schema["paths"].items()
                 for method, operation in methods.items() if "requestBody" in operation]
    assert len(with_body) > 10
    for path, method, operation in with_body:
        assert "413" in operation["responses"], f"{method.upper()} {path}"


# --- 3. unknown API paths are a JSON 404, whatever the method -----------------------------------


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_an_unknown_api_path_is_the_api_404_for_every_method_even_with_csrf_checks(method):
    client = Client(enforce_csrf_checks=True)
    for path in ("/api/v1/no-such-thing", "/api/v1/orders/42/nothing/here/", "/api/v1/"):
        response = client.generic(method.upper(), path, "{}", content_type="application/json")
        body = _is_error(response, 404, "not_found")
        assert body["detail"] == "Not found."


@pytest.mark.parametrize("path", ["/api/v1/categories/a%0Ab", "/api/v1/nothing%0A",
                                  "/api/v1/%0A/x"])
def test_a_path_with_a_newline_is_the_api_404_too(client, path):
    # Django's "path" converter (``.+``) stops at a newline: no route takes it, not even
    # /categories/{path}; the API's 404 does, not Django's HTML page.
    _is_error(client.get(path), 404, "not_found")


def test_a_known_path_with_another_method_stays_a_405_with_csrf_checks():
    response = Client(enforce_csrf_checks=True).post("/api/v1/store")
    _is_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/docs", "/api/v1/redoc"])
def test_the_schema_pages_are_read_only_a_405_not_a_csrf_page(path):
    client = Client(enforce_csrf_checks=True)
    assert client.get(path).status_code == 200
    assert client.head(path).status_code == 200
    for method in ("POST", "PUT", "DELETE"):
        response = client.generic(method, path)
        _is_error(response, 405, "method_not_allowed")
        assert response["Allow"] == "GET, HEAD"


def test_the_admin_still_checks_csrf():
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "x"})
    assert response.status_code == 403


# --- 4. money in ASCII digits only, and an empty price bound is no bound ------------------------


PRODUCT = {"handle": "linen-shirt", "name": "Linen shirt",
           "variants": [{"sku": "LINEN-M", "price": "1499.00", "stock": {"main": 3}}]}


def _upsert(client, key: dict, **variant) -> object:
    product = {**PRODUCT, "variants": [{**PRODUCT["variants"][0], **variant}]}
    return client.post("/api/v1/integrations/products", {"products": [product]},
                       content_type="application/json", **key)


@pytest.mark.parametrize(("field", "amount"), [
    ("price", "١٢٣"), ("price", "١٢٣.٠٠"), ("price", "１２３"), ("price", "۱۲۳"),
    ("price", "12٣.00"), ("compare_at_price", "١٢٣"), ("cost_price", "१२३"),
    ("price", " 123"), ("price", "1e3"), ("price", "-5"),
])
def test_money_in_other_digits_than_ascii_is_refused_and_nothing_is_stored(client, field, amount):
    response = _upsert(client, _key("catalog:write"), **{field: amount})
    body = _is_error(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == [f"products.0.variants.0.{field}"]
    assert not Product.objects.filter(slug="linen-shirt").exists()
    assert not Variant.objects.filter(sku="LINEN-M").exists()


def test_money_in_ascii_digits_is_stored(client):
    response = _upsert(client, _key("catalog:write"), price="123", compare_at_price="150.5")
    assert response.status_code == 200, response.json()
    variant = Variant.objects.get(sku="LINEN-M")
    assert (variant.price, variant.compare_at_price) == (Decimal("123.00"), Decimal("150.50"))


def test_the_shared_money_and_price_filter_types_read_ascii_digits_only():
    money, bound = TypeAdapter(Money), TypeAdapter(PriceFilter)
    assert money.validate_python("12.50") == Decimal("12.50")
    assert money.validate_python(Decimal("3")) == Decimal("3")
    assert bound.validate_python("10") == Decimal("10")
    assert bound.validate_python("") is None
    for amount in ("١٢٣", "١٢.٥", "１２"):
        with pytest.raises(ValidationError):
            money.validate_python(amount)
        with pytest.raises(ValidationError):
            bound.validate_python(amount)


def test_the_schema_says_ascii_digits_for_money_as_the_server_does():
    components = api.get_openapi_schema()["components"]["schemas"]
    pattern = components["VariantIn"]["properties"]["price"]["pattern"]
    assert re.search(pattern, "1499.00") and re.search(pattern, "1499.5")
    assert not re.search(pattern, "١٢٣") and not re.search(pattern, "1499.123")


@pytest.fixture
def priced(mug):
    cheap = Product.objects.create(name="Spoon", slug="spoon")
    Variant.objects.create(product=cheap, sku="SPOON", price="20.00")
    adjust_stock(variant_id=Variant.objects.get(sku="SPOON").pk, quantity_change=5)
    return mug


@pytest.mark.parametrize(("query", "slugs"), [
    ("max_price=", {"mug", "spoon"}),
    ("min_price=&max_price=", {"mug", "spoon"}),
    ("min_price=", {"mug", "spoon"}),
    ("min_price=&max_price=100", {"spoon"}),
    ("min_price=100&max_price=", {"mug"}),
    ("max_price=20.00", {"spoon"}),
])
def test_an_empty_price_bound_is_no_bound(client, priced, query, slugs):
    response = client.get(f"/api/v1/products?{query}")
    assert response.status_code == 200, response.json()
    assert {item["slug"] for item in response.json()["items"]} == slugs


@pytest.mark.parametrize("query", ["max_price=١٠٠", "min_price=１", "max_price=1e3",
                                   "max_price=-1", "max_price=1.234", "min_price=%20"])
def test_a_price_bound_not_in_ascii_digits_is_a_422(client, priced, query):
    body = _is_error(client.get(f"/api/v1/products?{query}"), 422, "validation_error")
    assert body["errors"][0]["field"] in {"min_price", "max_price"}


def test_the_schema_says_an_empty_price_bound_is_fine():
    parameters = api.get_openapi_schema()["paths"]["/api/v1/products"]["get"]["parameters"]
    schema = {p["name"]: p["schema"] for p in parameters}["max_price"]
    assert re.search(schema["pattern"], "") and re.search(schema["pattern"], "99.50")
    assert not re.search(schema["pattern"], "١٠٠")


# --- 5. integers written 3.0 --------------------------------------------------------------------


def test_an_integral_number_is_an_integer_where_the_schema_says_integer(client, mug):
    headers = _cart(client)
    added = client.post("/api/v1/cart/lines", {"sku": "MUG", "quantity": 2.0},
                        content_type="application/json", **headers)
    assert added.status_code == 200, added.json()
    assert added.json()["lines"][0]["quantity"] == 2
    line = added.json()["lines"][0]["id"]
    changed = client.patch(f"/api/v1/cart/lines/{line}", {"quantity": 3.0},
                           content_type="application/json", **headers)
    assert changed.json()["lines"][0]["quantity"] == 3
    stock = client.put("/api/v1/integrations/stock", {"levels": [
        {"sku": "MUG", "quantity": 129.0}]}, content_type="application/json",
        **_key("stock:write"))
    assert stock.status_code == 200, stock.json()
    assert Stock.objects.get(variant=mug).quantity == 129
    upserted = _upsert(client, _key("catalog:write"), weight_grams=250.0, stock={"main": 7.0})
    assert upserted.status_code == 200, upserted.json()
    variant = Variant.objects.get(sku="LINEN-M")
    assert variant.weight_grams == 250
    assert Stock.objects.get(variant=variant).quantity == 7


@pytest.mark.parametrize("quantity", [2.5, "2", True, 1e400, float("nan")])
def test_what_is_not_an_integer_is_still_refused_as_not_an_integer(client, mug, quantity):
    raw = json.dumps({"sku": "MUG", "quantity": quantity}).replace("Infinity", "1e400")
    response = client.post("/api/v1/cart/lines", raw, content_type="application/json",
                           **_cart(client))
    body = _is_error(response, 422, "validation_error")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("quantity", "int_type")]
    assert "integer" in body["errors"][0]["message"]


def test_an_integral_number_beyond_the_bounds_is_refused_by_the_bounds(client, mug):
    response = client.post("/api/v1/cart/lines", {"sku": "MUG", "quantity": 1e6},
                           content_type="application/json", **_cart(client))
    body = _is_error(response, 422, "validation_error")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("quantity", "less_than_equal")]


# --- No NUL in what a client sends, in the schema as in the server ------------------------------


def _request_strings(schema: dict):
    """(where, string schema) for every string a client sends: parameters and bodies, with the
    components they name, and the names of free-form objects."""
    components = schema["components"]["schemas"]
    seen: set[str] = set()

    def walk(node, where):
        if isinstance(node, list):
            for item in node:
                yield from walk(item, where)
            return
        if not isinstance(node, dict):
            return
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] not in seen:
            seen.add(ref.rsplit("/", 1)[1])
            yield from walk(components[ref.rsplit("/", 1)[1]], ref)
        if node.get("type") == "string":
            yield where, node
        if node.get("type") == "object" and "properties" not in node:
            yield f"{where} (keys)", {"type": "string", **node.get("propertyNames", {})}
        for key, value in node.items():
            if key in ("properties",):
                yield from walk(list(value.values()), where)
            elif key in ("schema", "items", "additionalProperties", "anyOf", "oneOf", "allOf"):
                yield from walk(value, where)

    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            yield from walk(operation.get("parameters", []), where)
            yield from walk(list(operation.get("requestBody", {}).get("content", {}).values()),
                            where)


def test_the_schema_refuses_nul_in_every_string_a_client_sends_as_the_server_does():
    strings = list(_request_strings(api.get_openapi_schema()))
    assert len(strings) > 100
    for where, string in strings:
        if "enum" in string or "format" in string:
            continue
        assert "pattern" in string, where
        assert not re.search(string["pattern"], "a\x00b"), (where, string["pattern"])


def test_nul_in_a_free_form_object_is_refused_as_the_schema_says(client):
    from backoffice.customers.services import register_customer, start_session

    user = register_customer(email="nul@example.com", password="correct-horse-battery-9")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {start_session(user).access_token}"}
    for preferences in ({"a\x00": 1}, {"a": ["x\x00"]}, {"a": {"b": "\x00"}}):
        response = client.patch("/api/v1/me", {"preferences": preferences},
                                content_type="application/json", **headers)
        _is_error(response, 422, "validation_error")
    kept = client.patch("/api/v1/me", {"preferences": {"a": {"b": ["c", 1, None]}}},
                        content_type="application/json", **headers)
    assert kept.json()["preferences"] == {"a": {"b": ["c", 1, None]}}
    schema = api.get_openapi_schema()["components"]["schemas"]["JsonValue"]
    assert {"type": "string", "pattern": r"^[^\x00]*$"} in schema["anyOf"]



# --- What the schema calls valid, the server takes as well-formed, and the other way round ------


def _schema_accepts(component: str, value) -> bool:
    # The validator schemathesis checks with.
    document = {"$ref": f"#/components/schemas/{component}",
                "components": api.get_openapi_schema()["components"]}
    return jsonschema_rs.Draft202012Validator(document).is_valid(value)


@pytest.mark.parametrize("addresses", [
    {"shipping_address": ADDRESS},
    {"shipping_address_id": 1},
    {"shipping_address": ADDRESS, "shipping_address_id": None},
    {"shipping_address": ADDRESS, "shipping_address_id": 1},
    {},
    {"shipping_address": None},
    {"shipping_address": ADDRESS, "billing_address": ADDRESS},
    {"shipping_address": ADDRESS, "billing_address_id": 1},
    {"shipping_address": ADDRESS, "billing_address": ADDRESS, "billing_address_id": 1},
    {"shipping_address": ADDRESS, "billing_address": None, "billing_address_id": 1},
])
def test_the_schema_says_which_addresses_checkout_takes_as_the_server_does(client, addresses):
    payload = {"shipping_method": "flat_rate", **addresses}
    response = client.post("/api/v1/checkout/quote", payload, content_type="application/json",
                           **_cart(client))
    refused_as_malformed = response.status_code == 422
    assert _schema_accepts("CheckoutIn", payload) is not refused_as_malformed, response.json()


@pytest.mark.parametrize("value", [" ", "\u2003\t", "", " a ", "x", "\x1c"])
def test_the_schema_says_a_trimmed_sku_needs_a_character_as_the_server_does(client, value):
    response = client.post("/api/v1/cart/lines", {"sku": value},
                           content_type="application/json", **_cart(client))
    refused_as_malformed = response.status_code == 422
    assert _schema_accepts("AddLineIn", {"sku": value}) is not refused_as_malformed


def test_the_schema_gives_the_length_a_new_password_needs(client):
    assert not _schema_accepts("RegisterIn", {"email": "a@example.com", "password": "Ab3$xyz"})
    assert _schema_accepts("RegisterIn", {"email": "a@example.com", "password": "Ab3$xyzw"})
    response = client.post("/api/v1/auth/register", {"email": "a@example.com",
                                                     "password": "Ab3$xyz"},
                           content_type="application/json")
    _is_error(response, 400, "weak_password")
    assert _schema_accepts("LoginIn", {"email": "a@example.com", "password": "x"}), \
        "an old password is whatever it is"
