"""Catalog exports: products (the native import format), categories and stock, as CSV or XLSX.

Rows are streamed from ``iterator(chunk_size=2000)`` with prefetches, so an export is a handful of
queries per 2,000 products whatever the catalog's size, and memory stays flat. The products
export is exactly what the ``native`` import reads: export, import, and nothing changes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import BinaryIO

from django.db.models import Prefetch

from backoffice.caching import query_cache_disabled
from backoffice.catalog.models import Category, Product, ProductImage, Variant
from backoffice.imports.categories import CategoryTree
from backoffice.imports.formats.native import LIST_SEPARATOR, native_header
from backoffice.imports.readers import is_xlsx
from backoffice.inventory.models import Stock, Warehouse

EXPORT_KINDS = ("products", "categories", "stock", "prices")
CHUNK = 2000


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def product_rows() -> Iterator[list[str]]:
    """The header, then one row per variant (product columns repeated), in product order."""
    warehouses = list(Warehouse.objects.order_by("code").values_list("id", "code"))
    yield native_header([code for _, code in warehouses])
    tree = CategoryTree()
    products = (
        Product.objects.order_by("id")
        .prefetch_related(
            Prefetch("extra_categories", queryset=Category.objects.only("id")),
            Prefetch(
                "images",
                queryset=ProductImage.objects.exclude(source_url="").order_by("position", "id"),
            ),
            Prefetch(
                "variants",
                queryset=Variant.objects.order_by("position", "id").prefetch_related(
                    Prefetch(
                        "stocks",
                        queryset=Stock.objects.only("variant_id", "warehouse_id", "quantity"),
                    )
                ),
            ),
        )
        .iterator(chunk_size=CHUNK)
    )
    for product in products:
        extras = sorted(tree.names_path(c.pk) for c in product.extra_categories.all())
        images = list(product.images.all())
        product_cells = [
            product.slug,
            product.name,
            product.description,
            product.brand,
            product.product_type,
            tree.names_path(product.category_id) if product.category_id else "",
            LIST_SEPARATOR.join(extras),
            ", ".join(product.tags or []),
            json.dumps(product.attributes, ensure_ascii=False, sort_keys=True)
            if product.attributes else "",
            _text(product.is_active),
            _text(product.is_featured),
            product.seo_title,
            product.seo_description,
            _text(product.google_category_id),
        ]
        image_cells = [
            LIST_SEPARATOR.join(image.source_url for image in images),
            LIST_SEPARATOR.join(image.alt_text for image in images) if images else "",
        ]
        for variant in product.variants.all():
            options = list((variant.option_values or {}).items())[:3]
            options += [("", "")] * (3 - len(options))
            stock = {s.warehouse_id: s.quantity for s in variant.stocks.all()}
            yield [
                *product_cells,
                variant.sku,
                variant.name,
                *(_text(part) for option in options for part in option),
                _text(variant.price),
                _text(variant.compare_at_price),
                _text(variant.cost_price),
                variant.barcode,
                _text(variant.weight_grams),
                _text(variant.is_active),
                _text(variant.track_inventory),
                _text(variant.allow_backorder),
                *(_text(stock.get(warehouse_id)) for warehouse_id, _ in warehouses),
                *image_cells,
            ]


def category_rows() -> Iterator[list[str]]:
    yield ["category", "slug", "description", "active", "position", "google_category_id"]
    tree = CategoryTree()
    for pk, slug, description, active, position, google_id in (
        Category.objects.order_by("tree_id", "lft")
        .values_list("id", "slug", "description", "is_active", "position", "google_category_id")
        .iterator(chunk_size=CHUNK)
    ):
        yield [
            tree.names_path(pk), slug, description, _text(active), _text(position),
            _text(google_id),
        ]


def stock_rows() -> Iterator[list[str]]:
    yield ["sku", "warehouse", "quantity", "allocated"]
    for sku, code, quantity, allocated in (
        Stock.objects.order_by("variant__sku", "warehouse__code")
        .values_list("variant__sku", "warehouse__code", "quantity", "quantity_allocated")
        .iterator(chunk_size=CHUNK)
    ):
        yield [sku, code, str(quantity), str(allocated)]


def price_rows() -> Iterator[list[str]]:
    """What a prices import reads back: one row per variant."""
    yield ["sku", "price", "compare_at_price", "cost_price"]
    for sku, price, compare_at, cost in (
        Variant.objects.order_by("sku")
        .values_list("sku", "price", "compare_at_price", "cost_price")
        .iterator(chunk_size=CHUNK)
    ):
        yield [sku, str(price), "" if compare_at is None else str(compare_at),
               "" if cost is None else str(cost)]


ROWS = {"products": product_rows, "categories": category_rows, "stock": stock_rows,
        "prices": price_rows}


def write_csv(rows: Iterator[list[str]], stream: BinaryIO) -> int:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    count = -1
    for row in rows:
        writer.writerow(row)
        count += 1
    text.flush()
    text.detach()
    return max(count, 0)


def write_xlsx(rows: Iterator[list[str]], stream: BinaryIO) -> int:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("catalog")

    def cell(value: str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
        if not value.startswith("="):
            return value
        # openpyxl makes "=..." a formula: a product named "=HYPERLINK(...)" would run in the
        # merchant's spreadsheet. Typed as text it stays the name it is, and imports back as is.
        text = WriteOnlyCell(sheet, value=value)
        text.data_type = "s"
        return text

    count = -1
    for row in rows:
        # Strings stay strings (a SKU "00123" or a price "9.90" must come back as written).
        sheet.append([cell(value) for value in row])
        count += 1
    workbook.save(stream)
    return max(count, 0)


def export_catalog(*, stream: BinaryIO, filename: str, kind: str = "products") -> int:
    """Write the ``kind`` export to ``stream`` (XLSX when ``filename`` ends in .xlsx, else CSV);
    returns the number of data rows."""
    if kind not in ROWS:
        raise ValueError(f"Unknown export {kind!r}; use one of {', '.join(EXPORT_KINDS)}.")
    with query_cache_disabled():
        rows = ROWS[kind]()
        if is_xlsx(filename):
            return write_xlsx(rows, stream)
        return write_csv(rows, stream)
