"""The catalog import engine: one service the admin, the command line and the jobs all call.

An import reads the whole file first, checks every row against the file and the database, and
plans what it would change. A dry run stops there and reports; a real import with any row error
writes nothing; otherwise everything is written in one transaction, in bulk:

- existing rows are read by key in chunks (products by handle, variants by SKU, their stock,
  images and extra categories; the category tree and the warehouses in one query each), never
  per row;
- new categories are planned in memory and written once per tree level, then one tree rebuild;
- new products, variants and images are written with ``COPY`` (``bulk.insert_rows``), changed
  ones with one ``UPDATE ... FROM (VALUES ...)`` per 1000 rows (``bulk.update_rows``); stock goes
  through ``bulk_set_stock_levels`` so every change has a movement ("import").

Re-importing a file is idempotent: products are matched by handle (their slug), variants by SKU,
and a row that would change nothing counts as unchanged. Variants and images a file does not
mention are left alone (nothing is deleted), except that a product's URL images are replaced when
the file lists a different set of them.

Before anything is written, a product that would be left published with nothing to sell (no
active variant with stock available, not tracked or on backorder) gets a warning naming it, in
the dry run as in the import. Every product an import creates or changes (its variants and stock
included) is marked with the time and the import's reference (``Product.imported_at``,
``import_reference``): the sold-out job leaves such products alone for an hour and says so.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from cachalot.api import invalidate
from django.db import models, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from backoffice.bulk import chunked, insert_rows, key_chunks, update_rows
from backoffice.caching import query_cache_disabled
from backoffice.catalog.models import (
    Category,
    Product,
    ProductImage,
    Variant,
    sells_without_stock,
)
from backoffice.catalog.services import refresh_listings
from backoffice.imports.categories import CategoryPathError, CategoryTree
from backoffice.imports.formats import PRODUCT_FORMATS
from backoffice.imports.readers import FileFormatError, Table, open_table
from backoffice.imports.records import (
    MAX_TEXT_LENGTH,
    Problems,
    ProductRecord,
    RowProblem,
    make_slug,
    parse_bool,
    parse_int,
    parse_money,
    split_category_path,
)
from backoffice.inventory.models import MovementReason, Stock, Warehouse
from backoffice.inventory.services import (
    SYSTEM,
    Actor,
    StockLevel,
    bulk_set_stock_levels,
    default_warehouse,
)
from backoffice.money import currency_exponent

FORMAT_CHOICES = ("native", "shopify", "woocommerce", "google-taxonomy")
BATCH = 1000
PREVIEW_ROWS = 20
PROGRESS_EVERY = 1000

PRODUCT_FIELDS = [
    "name", "description", "brand", "product_type", "attributes", "tags", "is_active",
    "is_featured", "seo_title", "seo_description", "google_category_id",
]
VARIANT_FIELDS = [
    "name", "option_values", "price", "compare_at_price", "cost_price", "barcode",
    "weight_grams", "is_active", "track_inventory", "allow_backorder",
]

ProgressCallback = Callable[[str, int, int | None], None]


@dataclass
class ImportResult:
    """What an import did (or, in a dry run, would do)."""

    format: str
    kind: str = "products"
    dry_run: bool = False
    rows: int = 0
    skipped_rows: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    errors: list[RowProblem] = field(default_factory=list)
    warnings: list[RowProblem] = field(default_factory=list)
    preview: list[dict] = field(default_factory=list)
    written: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def ok(self) -> bool:
        return not self.errors

    def count(self, entity: str, action: str, n: int = 1) -> None:
        self.counts[entity][action] = self.counts[entity].get(action, 0) + n

    def total(self, action: str) -> int:
        return sum(actions.get(action, 0) for actions in self.counts.values())

    def as_dict(self, *, max_problems: int = 1000) -> dict:
        return {
            "format": self.format,
            "kind": self.kind,
            "dry_run": self.dry_run,
            "written": self.written,
            "rows": self.rows,
            "skipped_rows": self.skipped_rows,
            "counts": {entity: dict(actions) for entity, actions in self.counts.items()},
            "error_count": len(self.errors),
            "errors": [e.as_dict() for e in self.errors[:max_problems]],
            "warning_count": len(self.warnings),
            "warnings": [w.as_dict() for w in self.warnings[:max_problems]],
            "preview": self.preview,
            "seconds": round(self.seconds, 3),
            "timings": {phase: round(t, 3) for phase, t in self.timings.items()},
        }

    def summary_lines(self) -> list[str]:
        lines = [f"{self.rows} rows read ({self.format}, {self.kind})"]
        for entity, actions in self.counts.items():
            parts = ", ".join(f"{n} {action}" for action, n in actions.items())
            lines.append(f"{entity}: {parts}")
        lines.append(f"skipped rows: {self.skipped_rows}")
        lines.append(f"warnings: {len(self.warnings)}")
        lines.append(f"errors: {len(self.errors)}")
        return lines


def _counting(
    rows: Iterator[tuple[int, list[str]]], result: ImportResult, progress: ProgressCallback | None
) -> Iterator[tuple[int, list[str]]]:
    for item in rows:
        result.rows += 1
        if progress and result.rows % PROGRESS_EVERY == 0:
            progress("reading", result.rows, None)
        yield item


def import_catalog(
    *,
    stream: BinaryIO,
    filename: str,
    file_format: str,
    dry_run: bool = False,
    warehouse_code: str | None = None,
    actor: Actor = SYSTEM,
    reference: str = "",
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import a catalog file (CSV or XLSX; ``file_format`` one of ``FORMAT_CHOICES``).

    Returns the result; file-level problems (encoding, empty file, wrong columns) come back as an
    error on row 0 rather than an exception, so callers show them like any other error.
    """
    started = time.monotonic()
    result = ImportResult(format=file_format, dry_run=dry_run)
    try:
        with query_cache_disabled():
            if file_format == "google-taxonomy":
                result.kind = "categories"
                _import_taxonomy(stream, result, dry_run=dry_run, progress=progress)
            elif file_format in PRODUCT_FORMATS or file_format == "native":
                table = open_table(stream, filename=filename)
                _import_table(
                    table, file_format, result, dry_run=dry_run, warehouse_code=warehouse_code,
                    actor=actor, reference=reference, progress=progress,
                )
            else:
                raise FileFormatError(
                    f"Unknown format {file_format!r}; use one of {', '.join(FORMAT_CHOICES)}."
                )
    except FileFormatError as exc:
        result.errors.insert(0, RowProblem(0, "", str(exc)))
    if result.written:
        invalidate(Category, Product, Product.extra_categories.through, ProductImage, Variant)
    result.seconds = time.monotonic() - started
    return result


def import_product_records(
    records: list[ProductRecord],
    *,
    dry_run: bool = False,
    actor: Actor = SYSTEM,
    reference: str = "",
) -> ImportResult:
    """Products given as records (the integration API's JSON, say) through the same checks and
    the same writes as a file: one transaction, nothing written on any error, idempotent by
    handle and SKU. Records carry the row numbers their errors are reported under."""
    started = time.monotonic()
    result = ImportResult(format="api", dry_run=dry_run)
    result.rows = sum(len(record.variants) for record in records)
    with query_cache_disabled():
        warehouses = dict(Warehouse.objects.values_list("code", "id"))
        ProductImport(
            records, Problems(), result, warehouses=warehouses, dry_run=dry_run, actor=actor,
            reference=reference, progress=None,
        ).run()
    if result.written:
        invalidate(Category, Product, Product.extra_categories.through, ProductImage, Variant)
    result.seconds = time.monotonic() - started
    return result


def native_kind(header: list[str]) -> str:
    """Which native file this is: products, categories or stock (by its columns)."""
    columns = set(header)
    if "handle" in columns:
        return "products"
    if {"sku", "warehouse", "quantity"} <= columns:
        return "stock"
    if {"sku", "price"} <= columns:
        return "prices"
    if "category" in columns:
        return "categories"
    return "products"


def _import_table(table: Table, file_format: str, result: ImportResult, **options) -> None:
    problems = Problems()
    warehouse_code = options.pop("warehouse_code") or None
    warehouses = dict(Warehouse.objects.values_list("code", "id"))
    if warehouse_code is None:
        warehouse_code = default_warehouse().code
    elif warehouse_code not in warehouses:
        raise FileFormatError(f"There is no warehouse with the code {warehouse_code!r}.")
    rows = _counting(table.rows, result, options.get("progress"))
    if file_format == "native" and native_kind(table.header) != "products":
        result.kind = native_kind(table.header)
        importer = {"stock": _import_stock_rows, "prices": _import_price_rows}.get(
            result.kind, _import_category_rows
        )
        importer(table.header, rows, problems, result, warehouses=warehouses, **options)
        return
    adapter = PRODUCT_FORMATS[file_format](table.header, problems, warehouse_code=warehouse_code)
    started = time.monotonic()
    records = adapter.read(rows)
    result.timings["read"] = time.monotonic() - started
    if result.rows == 0:
        raise FileFormatError("The file has a header row but no data rows.")
    ProductImport(records, problems, result, warehouses=warehouses,
                  columns=(adapter.product_columns, adapter.variant_columns), **options).run()


def _finish(problems: Problems, result: ImportResult) -> None:
    result.errors = sorted(problems.errors, key=lambda p: (p.row, p.column))
    result.warnings = problems.warnings
    result.skipped_rows = problems.skipped_rows


def _max_lengths(model: type[models.Model], names: Iterable[str]) -> dict[str, int]:
    limits = {}
    for name in names:
        model_field = model._meta.get_field(name)
        if isinstance(model_field, models.CharField):
            limits[name] = model_field.max_length
        elif isinstance(model_field, models.TextField):
            limits[name] = MAX_TEXT_LENGTH
    return limits


PRODUCT_LIMITS = _max_lengths(Product, PRODUCT_FIELDS)
VARIANT_LIMITS = _max_lengths(Variant, VARIANT_FIELDS + ["sku"])
SLUG_MAX = Product._meta.get_field("slug").max_length
_SLUG_OK = re.compile(r"^[-\w]+$")


class ProductImport:
    """Plans (and, unless a dry run, writes) one file of products with variants."""

    def __init__(
        self,
        records: list[ProductRecord],
        problems: Problems,
        result: ImportResult,
        *,
        warehouses: dict[str, int],
        dry_run: bool,
        actor: Actor,
        reference: str,
        progress: ProgressCallback | None,
        columns: tuple[dict[str, str], dict[str, str]] = ({}, {}),
    ) -> None:
        self.records = records
        self.product_columns, self.variant_columns = columns
        self.problems = problems
        self.result = result
        self.warehouses = warehouses
        self.dry_run = dry_run
        self.actor = actor
        self.reference = reference
        self.progress = progress
        self.tree = CategoryTree()
        # The plan, filled by run().
        self.slugs: dict[int, str] = {}
        self.product_create: list[tuple[ProductRecord, dict]] = []
        self.product_update: list[tuple[int, dict, set[str]]] = []
        self.product_ids: dict[int, int | None] = {}  # id(record) -> product id (None: new)
        self.extras: dict[int, set[int]] = {}  # id(record) -> wanted extra category keys
        self.images: dict[int, list[tuple[str, str]]] = {}
        self.variant_create: list[tuple[ProductRecord, int, dict, str]] = []
        self.variant_update: list[tuple[int, dict, set[str]]] = []
        self.stock_levels: list[tuple[object, int, int]] = []  # (variant id or sku, wh, qty)
        self.touched: set[int] = set()  # id(record) of products the import changes in any way

    # --- Checking ----------------------------------------------------------------------------

    def _check_lengths(self, row: int, values: dict, limits: dict[str, int],
                       columns: dict[str, str]) -> None:
        for name, limit in limits.items():
            value = values.get(name)
            if isinstance(value, str) and len(value) > limit:
                self.problems.error(
                    row, columns.get(name, name),
                    f"{len(value)} characters is longer than the maximum of {limit}.",
                )
                values.pop(name)

    def _load_existing(self) -> tuple[dict, dict, dict, dict, dict]:
        slugs = list({self.slugs[id(r)] for r in self.records})
        products = {}
        for queryset in key_chunks(Product.objects.all(), "slug", slugs):
            for row in queryset.values("id", "slug", "category_id", *PRODUCT_FIELDS):
                products[row["slug"]] = row
        skus = [v.sku for r in self.records for v in r.variants]
        variants = {}
        for queryset in key_chunks(Variant.objects.all(), "sku", skus):
            for row in queryset.values(
                "id", "sku", "product_id", "product__slug", *VARIANT_FIELDS
            ):
                variants[row["sku"]] = row
        product_ids = [row["id"] for row in products.values()]
        through = Product.extra_categories.through
        extras: dict[int, set[int]] = defaultdict(set)
        images: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for queryset in key_chunks(through.objects.all(), "product", product_ids):
            for product_id, category_id in queryset.values_list("product_id", "category_id"):
                extras[product_id].add(category_id)
        for queryset in key_chunks(ProductImage.objects.all(), "product", product_ids):
            for product_id, url, alt in (
                queryset.exclude(source_url="")
                .order_by("product_id", "position", "id")
                .values_list("product_id", "source_url", "alt_text")
            ):
                images[product_id].append((url, alt))
        stock = {}
        variant_ids = [row["id"] for row in variants.values()]
        for queryset in key_chunks(Stock.objects.all(), "variant", variant_ids):
            for variant_id, warehouse_id, quantity, allocated in queryset.values_list(
                "variant_id", "warehouse_id", "quantity", "quantity_allocated"
            ):
                stock[(variant_id, warehouse_id)] = (quantity, allocated)
        return products, variants, extras, images, stock

    def _category_key(self, record: ProductRecord, names: tuple[str, ...]) -> int | None:
        known = len(self.tree.new_keys)
        try:
            key = self.tree.resolve(names)
        except CategoryPathError as exc:
            self.problems.error(record.row, record.category_column, str(exc))
            return None
        if len(self.tree.new_keys) > known:
            # Created, not refused (a Shopify or WooCommerce file brings its own tree), but
            # said on the first row that names it, so "Clothng" shows in the dry run.
            self.problems.warn(
                record.row, record.category_column,
                f"No category '{self.tree.names_path(key)}' yet: the import creates it.",
            )
        return key

    def plan(self) -> None:
        seen_slugs: dict[str, int] = {}
        for record in self.records:
            slug = make_slug(record.handle, "")
            if not slug or not _SLUG_OK.match(slug) or len(slug) > SLUG_MAX:
                self.problems.error(
                    record.row, "handle",
                    f"{record.handle[:60]!r} cannot be a handle (letters, digits and '-', "
                    f"at most {SLUG_MAX} characters).",
                )
            elif slug in seen_slugs:
                self.problems.error(
                    record.row, "handle",
                    f"{record.handle!r} is the same handle as the product on row "
                    f"{seen_slugs[slug]}.",
                )
            seen_slugs.setdefault(slug, record.row)
            self.slugs[id(record)] = slug
            self._check_lengths(record.row, record.values, PRODUCT_LIMITS,
                                self.product_columns)
        seen_skus: dict[str, int] = {}
        for record in self.records:
            for variant in record.variants:
                if variant.sku in seen_skus:
                    self.problems.error(
                        variant.row, variant.sku_column,
                        f"The SKU {variant.sku!r} is already on row {seen_skus[variant.sku]}.",
                    )
                else:
                    seen_skus[variant.sku] = variant.row
                if len(variant.sku) > VARIANT_LIMITS["sku"]:
                    self.problems.error(
                        variant.row, variant.sku_column,
                        f"A SKU is at most {VARIANT_LIMITS['sku']} characters.",
                    )
                self._check_lengths(variant.row, variant.values, VARIANT_LIMITS,
                                    self.variant_columns)

        products, variants, extras, images, stock = self._load_existing()
        for record in self.records:
            self._plan_product(record, products, extras, images)
        for record in self.records:
            existing_product = products.get(self.slugs[id(record)])
            for position, variant in enumerate(record.variants):
                self._plan_variant(record, position, variant, existing_product, variants, stock)
        self._warn_nothing_to_sell(products, variants, stock)

    def _warn_nothing_to_sell(self, products: dict, variants: dict, stock: dict) -> None:
        """A warning per product that the import would leave published with nothing to sell:
        no active variant has stock available, none is sold without tracking stock or on
        backorder. The storefront shows it out of stock, and the sold-out job unpublishes it
        (once its hour of grace after the import has passed)."""
        by_variant: dict[int, dict[int, tuple[int, int]]] = defaultdict(dict)
        for (variant_id, warehouse_id), levels in stock.items():
            by_variant[variant_id][warehouse_id] = levels
        suspects = []
        for record in self.records:
            existing_product = products.get(self.slugs[id(record)])
            published = record.values.get(
                "is_active", existing_product["is_active"] if existing_product else True
            )
            if not published or not record.variants:
                continue
            if not any(self._sells(v, variants.get(v.sku), by_variant) for v in record.variants):
                suspects.append((record, existing_product))
        # Variants of existing products the file does not mention may still sell: one query for
        # the suspects only (most products of a file have stock).
        mentioned = {v.sku for record, _ in suspects for v in record.variants}
        selling = set()
        ids = [product["id"] for _, product in suspects if product is not None]
        has_stock = Exists(Stock.objects.filter(variant=OuterRef("pk"),
                                                quantity__gt=F("quantity_allocated")))
        for queryset in key_chunks(Variant.objects.filter(is_active=True), "product", ids):
            for product_id, sku in (queryset.filter(sells_without_stock() | has_stock)
                                    .values_list("product_id", "sku")):
                if sku not in mentioned:
                    selling.add(product_id)
        column = self.variant_columns.get("stock", "stock")
        for record, product in suspects:
            if product is not None and product["id"] in selling:
                continue
            name = record.values.get("name") or (product or {}).get("name") or record.handle
            self.problems.warn(
                record.row, column,
                f"'{name}' ({self.slugs[id(record)]}) would have nothing to sell: none of its "
                "active variants has stock, and none is sold without tracking stock or on "
                "backorder. It shows as out of stock, and the sold-out job unpublishes it an "
                "hour after the import.",
            )

    def _sells(self, variant, existing: dict | None, by_variant: dict) -> bool:
        """Whether the variant can be sold after the import (as planned, over every warehouse)."""
        merged = {**(existing or {}), **variant.values}
        if not merged.get("is_active", True):
            return False
        if not merged.get("track_inventory", True) or merged.get("allow_backorder", False):
            return True
        levels = dict(by_variant.get(existing["id"], {})) if existing else {}
        for code, quantity in variant.stock.items():
            warehouse_id = self.warehouses.get(code)
            if warehouse_id is not None:
                levels[warehouse_id] = (quantity, levels.get(warehouse_id, (0, 0))[1])
        return any(quantity > allocated for quantity, allocated in levels.values())

    def _plan_product(self, record, products, extras, images) -> None:
        slug = self.slugs[id(record)]
        existing = products.get(slug)
        values = {k: v for k, v in record.values.items() if k in PRODUCT_FIELDS}
        category_key = None
        if record.category is not None:
            category_key = self._category_key(record, record.category)
        elif (
            not record.clear_category
            and values.get("google_category_id") in self.tree.by_google_id
            and (existing is None or existing["category_id"] is None)
        ):
            # No category path, but a known Google category: file the product there.
            category_key = self.tree.by_google_id[values["google_category_id"]]
        extra_keys = None
        if record.extra_categories is not None:
            extra_keys = set()
            for names in record.extra_categories:
                key = self._category_key(record, names)
                if key is not None:
                    extra_keys.add(key)
        action = "unchanged"
        if existing is None:
            if not record.variants:
                self.problems.error(record.row, "sku", "A new product needs at least one variant.")
            self.product_create.append((record, {**values, "category_key": category_key}))
            self.product_ids[id(record)] = None
            action = "created"
            if extra_keys:
                self.extras[id(record)] = extra_keys
            if record.images:
                self.images[id(record)] = record.images
        else:
            product_id = existing["id"]
            self.product_ids[id(record)] = product_id
            changed = {name for name, value in values.items() if existing[name] != value}
            if record.clear_category and existing["category_id"] is not None:
                changed.add("category")
            if category_key is not None and category_key != existing["category_id"]:
                changed.add("category")
            merged = {**existing, **values}
            merged["category_key"] = (
                category_key if category_key is not None
                else (None if record.clear_category else existing["category_id"])
            )
            if extra_keys is not None and extra_keys != extras.get(product_id, set()):
                self.extras[id(record)] = extra_keys
                changed.add("extra categories")
            if record.images is not None and record.images != images.get(product_id, []):
                self.images[id(record)] = record.images
                changed.add("images")
            if changed:
                self.product_update.append((product_id, merged, changed))
                action = "updated"
        if action != "unchanged":
            self.touched.add(id(record))
        self.result.count("products", action)
        record.values["_action"] = action

    def _plan_variant(self, record, position, variant, existing_product, variants, stock) -> None:
        existing = variants.get(variant.sku)
        values = {k: v for k, v in variant.values.items() if k in VARIANT_FIELDS}
        if existing is not None and (
            existing_product is None or existing["product_id"] != existing_product["id"]
        ):
            self.problems.error(
                variant.row, variant.sku_column,
                f"The SKU {variant.sku!r} belongs to another product "
                f"({existing['product__slug']!r}).",
            )
            return
        merged = {**existing, **values} if existing else values
        price = merged.get("price")
        compare = merged.get("compare_at_price")
        if existing is None and price is None:
            return  # the adapter reported the missing or bad price
        if price is not None and compare is not None and compare < price:
            self.problems.error(
                variant.row, "compare_at_price",
                f"The compare-at price {compare} is below the price {price}.",
            )
        if existing is None:
            self.variant_create.append((record, position, values, variant.sku))
            action = "created"
            stock_key: object = variant.sku
        else:
            changed = {name for name, value in values.items() if existing[name] != value}
            action = "unchanged"
            if changed:
                self.variant_update.append((existing["id"], merged, changed))
                action = "updated"
            stock_key = existing["id"]
        if action != "unchanged":
            self.touched.add(id(record))
        self.result.count("variants", action)
        for code, quantity in variant.stock.items():
            column = f"stock:{code}"
            warehouse_id = self.warehouses.get(code)
            if warehouse_id is None:
                self.problems.error(variant.row, column, f"There is no warehouse {code!r}.")
                continue
            if quantity < 0:
                self.problems.error(variant.row, column, "A stock level cannot be negative.")
                continue
            current, allocated = (
                stock.get((existing["id"], warehouse_id), (None, 0)) if existing else (None, 0)
            )
            if current == quantity:
                self.result.count("stock levels", "unchanged")
                continue
            if quantity < allocated:
                self.problems.error(
                    variant.row, column,
                    f"{quantity} is below the {allocated} units allocated to orders.",
                )
                continue
            self.stock_levels.append((stock_key, warehouse_id, quantity))
            self.touched.add(id(record))
            self.result.count("stock levels", "set")
        if len(self.result.preview) < PREVIEW_ROWS:
            self.result.preview.append(
                {
                    "row": variant.row,
                    "handle": record.handle,
                    "product": record.values.get("name", ""),
                    "product_action": record.values.get("_action", ""),
                    "sku": variant.sku,
                    "variant": values.get("name", ""),
                    "price": str(values.get("price", "")),
                    "variant_action": action,
                }
            )

    # --- Writing -----------------------------------------------------------------------------

    def run(self) -> None:
        timings = self.result.timings
        started = time.monotonic()
        self.plan()
        self.result.count("categories", "created", len(self.tree.new_keys))
        _finish(self.problems, self.result)
        timings["check"] = time.monotonic() - started
        if self.result.errors or self.dry_run:
            return
        if self.progress:
            self.progress("writing", 0, self.result.rows)
        with transaction.atomic():
            started = time.monotonic()
            self.tree.write()
            self._write_products()
            self._write_variants()
            timings["write catalog"] = time.monotonic() - started
            started = time.monotonic()
            self._write_stock()
            self._mark_imported()
            # Variants went in by COPY (no signals): the price range and stock flag of the
            # products that were there before (new ones were written with theirs).
            created = {id(record) for record, _ in self.product_create}
            refresh_listings(pk for key, pk in self.product_ids.items()
                             if pk is not None and key not in created)
            timings["write stock"] = time.monotonic() - started
        self.result.written = True

    def _category_id(self, key: int | None) -> int | None:
        return self.tree.id_of(key) if key is not None else None

    def _mark_imported(self) -> None:
        """``imported_at`` and ``import_reference`` on the products changed only through their
        variants or stock (created and updated products got them with their own write)."""
        written = {id(record) for record, _ in self.product_create}
        written |= {id(record) for record in self.records
                    if record.values.get("_action") == "updated"}
        ids = sorted(self.product_ids[key] for key in self.touched - written)
        for queryset in key_chunks(Product.objects.all(), "id", ids):
            queryset.update(imported_at=self.imported_at, import_reference=self.reference[:120])

    def _write_products(self) -> None:
        now = self.imported_at = timezone.now()
        reference = self.reference[:120]
        new_rows = []
        for record, values in self.product_create:
            values = dict(values)
            category_key = values.pop("category_key")
            values["slug"] = self.slugs[id(record)]
            values["category_id"] = self._category_id(category_key)
            values["imported_at"], values["import_reference"] = now, reference
            values.update(self._listing_columns(record))
            new_rows.append(values)
        insert_rows(Product, new_rows)
        new_ids = self._ids_by(Product, "slug", [row["slug"] for row in new_rows])
        for record, _values in self.product_create:
            self.product_ids[id(record)] = new_ids[self.slugs[id(record)]]
        if self.progress and new_rows:
            self.progress("writing", 0, self.result.rows)
        updates = []
        fields: set[str] = set()
        for product_id, merged, changed in self.product_update:
            product = Product(pk=product_id, updated_at=now, imported_at=now,
                              import_reference=reference)
            for name in PRODUCT_FIELDS:
                setattr(product, name, merged[name])
            product.category_id = self._category_id(merged["category_key"])
            updates.append(product)
            fields |= changed
        fields -= {"extra categories", "images"}
        if updates:
            update_rows(updates, [*sorted(fields), "updated_at", "imported_at", "import_reference"])
        through = Product.extra_categories.through
        changed_ids = [self.product_ids[key] for key in self.extras]
        for chunk in chunked(changed_ids):
            through.objects.filter(product_id__in=chunk).delete()
        insert_rows(
            through,
            (
                {"product_id": self.product_ids[key], "category_id": self.tree.id_of(cat)}
                for key, categories in self.extras.items()
                for cat in sorted(categories)
            ),
        )
        image_ids = [self.product_ids[key] for key in self.images]
        for chunk in chunked(image_ids):
            ProductImage.objects.filter(product_id__in=chunk).exclude(source_url="").delete()
        written = insert_rows(
            ProductImage,
            (
                {
                    "product_id": self.product_ids[key],
                    "source_url": url[:1000],
                    "alt_text": alt[:255],
                    "position": position,
                }
                for key, images in self.images.items()
                for position, (url, alt) in enumerate(images)
            ),
        )
        self.result.count("images", "written", written)

    def _listing_columns(self, record) -> dict:
        """A new product's listing columns, as ``refresh_listings`` would compute them once its
        variants and stock are written (all of them come from this file: a SKU of another
        product is an error): the price range of its active variants, and whether one of them
        sells (``_sells``). Written with the product, so 25k new products are not written a
        second time (each write of a product row updates its search indexes)."""
        prices = [variant.values["price"] for variant in record.variants
                  if variant.values.get("is_active", True)
                  and variant.values.get("price") is not None]
        return {
            "price_min": min(prices, default=None), "price_max": max(prices, default=None),
            "is_in_stock": any(self._sells(variant, None, {}) for variant in record.variants),
        }

    @staticmethod
    def _ids_by(model: type[models.Model], key: str, values: list[str]) -> dict[str, int]:
        ids: dict[str, int] = {}
        for queryset in key_chunks(model.objects.all(), key, values):
            ids.update(queryset.values_list(key, "id"))
        return ids

    def _write_variants(self) -> None:
        now = timezone.now()
        for start in range(0, len(self.variant_create), 10 * BATCH):
            insert_rows(
                Variant,
                (
                    {
                        **values,
                        "product_id": self.product_ids[id(record)],
                        "sku": sku,
                        "position": position,
                    }
                    for record, position, values, sku in self.variant_create[
                        start:start + 10 * BATCH
                    ]
                ),
            )
            if self.progress:
                self.progress("writing", start + 10 * BATCH, self.result.rows)
        self.variant_ids = self._ids_by(Variant, "sku", [sku for *_, sku in self.variant_create])
        updates = []
        fields: set[str] = set()
        for variant_id, merged, changed in self.variant_update:
            variant = Variant(pk=variant_id, updated_at=now)
            for name in VARIANT_FIELDS:
                setattr(variant, name, merged[name])
            updates.append(variant)
            fields |= changed
        if updates:
            update_rows(updates, [*sorted(fields), "updated_at"])

    def _write_stock(self) -> None:
        levels = [
            StockLevel(
                variant_id=key if isinstance(key, int) else self.variant_ids[key],
                warehouse_id=warehouse_id,
                quantity=quantity,
            )
            for key, warehouse_id, quantity in self.stock_levels
        ]
        for chunk in chunked(levels, 5000):
            bulk_set_stock_levels(
                chunk, reason=MovementReason.IMPORT, actor=self.actor, reference=self.reference,
                refresh_listings=False,  # once for the whole file, after the stock
            )


# --- Native categories and stock files -----------------------------------------------------------


def _import_category_rows(header, rows, problems, result, *, dry_run, progress, **_) -> None:
    """Native categories file: category (names path), description, active, position, google id."""
    if "category" not in header:
        raise FileFormatError("A categories file needs a 'category' column (names 'A > B').")
    index = {name: i for i, name in enumerate(header)}
    tree = CategoryTree()
    details = {
        row["id"]: row
        for row in Category.objects.values(
            "id", "description", "is_active", "position", "google_category_id"
        )
    }
    updates: dict[int, dict] = {}
    seen: dict[int, int] = {}
    for row, cells in rows:
        def get(column: str, cells=cells) -> str:
            i = index.get(column)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        try:
            key = tree.resolve(split_category_path(get("category")))
        except CategoryPathError as exc:
            problems.error(row, "category", str(exc))
            continue
        if key in seen:
            problems.error(row, "category", f"The same category is on row {seen[key]}.")
            continue
        seen[key] = row
        wanted = {}
        try:
            if "description" in index:
                wanted["description"] = get("description")
            if "active" in index and get("active"):
                wanted["is_active"] = parse_bool(get("active"))
            if "position" in index and get("position"):
                wanted["position"] = parse_int(get("position"), what="position")
            if "google_category_id" in index:
                text = get("google_category_id")
                wanted["google_category_id"] = parse_int(text, what="id") if text else None
        except ValueError as exc:
            problems.error(row, "", str(exc))
            continue
        if len(wanted.get("description", "")) > MAX_TEXT_LENGTH:
            problems.error(row, "description", f"longer than {MAX_TEXT_LENGTH} characters")
            continue
        gid = wanted.get("google_category_id")
        if gid is not None and tree.by_google_id.get(gid, key) != key:
            problems.error(row, "google_category_id", f"{gid} is already another category's id.")
            continue
        if key < 0:
            updates[key] = wanted
            result.count("categories", "created")
            continue
        current = details[key]
        changed = {k: v for k, v in wanted.items() if current[k] != v}
        if changed:
            updates[key] = {**current, **changed}
            result.count("categories", "updated")
        else:
            result.count("categories", "unchanged")
    _finish(problems, result)
    if result.errors or dry_run:
        return
    for key, values in updates.items():
        if "position" in values:  # siblings are ordered by position: renumber the tree
            tree.set_position(key, values["position"])
    with transaction.atomic():
        tree.write()
        objects = []
        for key, values in updates.items():
            obj = Category(pk=tree.id_of(key))
            for name in ("description", "is_active", "position", "google_category_id"):
                setattr(obj, name, values.get(name, Category._meta.get_field(name).get_default()))
            objects.append(obj)
        Category.objects.bulk_update(
            objects, ["description", "is_active", "position", "google_category_id"],
            batch_size=BATCH,
        )
    result.written = True


def _import_stock_rows(
    header, rows, problems, result, *, warehouses, dry_run, actor, reference, progress
) -> None:
    """Native stock file: sku, warehouse (code), quantity on hand."""
    index = {name: i for i, name in enumerate(header)}
    wanted: dict[tuple[str, int], tuple[int, int]] = {}
    for row, cells in rows:
        def get(column: str, cells=cells) -> str:
            i = index.get(column)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        sku, code = get("sku"), get("warehouse")
        if not sku:
            problems.error(row, "sku", "A SKU is required.")
            continue
        warehouse_id = warehouses.get(code)
        if warehouse_id is None:
            problems.error(row, "warehouse", f"There is no warehouse {code!r}.")
            continue
        try:
            quantity = parse_int(get("quantity"), what="quantity")
        except ValueError as exc:
            problems.error(row, "quantity", str(exc))
            continue
        if quantity < 0:
            problems.error(row, "quantity", "A stock level cannot be negative.")
            continue
        if (sku, warehouse_id) in wanted:
            first = wanted[sku, warehouse_id][1]
            problems.error(row, "sku", f"{sku} in {code} is already on row {first}.")
            continue
        wanted[(sku, warehouse_id)] = (quantity, row)
    skus = list({sku for sku, _ in wanted})
    variant_ids = {}
    for queryset in key_chunks(Variant.objects.all(), "sku", skus):
        variant_ids.update(queryset.values_list("sku", "id"))
    current = {}
    for queryset in key_chunks(Stock.objects.all(), "variant", list(variant_ids.values())):
        for variant_id, warehouse_id, quantity, allocated in queryset.values_list(
            "variant_id", "warehouse_id", "quantity", "quantity_allocated"
        ):
            current[(variant_id, warehouse_id)] = (quantity, allocated)
    levels = []
    for (sku, warehouse_id), (quantity, row) in wanted.items():
        variant_id = variant_ids.get(sku)
        if variant_id is None:
            problems.error(row, "sku", f"No variant has the SKU {sku!r}.")
            continue
        on_hand, allocated = current.get((variant_id, warehouse_id), (None, 0))
        if on_hand == quantity:
            result.count("stock levels", "unchanged")
            continue
        if quantity < allocated:
            problems.error(row, "quantity", f"{quantity} is below the {allocated} allocated.")
            continue
        levels.append(StockLevel(variant_id, warehouse_id, quantity))
        result.count("stock levels", "set")
    _finish(problems, result)
    if result.errors or dry_run:
        return
    with transaction.atomic():
        for chunk in chunked(levels, 5000):
            bulk_set_stock_levels(
                chunk, reason=MovementReason.IMPORT, actor=actor, reference=reference
            )
    result.written = True


def _import_price_rows(
    header, rows, problems, result, *, warehouses, dry_run, actor, reference, progress
) -> None:
    """Native prices file: sku, price, and optionally compare_at_price and cost_price (an empty
    cell clears them; a missing column leaves them as they are)."""
    from backoffice.catalog.services import (
        KEEP,
        PriceChangeError,
        VariantPrices,
        set_variant_prices,
    )

    index = {name: i for i, name in enumerate(header)}
    places = currency_exponent()
    wanted: dict[str, tuple[dict, int]] = {}
    for row, cells in rows:
        def get(column: str, cells=cells) -> str:
            i = index.get(column)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        sku = get("sku")
        if not sku:
            problems.error(row, "sku", "A SKU is required.")
            continue
        if sku in wanted:
            problems.error(row, "sku", f"{sku} is already on row {wanted[sku][1]}.")
            continue
        values, ok = {}, True
        for column in ("price", "compare_at_price", "cost_price"):
            if column not in index:
                values[column] = KEEP
                continue
            text = get(column)
            if not text:
                if column == "price":
                    problems.error(row, column, "A price is required.")
                    ok = False
                values[column] = None
                continue
            try:
                values[column] = parse_money(text, places)
            except ValueError as exc:
                problems.error(row, column, str(exc))
                ok = False
        compare_at = values.get("compare_at_price")
        if ok and compare_at not in (None, KEEP) and compare_at < values["price"]:
            problems.error(row, "compare_at_price",
                           f"{compare_at} is below the price {values['price']}.")
            ok = False
        if ok:
            wanted[sku] = (values, row)
    current = {}
    for queryset in key_chunks(Variant.objects.all(), "sku", list(wanted)):
        for pk, sku, price, compare_at, cost in queryset.values_list(
            "pk", "sku", "price", "compare_at_price", "cost_price"
        ):
            current[sku] = (pk, price, compare_at, cost)
    prices = []
    for sku, (values, row) in wanted.items():
        if sku not in current:
            problems.error(row, "sku", f"No variant has the SKU {sku!r}.")
            continue
        pk, price, compare_at, cost = current[sku]
        new_compare = compare_at if values["compare_at_price"] is KEEP else values[
            "compare_at_price"]
        new_cost = cost if values["cost_price"] is KEEP else values["cost_price"]
        if new_compare is not None and new_compare < values["price"]:
            problems.error(row, "price", f"{values['price']} is above the compare-at price "
                                         f"{new_compare} the variant keeps.")
            continue
        if (values["price"], new_compare, new_cost) == (price, compare_at, cost):
            result.count("prices", "unchanged")
            continue
        # KEEP goes to the service as it is: it reads the kept value under the row lock.
        prices.append(VariantPrices(pk, values["price"], values["compare_at_price"],
                                    values["cost_price"]))
        result.count("prices", "updated")
    _finish(problems, result)
    if result.errors or dry_run:
        return
    try:
        set_variant_prices(prices)
    except PriceChangeError as exc:  # a compare-at price changed by someone since the check
        problems.error(0, "", str(exc))
        _finish(problems, result)
        return
    result.written = True


# --- Google Product Taxonomy ---------------------------------------------------------------------

_TAXONOMY_LINE = re.compile(r"^(\d+)\s+-\s+(.+)$")


def _import_taxonomy(stream: BinaryIO, result: ImportResult, *, dry_run: bool, progress) -> None:
    """``taxonomy-with-ids.<locale>.txt``: "ID - A > B > C" lines, matched by Google id."""
    problems = Problems()
    raw = stream.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"The file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} cannot be read)."
        ) from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _TAXONOMY_LINE.match(line)
        if not match:
            problems.error(
                number, "line", f"Expected 'ID - Category > Subcategory', not {line[:60]!r}."
            )
            continue
        names = split_category_path(match.group(2))
        entries.append((len(names), number, int(match.group(1)), names))
        result.rows += 1
    if not entries and not problems.errors:
        raise FileFormatError(
            "The file has no taxonomy lines ('ID - Category > Subcategory'); is it the "
            "taxonomy-with-ids file?"
        )
    tree = CategoryTree()
    by_names: dict[tuple[str, ...], int] = {}
    seen_ids: dict[int, int] = {}
    for _depth, number, google_id, names in sorted(entries, key=lambda e: (e[0], e[1])):
        if google_id in seen_ids:
            problems.error(
                number, "ID", f"The id {google_id} is already on line {seen_ids[google_id]}."
            )
            continue
        seen_ids[google_id] = number
        try:
            if any(not name for name in names):
                raise CategoryPathError("a category path has an empty level")
            parent_key = None
            if len(names) > 1:
                parent_key = by_names.get(names[:-1])
                if parent_key is None:
                    parent_key = tree.resolve(names[:-1])
            key = tree.by_google_id.get(google_id)
            if key is not None:
                changed = tree.rename(key, names[-1])
                result.count("categories", "updated" if changed else "unchanged")
            else:
                key = tree.find_child(parent_key, names[-1])
                if key is not None and tree.nodes[key].google_category_id is None:
                    tree.set_google_id(key, google_id)
                    if key > 0:
                        result.count("categories", "updated")
                else:
                    key = tree.add_child(parent_key, names[-1], google_category_id=google_id)
        except CategoryPathError as exc:
            problems.error(number, "line", str(exc))
            continue
        by_names[names] = key
    result.count("categories", "created", len(tree.new_keys))
    _finish(problems, result)
    if result.errors or dry_run:
        return
    with transaction.atomic():
        tree.write()
    result.written = True


# --- Starting jobs --------------------------------------------------------------------------------


def start_import_job(job, *, actor: Actor) -> bool:
    """Run a checked file (its dry run found no errors) as a job. Needs ``imports.run_import``
    (which writes what the file holds, stock levels included) and is written to the audit trail.
    Only one request gets the job from "checked" to "importing" (a double click, two tabs):
    False, nothing queued, for the others."""
    from backoffice.audit.models import AuditAction
    from backoffice.audit.services import record
    from backoffice.imports.models import ImportJob, ImportStatus
    from backoffice.imports.tasks import enqueue_import
    from backoffice.permissions import RUN_IMPORT, require

    require(actor, RUN_IMPORT)
    if not job.dry_run_passed:
        return False
    with transaction.atomic():
        if not ImportJob.objects.filter(pk=job.pk, status=ImportStatus.VALIDATED).update(
            status=ImportStatus.IMPORTING
        ):
            return False
        job.status = ImportStatus.IMPORTING
        rows = (job.dry_run_result or {}).get("rows") or 0
        record(actor, AuditAction.IMPORT_STARTED, job,
               f"Import of {job.file.name.rpartition('/')[2]} started ({rows} rows checked).",
               data={"rows": rows, "kind": job.kind,
                     "counts": (job.dry_run_result or {}).get("counts") or {}})
        enqueue_import(job)
    return True


def start_export_job(job, *, actor: Actor):
    """Save a new export and queue it: needs ``imports.run_export``."""
    from backoffice.imports.tasks import enqueue_export
    from backoffice.permissions import RUN_EXPORT, require

    require(actor, RUN_EXPORT)
    with transaction.atomic():
        job.save()
        enqueue_export(job)
    return job
