"""The storefront's JSON of a product, kept (``StorefrontAnswer``): a listing page joins kept texts
instead of reading, typing and serialising two dozen products and their variants per request.

- ``summaries(rows)`` / ``detail(product_id, kept)``: the kept texts, built for the products
  that have none (first read, or after a write made them stale) and kept for the next read.
- ``forget(...)``: every write that changes what a product's answer shows calls it (catalog
  services, the catalog signals, stock changes that move a variant between in stock, low and
  out, reviews). It runs inside the writer's transaction, so a reader never keeps what the
  writer's commit made stale: ``generation`` moves with every forget, and a build writes back
  only where it has not moved since the build read it (``_keep``).
- ``build(ids)``: the documents from the live rows (the same selectors the answers always used);
  ``manage.py build_listings`` and the nightly job rebuild them all.

The JSON is the API's: ``ProductSummary`` and ``ProductOut`` in ``shop_api.routers.catalog``,
with the key order of those schemas; a test keeps the texts equal to what validating the same
rows with the schemas and serialising them gives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal

from django.db import connection
from django.db.models import F, Q, QuerySet

from backoffice.catalog.models import Category, Product, ProductImage, StorefrontAnswer, Variant
from backoffice.inventory.selectors import with_variant_stock_grouped
from backoffice.money import money_text

CHUNK = 500  # products a build reads and writes at once

# What the storefront shows of a product and of its variants: nothing else is read (costs,
# barcodes, warehouse numbers stay in the database).
PRODUCT_VALUES = (
    "id", "name", "slug", "brand", "price_min", "price_max", "is_in_stock", "is_featured",
    "rating_average", "rating_count", "description", "attributes", "tags", "category_id",
    "seo_title", "seo_description",
)
VARIANT_VALUES = (
    "product_id", "sku", "name", "option_values", "price", "compare_at_price", "stock_status",
)


def _money_or_none(amount: Decimal | None) -> str | None:
    return None if amount is None else money_text(amount)


def discount(price: Decimal, compare_at: Decimal | None) -> Decimal | None:
    """The percentage off a compare-at price, two decimals; None when there is no discount."""
    if compare_at is None or compare_at <= price or not compare_at:
        return None
    return ((compare_at - price) * 100 / compare_at).quantize(Decimal("0.01"))


def image_url(file_name: str, source_url: str) -> str:
    if file_name:
        from django.core.files.storage import default_storage

        return default_storage.url(file_name)
    return source_url


def _variant(row: dict) -> dict:
    """A variant row (``VARIANT_VALUES``) as the API shows it."""
    percentage = discount(row["price"], row["compare_at_price"])
    return {
        "sku": row["sku"], "name": row["name"],
        "options": {str(k): str(v) for k, v in (row["option_values"] or {}).items()},
        "price": money_text(row["price"]),
        "compare_at_price": _money_or_none(row["compare_at_price"]),
        "discount_percentage": None if percentage is None else str(percentage),
        "availability": row["stock_status"],
    }


def category_ref(category: dict) -> dict:
    return {"name": category["name"], "slug": category["slug"], "path": category["path"]}


def _breadcrumbs(category_ids: set[int]) -> dict[int, list[dict]]:
    """Each category's ancestors and itself, root first (two queries, whatever the number)."""
    if not category_ids:
        return {}
    nodes = list(Category.objects.filter(pk__in=category_ids).values("id", "tree_id", "lft",
                                                                     "rght"))
    above = Q()
    for node in nodes:
        above |= Q(tree_id=node["tree_id"], lft__lte=node["lft"], rght__gte=node["rght"])
    ancestors = list(Category.objects.filter(above).order_by("tree_id", "lft")
                     .values("id", "name", "slug", "path", "tree_id", "lft", "rght"))
    return {
        node["id"]: [
            category_ref(a) for a in ancestors
            if a["tree_id"] == node["tree_id"] and a["lft"] <= node["lft"]
            and a["rght"] >= node["rght"]
        ]
        for node in nodes
    }


def _documents(ids: list[int]) -> dict[int, tuple[str, str]]:
    """``{product id: (summary JSON, detail JSON)}`` from the live rows (five queries)."""
    products = list(Product.objects.filter(pk__in=ids).values(*PRODUCT_VALUES))
    variants: dict[int, list[dict]] = {row["id"]: [] for row in products}
    active = Variant.objects.filter(is_active=True, product_id__in=ids)
    for row in (with_variant_stock_grouped(active).order_by("position", "id")
                .values(*VARIANT_VALUES)):
        variants[row["product_id"]].append(_variant(row))
    images: dict[int, list[tuple[str, str, str]]] = {row["id"]: [] for row in products}
    for product_id, *image in (ProductImage.objects.filter(product_id__in=ids)
                               .order_by("product_id", "position", "id")
                               .values_list("product_id", "image", "source_url", "alt_text")):
        images[product_id].append(image)
    trails = _breadcrumbs({row["category_id"] for row in products if row["category_id"]})
    documents = {}
    for row in products:
        shown = [{"url": image_url(file_name, source_url), "alt": alt or row["name"]}
                 for file_name, source_url, alt in images[row["id"]]]
        summary = {
            "slug": row["slug"], "name": row["name"], "brand": row["brand"],
            "price_min": _money_or_none(row["price_min"]),
            "price_max": _money_or_none(row["price_max"]),
            "in_stock": row["is_in_stock"], "featured": row["is_featured"],
            "rating_average": str(row["rating_average"]), "rating_count": row["rating_count"],
            "image": shown[0] if shown else None, "variants": variants[row["id"]],
        }
        trail = trails.get(row["category_id"], [])
        detail = {
            **summary,
            "description": row["description"], "attributes": row["attributes"],
            "tags": row["tags"], "category": trail[-1] if trail else None,
            "breadcrumbs": trail, "images": shown,
            "seo_title": row["seo_title"] or row["name"],
            "seo_description": row["seo_description"],
        }
        documents[row["id"]] = (json.dumps(summary), json.dumps(detail))
    return documents


_KEEP_SQL = """
INSERT INTO catalog_storefrontanswer (product_id, summary, detail, generation)
VALUES {rows}
ON CONFLICT (product_id) DO UPDATE SET summary = excluded.summary, detail = excluded.detail
WHERE catalog_storefrontanswer.generation = excluded.generation
"""


def build(product_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """The documents of these products (``{id: (summary, detail)}``; an unknown id has none),
    from the live rows, kept for the next read unless a write made them stale meanwhile."""
    from cachalot.api import invalidate

    ids = sorted(set(product_ids))
    built: dict[int, tuple[str, str]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        # A row for every product first, so that a write's forget, from here on, moves its
        # generation (a forget of a product without a row would change nothing).
        StorefrontAnswer.objects.bulk_create(
            [StorefrontAnswer(product_id=pk) for pk in chunk], ignore_conflicts=True
        )
        generations = dict(StorefrontAnswer.objects.filter(product_id__in=chunk)
                           .values_list("product_id", "generation"))
        documents = _documents([pk for pk in chunk if pk in generations])
        if documents:
            with connection.cursor() as cursor:
                cursor.execute(
                    _KEEP_SQL.format(rows=", ".join(["(%s, %s, %s, %s)"] * len(documents))),
                    [value for pk, (summary, detail) in sorted(documents.items())  # key order
                     for value in (pk, summary, detail, generations[pk])],
                )
            invalidate(StorefrontAnswer)  # raw SQL: cachalot drops its cached reads of the table
        built.update(documents)
    return built


def forget(products: Iterable[int] | QuerySet | None = None) -> None:
    """Make the kept documents of these products stale (ids, or a queryset of ``pk`` values
    such as ``Variant.objects.filter(...).values("product_id")``); of every product when None."""
    kept = StorefrontAnswer.objects.all()
    stale = {"summary": None, "detail": None, "generation": F("generation") + 1}
    if products is None:
        kept.update(**stale)
    elif isinstance(products, QuerySet):
        kept.filter(product_id__in=products).update(**stale)
    else:
        ids = sorted(set(products))
        for start in range(0, len(ids), 2000):
            kept.filter(product_id__in=ids[start:start + 2000]).update(**stale)


def forget_variants(variant_ids: Iterable[int]) -> None:
    ids = sorted(set(variant_ids))
    if ids:
        forget(Variant.objects.filter(pk__in=ids).values("product_id"))


def summaries(rows: list[tuple[int, str | None]]) -> list[str]:
    """The summary texts of ``(product id, kept summary)`` rows, in order, building those not
    kept."""
    missing = [pk for pk, summary in rows if summary is None]
    built = build(missing) if missing else {}
    texts = [summary if summary is not None else built.get(pk, (None,))[0] for pk, summary in rows]
    return [text for text in texts if text is not None]  # a product deleted meanwhile: gone


def detail(product_id: int, kept: str | None) -> str | None:
    """The detail text of a product read with its kept one (None if deleted meanwhile)."""
    if kept is not None:
        return kept
    return build([product_id]).get(product_id, (None, None))[1]


def rebuild_all() -> int:
    """Build and keep every product's documents, over what is kept (after a change of how
    they are written, or of the media storage's URLs; nightly, as a safety net). Returns the
    products built."""
    return len(build(Product.objects.order_by("pk").values_list("pk", flat=True)))
