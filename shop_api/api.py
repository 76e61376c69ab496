"""The storefront API: one ``NinjaAPI`` that every area's router is added to."""

import functools

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from ninja import NinjaAPI, Schema
from ninja.openapi.docs import Redoc

from backoffice.plugin_host.api_routers import mount_plugin_routers
from shop_api.errors import ErrorOut, error_response, install_error_handlers
from shop_api.routers import (
    accounts,
    cart,
    catalog,
    checkout,
    identity,
    integration_catalog,
    integration_orders,
    integrations,
    notifications,
    orders,
    payments,
    reviews,
)
from shop_api.schemas import forbid_nul_in_requests

API_VERSION = "1.0.0"


class StorefrontAPI(NinjaAPI):
    """ninja's API, with a schema that says what the API takes and answers: no NUL in any
    string, and a 413 from every operation with a body (one over DATA_UPLOAD_MAX_MEMORY_SIZE,
    see ``errors.install_error_handlers``)."""

    def get_openapi_schema(self, *args, **kwargs):
        schema = forbid_nul_in_requests(super().get_openapi_schema(*args, **kwargs))
        too_large = {"description": "Payload Too Large", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault("413", too_large)
        return schema


api = StorefrontAPI(
    title="Storefront API",
    version=API_VERSION,
    description=(
        "The JSON API storefronts are built on: accounts, catalog, cart, checkout, orders and "
        "payments. Every 4xx answer has the same shape: `detail` (a message for people), "
        "`code` (stable, for programs) and `errors` (field errors, on validation failures)."
    ),
    urls_namespace="api-v1",
    docs_url="/docs",
    openapi_url="/openapi.json",
)
install_error_handlers(api)


class StoreOut(Schema):
    name: str
    currency: str
    api_version: str


@api.get("/store", response={200: StoreOut, 429: ErrorOut}, tags=["store"])
def store_info(request: HttpRequest) -> dict:
    """The store's name and currency, which storefronts need to format prices."""
    return {
        "name": settings.STORE_NAME,
        "currency": settings.STORE_CURRENCY,
        "api_version": API_VERSION,
    }


api.add_router("/", catalog.router)
api.add_router("/", accounts.router)
api.add_router("/", identity.router)
api.add_router("/", reviews.router)
api.add_router("/", integrations.router)
api.add_router("/", integration_orders.router)
api.add_router("/", integration_catalog.router)
api.add_router("/", cart.router)
api.add_router("/", checkout.router)
api.add_router("/", orders.router)
api.add_router("/", payments.router)
api.add_router("/", notifications.router)
mount_plugin_routers(api)


def _method_not_allowed_in_shape(view):
    """ninja answers a method a path does not serve with a plain-text 405: the same answer in
    the API's error shape, its ``Allow`` header kept."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            shaped = error_response(api, request, 405,
                                    f"{request.method} is not allowed here.")
            shaped["Allow"] = response["Allow"]
            return shaped
        return response

    return wrapped


_redoc = Redoc()


@require_safe
def redoc(request: HttpRequest) -> HttpResponse:
    """The same schema as ``/docs`` (Swagger UI), read in ReDoc. Its script is the copy
    django-ninja ships as a static file, as Swagger UI's is: no CDN."""
    return _redoc.render_page(request, api)


def api_urls():
    """``api.urls`` with ``/redoc`` beside ``/docs``, and every route's 405 in the error
    shape. No route takes a cookie (the API's routes are ``csrf_exempt`` already): the pages of
    the schema (``/openapi.json``, ``/docs``, ``/redoc``) are read-only, so another method is
    their 405, not Django's "CSRF verification failed" page."""
    patterns, app_name, namespace = api.urls
    patterns = [*patterns, path("redoc", redoc, name="openapi-redoc")]
    for pattern in patterns:
        view = pattern.callback
        if pattern.name == "api-root":  # ninja's raises Http404: Django's HTML page
            view = unknown_api_path
        elif not getattr(view, "csrf_exempt", False):
            view = csrf_exempt(require_safe(view))
        pattern.callback = _method_not_allowed_in_shape(view)
    return patterns, app_name, namespace


@csrf_exempt
def unknown_api_path(request: HttpRequest, rest: str = "") -> HttpResponse:
    """A path under the API that no route serves: a 404 in the API's error shape, not HTML,
    whatever the method (the API's routes take no cookies, so no CSRF check applies: a POST
    here is a 404 as a GET is, not Django's "CSRF verification failed" page)."""
    return error_response(api, request, 404, "Not found.")
