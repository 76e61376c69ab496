"""The catalog for ERPs (API keys with ``catalog:write``): read it back page by page (keyset
cursor, ``updated_since``), archive products, set prices by SKU in bulk, manage categories by
their path of names. Products are written by ``POST /integrations/products``
(``routers/integrations.py``). Every write goes through the catalog services and is recorded
under the key (``IntegrationWrite``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from pydantic import StringConstraints

from backoffice.catalog.models import Category, Product
from backoffice.catalog.services import KEEP, PriceChangeError
from backoffice.integrations import catalog as services
from backoffice.integrations.models import Scope
from shop_api import examples
from shop_api.auth import integration_auth, require_scope
from shop_api.errors import ApiError
from shop_api.examples import example
from shop_api.routers.integration_orders import _moment
from shop_api.routers.integrations import router as products_router
from shop_api.routers.integrations import sent_amounts
from shop_api.schemas import ERROR_RESPONSES, AmountIn, InputSchema, Money, NotBlank

router = Router(tags=["integrations"], auth=integration_auth)
ERRORS = ERROR_RESPONSES
# Reading the catalog needs the key that may write it: a scope is its permissions
# (``backoffice.permissions.SCOPE_PERMISSIONS``), and a key's scopes never change once handed
# out, so a separate read scope would leave every ERP key in use unable to read back what it
# wrote. See docs/integrations.md.
READ_SCOPE = Scope.CATALOG_WRITE


# --- Reading products back -------------------------------------------------------------------


class IntegrationImageOut(Schema):
    url: str
    alt: str


class IntegrationVariantOut(Schema):
    sku: str
    name: str
    options: dict[str, str]
    price: Money
    compare_at_price: Money | None
    cost_price: Money | None
    barcode: str
    weight_grams: int | None
    active: bool
    track_inventory: bool
    allow_backorder: bool
    stock: dict[str, int] = Field(description="On hand per warehouse code (not what is "
                                              "allocated to orders).")


class IntegrationProductOut(Schema):
    handle: str
    name: str
    description: str
    brand: str
    product_type: str
    category: str | None = Field(description='The path of names, e.g. "Clothing > Shirts".')
    extra_categories: list[str]
    tags: list[str]
    attributes: dict[str, str]
    published: bool
    featured: bool
    seo_title: str
    seo_description: str
    google_category_id: int | None
    images: list[IntegrationImageOut]
    variants: list[IntegrationVariantOut]
    updated_at: datetime = Field(description="When the product or one of its variants last "
                                             "changed (stock aside): the time updated_since "
                                             "and the cursor go by.")


class IntegrationProductPageOut(Schema):
    items: list[IntegrationProductOut]
    next_cursor: str | None = Field(description="Send it as ?cursor= for the next page; null "
                                                "when this page is the last.")
    as_of: datetime = Field(description="When this page was read (the server's clock).")


class IntegrationProductFilters(Schema):
    updated_since: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        None, description="Only products changed at or after this time (ISO 8601, e.g. "
                          "2026-11-22T08:00:00Z): the product, or any of its variants.",
        json_schema_extra={"format": "date-time"},
    )
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=200,
                                             pattern=r"^[A-Za-z0-9_-]+$")] | None = Field(
        None, description="The next_cursor of the page before.")
    limit: int = Field(100, ge=1, le=services.MAX_PAGE_SIZE)


# On the router of ``POST /integrations/products``: ninja serves one path from one router (a
# second router's GET on the same path would never be reached, the first answering 405).
@products_router.get("/integrations/products", response={200: IntegrationProductPageOut, **ERRORS})
def list_products(request: HttpRequest, filters: Query[IntegrationProductFilters]):
    """Every product, drafts included, least recently changed first, a page at a time.

    Follow ``next_cursor`` until it is null: the cursor is a position in (updated_at, id), so
    no product is missed or repeated while the catalog changes under the sync, except one
    changed after it was read, which comes again on a later page (its updated_at moved on).
    For the next sync send ``updated_since``: the ``as_of`` of the first page of this one,
    less a few minutes (a write still in its transaction when the page was read is stamped
    with its start time). A product's updated_at moves when the product or any of its
    variants changes (prices included); stock levels do not move it.
    """
    require_scope(request, READ_SCOPE)
    since = _moment(filters.updated_since) if filters.updated_since else None
    as_of = timezone.now()
    try:
        page = services.product_page(since=since, cursor=filters.cursor, size=filters.limit)
    except services.InvalidCursor as exc:
        raise ApiError(422, "invalid_cursor", str(exc), [
            {"field": "cursor", "message": str(exc), "code": "invalid_cursor"}]) from exc
    return {"items": page.products, "next_cursor": page.next_cursor, "as_of": as_of}


def _product(handle: str) -> Product:
    product = Product.objects.filter(slug=handle).first()
    if product is None:
        raise ApiError(404, "not_found", f"No product has the handle {handle!r}.")
    return product


@router.get("/integrations/products/{handle}", response={200: IntegrationProductOut, **ERRORS})
def get_product(request: HttpRequest, handle: str):
    """One product by its handle, drafts included, as the list answers it."""
    require_scope(request, READ_SCOPE)
    product = services.product_by_handle(handle)
    if product is None:
        raise ApiError(404, "not_found", f"No product has the handle {handle!r}.")
    return product


# --- Archiving ------------------------------------------------------------------------------


class IntegrationArchiveOut(Schema):
    handle: str
    published: bool
    changed: bool


def _archive(request: HttpRequest, handle: str, archived: bool) -> dict:
    require_scope(request, Scope.CATALOG_WRITE)
    product = _product(handle)
    changed = services.set_archived(key=request.auth, product=product, archived=archived)
    return {"handle": product.slug, "published": not archived, "changed": changed}


@router.post("/integrations/products/{handle}/archive",
             response={200: IntegrationArchiveOut, **ERRORS})
def archive_product(request: HttpRequest, handle: str):
    """Take a product off the storefront: it is unpublished (``published: false``), nothing is
    deleted (variants, stock, images and orders stay) and it is still read back. Idempotent:
    archiving an archived product changes nothing (``changed: false``)."""
    return _archive(request, handle, archived=True)


@router.post("/integrations/products/{handle}/unarchive",
             response={200: IntegrationArchiveOut, **ERRORS})
def unarchive_product(request: HttpRequest, handle: str):
    """Publish an archived product again. Idempotent, as archiving is."""
    return _archive(request, handle, archived=False)


# --- Prices by SKU --------------------------------------------------------------------------


class IntegrationPriceIn(InputSchema):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
                   NotBlank]
    price: AmountIn = Field(description='A decimal string in the store currency, e.g. "1499.00".')
    compare_at_price: AmountIn | None = Field(
        None, description="The 'was' price, at least the price; null clears it, left out "
                          "keeps it.")


class IntegrationPricesIn(InputSchema):
    model_config = example(examples.PRICES)

    prices: list[IntegrationPriceIn] = Field(min_length=1, max_length=services.MAX_PRICES)
    reference: Annotated[str, StringConstraints(max_length=120)] = ""


class IntegrationPricesOut(Schema):
    received: int
    changed: int


@router.put("/integrations/prices", response={200: IntegrationPricesOut, **ERRORS})
def set_prices(request: HttpRequest, payload: IntegrationPricesIn):
    """Set variant prices by SKU (up to 1000 a call), and compare-at prices when sent.

    All or nothing: an unknown SKU, a SKU twice, or a compare-at price below the price changes
    nothing, and the 422 names each row at fault (``prices.<i>.sku``...). The same prices
    again change nothing (``changed: 0``). The products' price ranges (listing, filters) are
    kept true, and the products come back on the next ``updated_since`` sync.
    """
    require_scope(request, Scope.CATALOG_WRITE)
    rows, errors = [], []
    for i, item in enumerate(payload.prices):
        values = sent_amounts(item, ("price", "compare_at_price"), f"prices.{i}", errors)
        rows.append(services.PriceRow(item.sku, values.get("price"),
                                      values.get("compare_at_price", KEEP)))
    if errors:
        raise ApiError(422, "validation_error", "Some values are not valid.", errors)
    try:
        changed = services.set_prices_by_sku(key=request.auth, rows=rows,
                                             reference=payload.reference or "api")
    except services.PriceRowsRefused as exc:
        raise ApiError(422, "validation_error", str(exc), [
            {"field": f"prices.{index}.{field}", "message": message, "code": code}
            for index, field, message, code in exc.errors]) from exc
    except PriceChangeError as exc:  # a compare-at price changed meanwhile
        raise ApiError(409, "conflict", str(exc)) from exc
    return {"received": len(rows), "changed": changed}


# --- Categories -----------------------------------------------------------------------------

CategoryPath = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=1000), NotBlank]


class IntegrationCategoryOut(Schema):
    path: str = Field(description='Names from the top, e.g. "Clothing > Shirts".')
    name: str
    slug: str
    slug_path: str = Field(description='Slugs from the top, e.g. "clothing/shirts" (the URL).')
    parent: str | None
    level: int
    position: int
    active: bool
    description: str
    google_category_id: int | None
    updated_at: datetime


class IntegrationCategoryListOut(Schema):
    items: list[IntegrationCategoryOut]
    count: int


class IntegrationCategoryIn(InputSchema):
    model_config = example(examples.CATEGORY)

    path: CategoryPath = Field(description="Names from the top; missing levels are made.")


class IntegrationCategoryChangeIn(InputSchema):
    model_config = example(examples.CATEGORY_CHANGE)

    path: CategoryPath = Field(description="Where the category is now (names from the top).")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                    NotBlank] | None = Field(None, description="A new name (the slug stays).")
    parent: CategoryPath | None = Field(
        None, description="Move it under this category (names from the top; it must exist); "
                          "null moves it to the top level; left out, it stays where it is.")
    position: int | None = Field(None, ge=0, le=2_147_483_647,
                                 description="Order among its siblings; lower comes first.")
    active: bool | None = None
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class IntegrationCategoryWriteOut(Schema):
    category: IntegrationCategoryOut
    created: int = Field(description="Categories made (0: it was there already).")
    changed: list[str] = Field(description="What changed (empty: nothing).")


def _category_out(row: dict) -> dict:
    return {
        "path": row["names"], "name": row["name"], "slug": row["slug"],
        "slug_path": row["path"], "parent": row["parent"], "level": row["level"],
        "position": row["position"], "active": row["is_active"],
        "description": row["description"], "google_category_id": row["google_category_id"],
        "updated_at": row["updated_at"],
    }


def _one_category(category: Category) -> dict:
    names = services.category_names({category.path})[category.path]
    return _category_out({
        "names": names, "name": category.name, "slug": category.slug, "path": category.path,
        "parent": names.rsplit(services.NAMES_SEPARATOR, 1)[0] if category.parent_id else None,
        "level": category.level, "position": category.position,
        "is_active": category.is_active, "description": category.description,
        "google_category_id": category.google_category_id, "updated_at": category.updated_at,
    })


def _refused(exc: services.CategoryError) -> ApiError:
    return ApiError(exc.status, exc.code, str(exc), [
        {"field": exc.field, "message": str(exc), "code": exc.code}])


def _no_separator(value: str | None, field: str) -> None:
    if value is not None and ">" in value:
        message = "A category name cannot hold '>' (it separates the levels of a path)."
        raise ApiError(422, "invalid_name", message,
                       [{"field": field, "message": message, "code": "invalid_name"}])


@router.get("/integrations/categories", response={200: IntegrationCategoryListOut, **ERRORS})
def list_categories(request: HttpRequest):
    """The whole category tree as a flat list in tree order (depth first, siblings by position
    and name), each with its path of names and its parent's: one query, whatever its size."""
    require_scope(request, READ_SCOPE)
    rows = services.category_rows()
    return {"items": [_category_out(row) for row in rows], "count": len(rows)}


@router.post("/integrations/categories", response={200: IntegrationCategoryWriteOut,
                                                   201: IntegrationCategoryWriteOut, **ERRORS})
def create_category(request: HttpRequest, payload: IntegrationCategoryIn):
    """Make the category at a path of names, and any missing level above it (201); one that is
    there already is answered as it is (200, ``created: 0``). Names match as in
    ``POST /integrations/products`` (case aside, or by slug)."""
    require_scope(request, Scope.CATALOG_WRITE)
    try:
        category, made = services.ensure_category(key=request.auth, path=payload.path)
    except services.CategoryError as exc:
        raise _refused(exc) from exc
    body = {"category": _one_category(category), "created": made, "changed": []}
    return Status(201, body) if made else body


@router.patch("/integrations/categories", response={200: IntegrationCategoryWriteOut, **ERRORS})
def change_category(request: HttpRequest, payload: IntegrationCategoryChangeIn):
    """Rename, move, reorder, (un)publish or describe the category at ``path``.

    Idempotent: sent again after a rename or a move, when nothing is left at ``path`` but the
    category is where the change put it, it is answered with ``changed: []``. A move under
    itself, or next to a sibling with the same slug, is a 409 and changes nothing; a parent
    that does not exist is a 422.
    """
    require_scope(request, Scope.CATALOG_WRITE)
    _no_separator(payload.name, "name")
    given = payload.model_fields_set
    try:
        category, changed = services.change_category(
            key=request.auth, path=payload.path, name=payload.name,
            parent=payload.parent if "parent" in given else services.UNSET,
            position=payload.position, active=payload.active, description=payload.description,
        )
    except services.CategoryError as exc:
        raise _refused(exc) from exc
    return {"category": _one_category(category), "created": 0, "changed": changed}
