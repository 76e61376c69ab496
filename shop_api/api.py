"""The storefront API: one ``NinjaAPI`` that every area's router is added to."""

import functools

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import path
from django.views.decorators.http import require_GET
from ninja import NinjaAPI, Schema
from ninja.openapi.docs import Redoc

from backoffice.plugin_host.api_routers import mount_plugin_routers
from shop_api.errors import ErrorOut, error_response, install_error_handlers
from shop_api.routers import (
    accounts,
    cart,
    catalog,
    checkout,
    integration_orders,
    integrations,
    orders,
    payments,
    reviews,
)

API_VERSION = "1.0.0"

api = NinjaAPI(
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
api.add_router("/", reviews.router)
api.add_router("/", integrations.router)
api.add_router("/", integration_orders.router)
api.add_router("/", cart.router)
api.add_router("/", checkout.router)
api.add_router("/", orders.router)
api.add_router("/", payments.router)
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


@require_GET
def redoc(request: HttpRequest) -> HttpResponse:
    """The same schema as ``/docs`` (Swagger UI), read in ReDoc. Its script is the copy
    django-ninja ships as a static file, as Swagger UI's is: no CDN."""
    return _redoc.render_page(request, api)


def api_urls():
    """``api.urls`` with ``/redoc`` beside ``/docs``, and every route's 405 in the error
    shape."""
    patterns, app_name, namespace = api.urls
    patterns = [*patterns, path("redoc", redoc, name="openapi-redoc")]
    for pattern in patterns:
        pattern.callback = _method_not_allowed_in_shape(pattern.callback)
    return patterns, app_name, namespace


def unknown_api_path(request: HttpRequest, rest: str = "") -> HttpResponse:
    """A path under the API that no route serves: a 404 in the API's error shape, not HTML."""
    return error_response(api, request, 404, "Not found.")
