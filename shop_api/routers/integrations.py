"""Integration endpoints for ERPs, warehouse systems and scripts (API keys, scoped).

Every write goes through the same services as the admin and is attributed to the key.
"""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field, StringConstraints

from backoffice.imports.records import (
    ProductRecord,
    VariantRecord,
    parse_money,
    split_category_path,
)
from backoffice.integrations import services as integration_services
from backoffice.integrations.models import Scope
from backoffice.inventory.services import (
    CountedLevel,
    StockError,
    UnknownStockPlaces,
)
from shop_api import examples
from shop_api.auth import integration_auth, require_scope
from shop_api.errors import ApiError
from shop_api.examples import example
from shop_api.schemas import ERROR_RESPONSES, AmountIn, InputSchema, NotBlank

router = Router(tags=["integrations"], auth=integration_auth)
ERRORS = ERROR_RESPONSES
MAX_LEVELS = 1000


class StockLevelIn(InputSchema):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
                   NotBlank]
    warehouse: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] = Field(
        default="", description="Warehouse code; the default warehouse when empty."
    )
    quantity: int = Field(ge=0, le=10_000_000, description="Units on hand, as counted.")


class StockLevelsIn(InputSchema):
    model_config = example(examples.STOCK_LEVELS)

    levels: list[StockLevelIn] = Field(min_length=1, max_length=MAX_LEVELS)
    reference: Annotated[str, StringConstraints(max_length=120)] = ""


class StockLevelsOut(Schema):
    received: int
    changed: int


@router.put("/integrations/stock", response={200: StockLevelsOut, **ERRORS})
def set_stock_levels(request: HttpRequest, payload: StockLevelsIn):
    """Set on-hand stock per SKU and warehouse (up to 1000 rows a call), as counted.

    All or nothing: an unknown SKU or warehouse, or a level below what is allocated to orders,
    changes nothing. Sending the same levels again changes nothing (idempotent). Every change
    is written to the stock ledger under this key's name.
    """
    require_scope(request, Scope.STOCK_WRITE)
    levels = [
        CountedLevel(sku=lv.sku, quantity=lv.quantity, warehouse_code=lv.warehouse)
        for lv in payload.levels
    ]
    try:
        changed = integration_services.set_stock_levels(
            key=request.auth, levels=levels, reference=payload.reference or "api"
        )
    except UnknownStockPlaces as exc:
        errors = [
            {"field": f"levels.{index}.{field}", "message": message, "code": f"unknown_{field}"}
            for index, field, message in exc.errors
        ]
        raise ApiError(422, "validation_error", str(exc), errors) from exc
    except StockError as exc:
        raise ApiError(409, "stock_conflict", str(exc)) from exc
    return {"received": len(levels), "changed": changed}


# --- Catalog ------------------------------------------------------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)]
MAX_PRODUCTS = 500


class ImageIn(InputSchema):
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\x00]*$", max_length=1000)]
    alt: Text = ""


class VariantIn(InputSchema):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
                   NotBlank]
    name: Text = ""
    options: dict[Annotated[str, StringConstraints(max_length=50)],
                  Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=dict, max_length=3, description='e.g. {"Size": "M"}; at most 3.'
    )
    price: AmountIn = Field(description="A decimal string in the store currency, e.g. "
                                        "\"1499.00\".")
    compare_at_price: AmountIn | None = None
    cost_price: AmountIn | None = None
    barcode: Annotated[str, StringConstraints(max_length=64)] = ""
    weight_grams: int | None = Field(None, ge=0, le=10_000_000)
    active: bool | None = None
    stock: dict[Annotated[str, StringConstraints(max_length=32)],
                Annotated[int, Field(ge=0, le=10_000_000)]] = Field(
        default_factory=dict, description="On hand per warehouse code, as counted."
    )


class ProductIn(InputSchema):
    handle: Annotated[str, StringConstraints(pattern=r"^[-\w]+$", max_length=255)] = Field(
        description="The product's stable key (its URL slug): the same handle updates it."
    )
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
                    NotBlank]
    description: Annotated[str, StringConstraints(max_length=100_000)] = ""
    brand: Annotated[str, StringConstraints(max_length=120)] = ""
    product_type: Annotated[str, StringConstraints(max_length=120)] = ""
    category: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        None, description='A path of names, e.g. "Clothing > Men > Shirts"; made if missing.'
    )
    extra_categories: list[Annotated[str, StringConstraints(max_length=1000)]] | None = None
    tags: list[Annotated[str, StringConstraints(max_length=100)]] | None = None
    attributes: dict[str, str] | None = None
    published: bool | None = None
    featured: bool | None = None
    seo_title: Text = ""
    seo_description: Annotated[str, StringConstraints(max_length=320)] = ""
    google_category_id: int | None = Field(None, ge=1, le=2_147_483_647)
    images: list[ImageIn] | None = None
    variants: list[VariantIn] = Field(min_length=1, max_length=100)


class ProductsIn(InputSchema):
    model_config = example(examples.PRODUCTS)

    products: list[ProductIn] = Field(min_length=1, max_length=MAX_PRODUCTS)
    reference: Annotated[str, StringConstraints(max_length=120)] = ""


class ProductsOut(Schema):
    dry_run: bool
    written: bool
    counts: dict[str, dict[str, int]]
    warnings: list[dict[str, str]]


_PRODUCT_FIELDS = {
    "description": "description", "brand": "brand", "product_type": "product_type",
    "seo_title": "seo_title", "seo_description": "seo_description", "attributes": "attributes",
    "tags": "tags", "google_category_id": "google_category_id", "published": "is_active",
    "featured": "is_featured",
}
_NULLABLE_PRODUCT_FIELDS = {"google_category_id"}
# Engine column -> JSON field, for error paths.
_PRODUCT_COLUMNS = {
    "handle": "handle", "name": "name", "description": "description", "brand": "brand",
    "type": "product_type", "category": "category", "extra_categories": "extra_categories",
    "tags": "tags", "attributes": "attributes", "published": "published",
    "featured": "featured", "seo_title": "seo_title", "seo_description": "seo_description",
    "google_category_id": "google_category_id", "image_urls": "images",
    "image_alt_texts": "images",
}
_VARIANT_COLUMNS = {"variant_name": "name", "variant_active": "active"}


def sent_amounts(item: Schema, names: tuple[str, ...], path: str, errors: list[dict]) -> dict:
    """The money fields of ``item`` that were sent, as ``Decimal`` (None: sent as null); one
    that is not an amount goes to ``errors`` as ``<path>.<name>``."""
    values = {}
    for name in names:
        if name not in item.model_fields_set:
            continue
        text = getattr(item, name)
        try:
            values[name] = parse_money(text) if text is not None else None
        except ValueError as exc:
            errors.append({"field": f"{path}.{name}", "message": str(exc), "code": "invalid"})
    return values


def _records(products: list[ProductIn]):
    """Records for the import engine; each variant is a "row" (numbered from 2, as in a file)
    so the engine's errors can be traced back to a JSON path."""
    records, rows, errors, row = [], {}, [], 2
    for i, product in enumerate(products):
        given = product.model_dump(exclude_unset=True)
        record = ProductRecord(row=row, handle=product.handle)
        record.values["name"] = product.name
        for json_name, field_name in _PRODUCT_FIELDS.items():
            # null leaves a field as it is, except the one that may be empty (the Google id).
            if json_name in given and (
                given[json_name] is not None or json_name in _NULLABLE_PRODUCT_FIELDS
            ):
                record.values[field_name] = getattr(product, json_name)
        if "category" in given:
            if product.category:
                record.category = split_category_path(product.category)
            else:
                record.clear_category = True
        if product.extra_categories is not None:
            record.extra_categories = [split_category_path(p) for p in product.extra_categories]
        if product.images is not None:
            record.images = [(image.url, image.alt) for image in product.images]
        for j, variant in enumerate(product.variants):
            rows[row] = (i, j)
            item = VariantRecord(row=row, sku=variant.sku)
            sent = variant.model_dump(exclude_unset=True)  # what is not sent stays as it is
            for json_name, field_name in (("name", "name"), ("options", "option_values"),
                                          ("barcode", "barcode"),
                                          ("weight_grams", "weight_grams")):
                if json_name in sent:
                    item.values[field_name] = sent[json_name]
            item.values.update(sent_amounts(variant, ("price", "compare_at_price", "cost_price"),
                                            f"products.{i}.variants.{j}", errors))
            if variant.active is not None:
                item.values["is_active"] = variant.active
            item.stock = dict(variant.stock)
            record.variants.append(item)
            row += 1
        records.append(record)
    return records, rows, errors


def _json_path(rows: dict[int, tuple[int, int]], row: int, column: str) -> str:
    if row not in rows:
        return "products"
    i, j = rows[row]
    if column in _PRODUCT_COLUMNS:
        return f"products.{i}.{_PRODUCT_COLUMNS[column]}"
    if column.startswith("stock:"):
        return f"products.{i}.variants.{j}.stock.{column[len('stock:'):]}"
    if column.startswith("option"):
        return f"products.{i}.variants.{j}.options"
    return f"products.{i}.variants.{j}.{_VARIANT_COLUMNS.get(column, column)}"


@router.post("/integrations/products", response={200: ProductsOut, **ERRORS})
def upsert_products(request: HttpRequest, payload: ProductsIn, dry_run: bool = False):
    """Create or update products with their variants, images and stock (up to 500 a call).

    The same engine as a catalog import: products match by ``handle``, variants by ``sku``, so
    sending the same payload again changes nothing; categories are made from their names; any
    error writes nothing and names its field. ``?dry_run=true`` checks without writing.
    """
    require_scope(request, Scope.CATALOG_WRITE)
    records, rows, errors = _records(payload.products)
    if errors:
        raise ApiError(422, "validation_error", "Some values are not valid.", errors)
    result = integration_services.upsert_products(
        key=request.auth, records=records, dry_run=dry_run, reference=payload.reference or "api",
    )
    if result.errors:
        raise ApiError(422, "validation_error", "Some products could not be taken.", [
            {"field": _json_path(rows, e.row, e.column), "message": e.message, "code": "invalid"}
            for e in result.errors
        ])
    return {
        "dry_run": dry_run, "written": result.written,
        "counts": {entity: dict(actions) for entity, actions in result.counts.items()},
        "warnings": [{"field": _json_path(rows, w.row, w.column), "message": w.message}
                     for w in result.warnings],
    }
