"""Writes to the catalog that the admin, the API, imports and jobs share.

Each write runs in a transaction, even a single UPDATE: outside one, cachalot marks the table
changed *before* the statement runs, so a reader in between could cache the old rows under the new
mark (and the storefront's response cache, keyed by those marks, with them); inside one, the mark
changes after the commit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone
from django.utils.translation import ngettext

from backoffice.bulk import key_chunks
from backoffice.catalog import documents
from backoffice.catalog.models import (
    CATEGORY_PATH_SEPARATOR,
    Category,
    Product,
    Variant,
    sells_without_stock,
)
from backoffice.money import quantize

logger = logging.getLogger(__name__)


def rewrite_descendant_paths(category: Category, *, old_prefix: str) -> int:
    """After ``category``'s path changed from ``old_prefix``, fix its descendants in one UPDATE."""
    prefix_length = len(old_prefix) + len(CATEGORY_PATH_SEPARATOR)
    category.refresh_from_db(fields=["tree_id", "lft", "rght"])
    return Category.objects.filter(
        tree_id=category.tree_id, lft__gt=category.lft, rght__lt=category.rght
    ).update(
        path=Concat(
            Value(category.path + CATEGORY_PATH_SEPARATOR), Substr(F("path"), prefix_length + 1)
        )
    )


class CategoryMoveError(ValueError):
    """A move that would break the tree; nothing was changed."""


@transaction.atomic
def move_category(
    *, category: Category, parent: Category | None, position: int | None = None
) -> Category:
    """Move ``category`` and its subtree under ``parent`` (``None``: make it a root).

    mptt's ``save()`` moves the node when its parent changes and re-sorts it among its new
    siblings by position and name; ``Category.save`` then rewrites the paths below it.
    """
    if parent is not None and (parent.pk == category.pk or parent.is_descendant_of(category)):
        raise CategoryMoveError("A category cannot move under itself or its own descendants.")
    siblings = Category.objects.filter(parent=parent, slug=category.slug).exclude(pk=category.pk)
    if siblings.exists():
        where = parent.name if parent else "the top level"
        raise CategoryMoveError(f"{where} already has a category with the slug {category.slug!r}.")
    if position is not None:
        category.position = position
    category.parent = parent
    category.save()
    category.refresh_from_db()
    return category


class PriceChangeError(ValueError):
    """A price change that would leave a price negative; nothing was changed."""


@transaction.atomic
def change_prices_by_percentage(
    *,
    product_ids: Iterable[int] | QuerySet,
    percentage: Decimal,
    include_compare_at: bool = False,
) -> int:
    """Raise (positive) or cut (negative) every variant price of the products by ``percentage``.

    Each new price is rounded half-up to the store currency's places. A compare-at price is kept
    (or, with ``include_compare_at``, changed by the same percentage), and raised to the new price
    when it would fall below it. A percentage below -100 is refused. Returns the variants changed.
    """
    percentage = Decimal(percentage)
    if not percentage.is_finite() or percentage < -100:
        raise PriceChangeError(f"A change of {percentage}% would make prices negative.")
    factor = 1 + percentage / 100
    variants = list(
        Variant.objects.select_for_update().filter(product_id__in=product_ids).order_by("pk")
    )
    changed = []
    for variant in variants:
        new_price = quantize(variant.price * factor)
        compare_at = variant.compare_at_price
        if compare_at is not None and include_compare_at:
            compare_at = quantize(compare_at * factor)
        if compare_at is not None and compare_at < new_price:
            compare_at = new_price
        if new_price == variant.price and compare_at == variant.compare_at_price:
            continue
        variant.price, variant.compare_at_price = new_price, compare_at
        variant.updated_at = timezone.now()  # bulk_update does not apply auto_now
        changed.append(variant)
    Variant.objects.bulk_update(
        changed, ["price", "compare_at_price", "updated_at"], batch_size=1000
    )
    refresh_listings({variant.product_id for variant in changed})
    return len(changed)


KEEP = object()  # a compare-at or cost price left as it is


@dataclass(frozen=True)
class VariantPrices:
    """New prices for one variant; ``None`` clears compare-at or cost, ``KEEP`` leaves it."""

    variant_id: int
    price: Decimal
    compare_at_price: Decimal | None | object = KEEP
    cost_price: Decimal | None | object = KEEP


@transaction.atomic
def set_variant_prices(prices: Iterable[VariantPrices]) -> int:
    """Set many variants' prices at once (a prices file, an ERP): rows locked in key order, one
    bulk write, the products' listing columns refreshed. A compare-at price below the price is
    refused (``PriceChangeError``) and nothing is written. Returns the variants changed."""
    wanted = {p.variant_id: p for p in prices}
    changed = []
    locked = (
        variant
        for queryset in key_chunks(Variant.objects.select_for_update(), "id", sorted(wanted))
        for variant in queryset.order_by("pk")
    )
    for variant in locked:
        new = wanted[variant.pk]
        compare_at = (variant.compare_at_price if new.compare_at_price is KEEP
                      else new.compare_at_price)
        cost = variant.cost_price if new.cost_price is KEEP else new.cost_price
        if new.price < 0 or (cost is not None and cost < 0):
            raise PriceChangeError(f"{variant.sku}: prices cannot be negative.")
        if compare_at is not None and compare_at < new.price:
            raise PriceChangeError(
                f"{variant.sku}: the compare-at price {compare_at} is below the price {new.price}."
            )
        if (new.price, compare_at, cost) == (variant.price, variant.compare_at_price,
                                             variant.cost_price):
            continue
        variant.price, variant.compare_at_price, variant.cost_price = new.price, compare_at, cost
        variant.updated_at = timezone.now()  # bulk_update does not apply auto_now
        changed.append(variant)
    Variant.objects.bulk_update(
        changed, ["price", "compare_at_price", "cost_price", "updated_at"], batch_size=1000
    )
    refresh_listings({variant.product_id for variant in changed})
    return len(changed)


@transaction.atomic
def set_products_published(*, product_ids: Iterable[int] | QuerySet, published: bool) -> int:
    """Publish or unpublish products; returns how many changed."""
    return (
        Product.objects.filter(pk__in=product_ids)
        .exclude(is_active=published)
        .update(is_active=published, updated_at=timezone.now())
    )


@transaction.atomic
def set_products_featured(*, product_ids: Iterable[int] | QuerySet, featured: bool) -> int:
    """Feature or unfeature products; returns how many changed."""
    if not isinstance(product_ids, QuerySet):
        product_ids = list(product_ids)
    changed = (
        Product.objects.filter(pk__in=product_ids)
        .exclude(is_featured=featured)
        .update(is_featured=featured, updated_at=timezone.now())
    )
    documents.forget(product_ids)  # the storefront shows "featured"
    return changed


@transaction.atomic
def move_products_to_category(*, product_ids: Iterable[int] | QuerySet, category: Category) -> int:
    """Make ``category`` the primary category of the products; returns how many changed."""
    return (
        Product.objects.filter(pk__in=product_ids)
        .exclude(category=category)
        .update(category=category, updated_at=timezone.now())
    )


def sold_out_products() -> QuerySet[Product]:
    """Published products that have active variants, none of which has any stock available in
    any warehouse (available = on hand - allocated, never negative per row) or sells without
    stock (not tracked, or on backorder: such a product is never sold out)."""
    from backoffice.inventory.models import Stock

    active_variants = Variant.objects.filter(product=OuterRef("pk"), is_active=True)
    available_stock = Stock.objects.filter(
        variant__product=OuterRef("pk"),
        variant__is_active=True,
        quantity__gt=F("quantity_allocated"),
    )
    return Product.objects.filter(is_active=True).filter(
        Exists(active_variants), ~Exists(active_variants.filter(sells_without_stock())),
        ~Exists(available_stock),
    )


# A product an import wrote this recently is not unpublished as sold out: its stock may simply
# not have arrived yet (a catalog file first, a stock file next), or the file may have meant
# something its stock columns did not say; the import is told instead (see below).
RECENT_IMPORT = timedelta(hours=1)
_IMPORT_JOB_REFERENCE = re.compile(r"^import #(\d+)$")


@transaction.atomic
def deactivate_sold_out_products(now: datetime | None = None) -> int:
    """Unpublish every sold-out product (see ``sold_out_products``), in one UPDATE.

    The rule for fresh imports: a sold-out product that an import created or changed (the
    product, its variants or its stock: ``Product.imported_at``) less than ``RECENT_IMPORT`` (one
    hour) ago is *skipped* this run, never unpublished silently. The job logs a warning naming
    those products, and adds a note to the import job that wrote them (the product's
    ``import_reference`` "import #<id>"; imports from the command line or the API have no job,
    the log says it for them): the merchant learns that the products have no sellable stock
    while they can still fix the stock or the file. Once the hour has passed they are treated
    like any other sold-out product.

    Does nothing when ``settings.DEACTIVATE_SOLD_OUT_PRODUCTS`` is off. Returns the count of
    products unpublished.
    """
    if not getattr(settings, "DEACTIVATE_SOLD_OUT_PRODUCTS", True):
        return 0
    now = now or timezone.now()
    sold_out = sold_out_products()
    fresh = list(
        sold_out.filter(imported_at__gte=now - RECENT_IMPORT)
        .order_by("import_reference", "pk")
        .values_list("pk", "slug", "import_reference")
    )
    count = Product.objects.filter(
        pk__in=sold_out.exclude(pk__in=[pk for pk, _, _ in fresh]).values("pk")
    ).update(is_active=False, updated_at=now)
    if count:
        logger.info("Unpublished %d sold-out products", count)
    if fresh:
        _note_fresh_imports(fresh, now)
    return count


def _note_fresh_imports(fresh: list[tuple[int, str, str]], now: datetime) -> None:
    """Say which sold-out products were left published because an import just wrote them: in
    the log, and on each import job (at most once per job for the same products)."""
    from backoffice.imports.models import ImportJob

    by_reference: dict[str, list[tuple[int, str]]] = {}
    for pk, slug, reference in fresh:
        by_reference.setdefault(reference, []).append((pk, slug))
    for reference, products in by_reference.items():
        slugs = [slug for _, slug in products]
        shown = ", ".join(slugs[:20]) + (f" and {len(slugs) - 20} more" if len(slugs) > 20 else "")
        message = ngettext(
            "%(count)d product of this import has no sellable stock and would have been "
            "unpublished as sold out; left published because it was imported less than "
            "%(minutes)d minutes ago: %(shown)s. Add its stock (or mark its variants as not "
            "tracked or on backorder), or a later run will unpublish it.",
            "%(count)d products of this import have no sellable stock and would have been "
            "unpublished as sold out; left published because they were imported less than "
            "%(minutes)d minutes ago: %(shown)s. Add their stock (or mark the variants as not "
            "tracked or on backorder), or a later run will unpublish them.",
            len(slugs),
        ) % {"count": len(slugs), "minutes": int(RECENT_IMPORT.total_seconds() // 60),
             "shown": shown}
        logger.warning("Sold-out job skipped products imported by %s: %s",
                       reference or "an import", message)
        match = _IMPORT_JOB_REFERENCE.match(reference)
        if match is None:
            continue
        job = ImportJob.objects.select_for_update().filter(pk=int(match.group(1))).first()
        if job is None:
            continue
        ids = sorted(pk for pk, _ in products)
        if any(note.get("kind") == "sold_out_skipped" and note.get("product_ids") == ids
               for note in job.notes):
            continue  # said already, by an earlier run
        job.notes = [*job.notes, {
            "kind": "sold_out_skipped", "at": now.isoformat(), "message": message,
            "product_ids": ids,
        }]
        job.save(update_fields=["notes", "updated_at"])


LISTING_CHUNK = 2000  # products per statement; well under SQLite's variable limit

# One pass over variants and stock, grouped per product: a hash aggregate instead of three
# correlated subqueries per product (100k products: about 7 s with subqueries, not so here).
# It computes what ``selectors.price_bounds`` and "an active variant sold without stock (not
# tracked, or on backorder), or a stock row with quantity > allocated of an active variant" say;
# a test checks the stored columns against those live definitions.
_AGGREGATE = """
    SELECT p.id AS product_id, MIN(v.price) AS price_min, MAX(v.price) AS price_max,
           COALESCE(MAX(CASE WHEN s.quantity > s.quantity_allocated
                                  OR NOT v.track_inventory OR v.allow_backorder
                             THEN 1 ELSE 0 END), 0) = 1
               AS in_stock
    FROM catalog_product p
    LEFT JOIN catalog_variant v ON v.product_id = p.id AND v.is_active
    LEFT JOIN inventory_stock s ON s.variant_id = v.id
    {where}
    GROUP BY p.id
"""
# Which products' stored columns differ from the aggregate: a read, so that a refresh that
# changes nothing (most stock changes) writes nothing. A raw UPDATE, even of no row, makes
# cachalot drop every cached query of the tables it names, and with them the storefront's cached
# catalog answers and counts.
_CHANGED_SQL = """
SELECT agg.product_id FROM ({aggregate}) AS agg
JOIN catalog_product ON catalog_product.id = agg.product_id
WHERE catalog_product.price_min {differs} agg.price_min
   OR catalog_product.price_max {differs} agg.price_max
   OR catalog_product.is_in_stock {differs} agg.in_stock
"""
_REFRESH_SQL = """
UPDATE catalog_product SET price_min = agg.price_min, price_max = agg.price_max,
                           is_in_stock = agg.in_stock
FROM ({aggregate}) AS agg
WHERE catalog_product.id = agg.product_id AND (
    catalog_product.price_min {differs} agg.price_min
    OR catalog_product.price_max {differs} agg.price_max
    OR catalog_product.is_in_stock {differs} agg.in_stock
)
"""


def _where_ids(count: int) -> str:
    return f"WHERE p.id IN ({', '.join(['%s'] * count)})"


def refresh_listings(product_ids: Iterable[int] | None = None) -> int:
    """Recompute the listing columns (price range, in stock) of products from their variants
    and stock; every product when ``product_ids`` is None. Returns the rows that changed.

    Called by every write that can change them: variant saves (signals), bulk price changes,
    imports, stock changes; and nightly, as a safety net. Only the products whose columns
    differ are written; up to ``LISTING_CHUNK`` products (a stock change, an order) and the
    nightly run find them with a read first, so a call that changes nothing writes nothing and
    invalidates no cached catalog query.
    """
    from cachalot.api import invalidate

    differs = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    ids = None if product_ids is None else sorted(set(product_ids))
    if ids == []:
        return 0
    with connection.cursor() as cursor:
        if ids is not None and len(ids) > LISTING_CHUNK:
            # Imports and bulk edits, which mostly change what they touch: reading first
            # would cost a second aggregate (+25% measured on 20k products, all changed).
            stale = ids
        else:
            cursor.execute(_CHANGED_SQL.format(
                aggregate=_AGGREGATE.format(where=_where_ids(len(ids)) if ids else ""),
                differs=differs,
            ), ids)
            stale = sorted(row[0] for row in cursor.fetchall())
        changed = 0
        for start in range(0, len(stale), LISTING_CHUNK):
            chunk = stale[start:start + LISTING_CHUNK]
            aggregate = _AGGREGATE.format(where=_where_ids(len(chunk)))
            cursor.execute(_REFRESH_SQL.format(aggregate=aggregate, differs=differs), chunk)
            changed += cursor.rowcount
    if changed:
        invalidate(Product)  # a raw UPDATE: cachalot must drop its cached product queries
    # The kept answers show the variants and their stock status too, which may have changed
    # where these columns did not: a caller naming products says they changed.
    documents.forget(stale if ids is None else ids)
    return changed
