"""The storefront API's frame: docs, schema, CORS and one error shape for every 4xx."""

import pytest
from django.http import Http404
from django.test import override_settings
from django.urls import path
from ninja import NinjaAPI, Schema
from ninja.errors import HttpError

from shop_api.errors import ApiError, install_error_handlers

pytestmark = pytest.mark.django_db


def test_docs_are_served_with_local_assets(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    # The bundle comes from our static files, not a CDN the store may not reach.
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn.jsdelivr" not in html


def test_openapi_schema_describes_the_api(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Storefront API"
    assert "/api/v1/store" in schema["paths"]
    assert "ErrorOut" in schema["components"]["schemas"]


@override_settings(STORE_NAME="Duka", STORE_CURRENCY="KES")
def test_store_info_gives_the_currency(client):
    response = client.get("/api/v1/store")
    assert response.status_code == 200
    assert response.json() == {"name": "Duka", "currency": "KES", "api_version": "1.0.0"}


@override_settings(CORS_ALLOWED_ORIGINS=["https://shop.example.com"])
def test_cors_allows_the_configured_storefront_on_the_api_only(client):
    allowed = client.get("/api/v1/store", HTTP_ORIGIN="https://shop.example.com")
    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "x-request-id" in allowed["Access-Control-Expose-Headers"]

    other = client.get("/api/v1/store", HTTP_ORIGIN="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in other

    admin = client.get("/admin/login/", HTTP_ORIGIN="https://shop.example.com")
    assert "Access-Control-Allow-Origin" not in admin


@override_settings(CORS_ALLOWED_ORIGINS=["https://shop.example.com"])
def test_cors_preflight_allows_the_idempotency_key(client):
    response = client.options(
        "/api/v1/store",
        HTTP_ORIGIN="https://shop.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="idempotency-key, authorization",
    )
    assert response.status_code == 200
    allowed = response["Access-Control-Allow-Headers"]
    assert "idempotency-key" in allowed and "authorization" in allowed


def test_an_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found", "errors": []}


def test_a_method_a_path_does_not_serve_is_a_405_in_the_error_shape(client):
    response = client.put("/api/v1/products", {}, content_type="application/json")
    assert response.status_code == 405
    assert response.json() == {"detail": "PUT is not allowed here.",
                               "code": "method_not_allowed", "errors": []}
    assert "GET" in response["Allow"]


# --- The error shape, exercised through a small API built with the same handlers -------------

probe_api = NinjaAPI(urls_namespace="error-probe")
install_error_handlers(probe_api)


class ItemIn(Schema):
    name: str
    quantity: int


@probe_api.post("/items")
def create_item(request, payload: ItemIn):
    if payload.quantity > 10:
        raise ApiError(409, "insufficient_stock", "Only 10 left.",
                       errors=[{"field": "quantity", "message": "10 left", "code": "max"}])
    return {"ok": True}


@probe_api.get("/missing")
def missing(request):
    raise Http404("gone")


@probe_api.get("/forbidden")
def forbidden(request):
    raise HttpError(403, "Not yours.")


urlpatterns = [path("probe/", probe_api.urls)]


@pytest.fixture
def probe(client, settings):
    settings.ROOT_URLCONF = __name__
    return client


def test_validation_errors_name_each_field(probe):
    response = probe.post("/probe/items", {"name": "x", "quantity": "many"},
                          content_type="application/json")
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"]
    assert [e["field"] for e in body["errors"]] == ["quantity"]
    assert body["errors"][0]["code"] == "int_parsing"


def test_malformed_json_is_a_400_in_the_same_shape(probe):
    response = probe.post("/probe/items", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_domain_errors_keep_their_code_and_fields(probe):
    response = probe.post("/probe/items", {"name": "x", "quantity": 11},
                          content_type="application/json")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Only 10 left.",
        "code": "insufficient_stock",
        "errors": [{"field": "quantity", "message": "10 left", "code": "max"}],
    }


@pytest.mark.parametrize(("url", "status", "code"), [
    ("/probe/missing", 404, "not_found"),
    ("/probe/forbidden", 403, "permission_denied"),
])
def test_http_errors_share_the_shape(probe, url, status, code):
    response = probe.get(url)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["errors"] == []


@pytest.mark.parametrize("url", ["/api/v1/products/%00/reviews", "/api/v1/store?q=a%00b",
                                 "/admin/auth/user/?q=%00"])
def test_a_nul_character_in_the_url_is_a_400_not_a_database_error(client, url):
    response = client.get(url)
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
