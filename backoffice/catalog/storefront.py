"""Reads for the storefront: the category tree, product listings with filters, product detail.

Listings filter and sort on the stored listing columns (``price_min``, ``is_in_stock``,
``rating_average``) through indexes that match each ordering, with the primary key as the last
key so the order is stable and a page never repeats or skips a product. A page is four queries
at most, whatever the filters: a category's subtree (``subtree_ids``), an exact-SKU lookup
(one-word searches only), the count (cached per set of filters by ``storefront_cache``; on
PostgreSQL the planner's estimate first, which a large listing answers instead of counting:
``listing_count``), and the page's products with their kept JSON (``documents``: built, once,
for a product that has none kept). The page's products are picked by an inner query that reads
only the ordering index (``id IN (SELECT id ... ORDER BY ... LIMIT 24 OFFSET n)``); their kept
JSON is read for those 24 rows only.

On PostgreSQL, a listing filtered by no more than its category, stock and featured flags
(``listing_key``) also keeps its estimate (``ListingEstimate``, read in the page's own query: a
page is then that one query, with a category two) and, for each cursor ordering, an anchor
every ``ANCHOR_EVERY`` products (``ListingAnchors``): page 2,000 asked by number starts its
index walk at the anchor before it, as a cursor does, instead of skipping 48k entries. Both are
stale after any statement that writes products or categories (a trigger draws from a sequence;
they are kept with the value it had before they were made), and are made again on the next read.
Each process holds the anchors it has read, with their sort keys (``_anchors``): a deep page is
then the query of a cursor page, whose rows carry the sequence's value, so a page read from
anchors made stale by a write is seen as such and read again from fresh ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Avg, Exists, F, OrderBy, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.expressions import Expression, RawSQL
from django.db.models.fields import BooleanField
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import RowNumber

from backoffice import cursors
from backoffice.catalog import documents, storefront_cache
from backoffice.catalog.models import (
    Category,
    ListingAnchors,
    ListingEstimate,
    Product,
    Variant,
)
from backoffice.money import quantize

ORDERINGS = {
    "newest": ("-created_at", "-id"),
    "price": ("price_min", "id"),
    "-price": ("-price_min", "-id"),
    "name": ("name", "id"),
    "rating": ("-rating_average", "-id"),
}


class CatalogQueryError(ValueError):
    """A filter the catalog cannot apply (an unknown category, a malformed option)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class ProductFilters:
    category: str = ""  # a category path, e.g. "clothing/men"
    brands: list[str] = field(default_factory=list)
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    in_stock: bool | None = None
    featured: bool | None = None
    options: dict[str, str] = field(default_factory=dict)  # {"Size": "M"}
    attributes: dict[str, str] = field(default_factory=dict)  # {"material": "cotton"}
    search: str = ""


def published_products() -> QuerySet[Product]:
    return Product.objects.filter(is_active=True)


def category_by_path(path: str) -> Category:
    category = Category.objects.filter(path=path.strip("/"), is_active=True).first()
    if category is None:
        raise CatalogQueryError(f"There is no category {path!r}.", "category")
    return category


def _search(queryset: QuerySet[Product], text: str) -> QuerySet[Product]:
    """An exact SKU (one word, as typed or upper-cased) finds its product; otherwise words
    match the name, brand and description. Kept apart rather than OR-ed so each side uses its
    index (the SKU's unique index; on PostgreSQL the GIN index of migration 0003)."""
    if len(text.split()) == 1:
        product_id = (
            Variant.objects.filter(sku__in={text, text.upper()})
            .values_list("product_id", flat=True).first()
        )
        if product_id is not None:
            return queryset.filter(pk=product_id)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        vector = SearchVector("name", "brand", "description", config="simple")
        query = SearchQuery(text, config="simple", search_type="websearch")
        return queryset.annotate(search=vector).filter(search=query)
    return queryset.filter(
        Q(name__icontains=text) | Q(brand__icontains=text) | Q(description__icontains=text)
    )


def subtree_ids(path: str) -> list[int]:
    """The ids of a published category (by path) and of every category below it; raises
    ``CatalogQueryError`` for an unknown one. One query."""
    node = Category.objects.filter(path=path.strip("/"), is_active=True)
    ids = list(Category.objects.filter(
        tree_id=Subquery(node.values("tree_id")[:1]),
        lft__gte=Subquery(node.values("lft")[:1]),
        lft__lte=Subquery(node.values("rght")[:1]),
    ).values_list("pk", flat=True))
    if not ids:
        raise CatalogQueryError(f"There is no category {path!r}.", "category")
    return ids


def filter_products(filters: ProductFilters, queryset: QuerySet[Product] | None = None):
    """Published products matching ``filters`` (one query for the category, if any)."""
    queryset = published_products() if queryset is None else queryset
    if filters.category:
        # The category ids as values, not a join on the tree: the planner then knows from its
        # statistics how many products they hold (with the join it guessed 2,763 for 12,103),
        # which picks its plans and the listing's estimated count (``listing_count``).
        queryset = queryset.filter(category_id__in=subtree_ids(filters.category))
    if filters.brands:
        queryset = queryset.filter(brand__in=filters.brands)
    if filters.price_min is not None:
        queryset = queryset.filter(price_min__gte=filters.price_min)
    if filters.price_max is not None:
        queryset = queryset.filter(price_min__lte=filters.price_max)
    if filters.in_stock is not None:
        queryset = queryset.filter(is_in_stock=filters.in_stock)
    if filters.featured is not None:
        queryset = queryset.filter(is_featured=filters.featured)
    # Option and attribute names are the customer's text: each is one JSON key, taken as it is
    # (KeyTransform), never parsed as a lookup path ("Size__regex" is a key, not a regex).
    if filters.options:
        variants = Variant.objects.filter(product=OuterRef("pk"), is_active=True)
        for index, (name, value) in enumerate(filters.options.items()):
            variants = variants.alias(
                **{f"option_{index}": KeyTransform(name, "option_values")}
            ).filter(**{f"option_{index}": value})
        queryset = queryset.filter(Exists(variants))
    for index, (name, value) in enumerate(filters.attributes.items()):
        queryset = queryset.alias(
            **{f"attribute_{index}": KeyTransform(name, "attributes")}
        ).filter(**{f"attribute_{index}": value})
    if filters.search:
        queryset = _search(queryset, filters.search)
    return queryset


@dataclass(frozen=True)
class ProductPage:
    """``products``: each product's summary as the API shows it, JSON text
    (``documents``).
    ``count_exact``: False when ``count`` is the database's estimate (``listing_count``).
    ``next``: the cursor of the page after this one (``after``), None on the last page and for
    the orderings that have none (``KEYSET``)."""

    products: list[str]
    count: int
    page: int
    page_size: int
    count_exact: bool = True
    next: str | None = None


# Orderings a page can be asked for by a cursor (``after``): their sort keys are never NULL, so
# "the rows after this one" is one comparison in every database. (``price_min`` is NULL for a
# product without an active variant, and databases sort NULLs differently.)
KEYSET = {"newest": "created_at", "name": "name", "rating": "rating_average"}


def encode_cursor(ordering: str, row: dict) -> str:
    value = row[KEYSET[ordering]]
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return cursors.encode([ordering, text, row["id"]])


def _after(queryset: QuerySet, ordering: str, cursor: str) -> QuerySet:
    """``queryset`` narrowed to the rows after the one ``cursor`` names, in ``ordering``."""
    try:
        named, text, pk = cursors.decode(cursor)
        if named != ordering or not isinstance(pk, int) or isinstance(pk, bool):
            raise ValueError
        field = KEYSET[ordering]
        value = {"created_at": datetime.fromisoformat, "rating_average": Decimal}.get(
            field, str)(text)
    except (ValueError, TypeError, KeyError, ArithmeticError):
        raise CatalogQueryError("This cursor is not one this listing gave (with this ordering); "
                                "start again from page 1.", "after") from None
    return _beyond(queryset, ordering, value, pk)


class _Beyond(Expression):
    """The rows after ``(value, pk)`` in ``ordering``: ``(sort key, id) > (%s, %s)`` (``<`` for
    a descending ordering), one row comparison, where the database starts the ordering index's
    walk. (Django's composite-key lookups compile the same comparison with 0.1-0.2 ms more of
    Python a page; built from ``filter(...)`` keywords it cost 1 ms more.)"""

    output_field = BooleanField()
    conditional = True

    def __init__(self, ordering: str, value, pk) -> None:
        super().__init__()
        field = KEYSET[ordering]
        self.columns = [F(field), F("id")]
        self.operator = ">" if ORDERINGS[ordering][0] == field else "<"
        self.params = [value, pk]

    def get_source_expressions(self) -> list:
        return self.columns

    def set_source_expressions(self, expressions: list) -> None:
        self.columns = expressions

    def as_sql(self, compiler, connection) -> tuple[str, list]:
        (key, key_params), (pk, pk_params) = (compiler.compile(c) for c in self.columns)
        return f"({key}, {pk}) {self.operator} (%s, %s)", [*key_params, *pk_params, *self.params]


def _beyond(queryset: QuerySet, ordering: str, value, pk) -> QuerySet:
    """``queryset`` narrowed to the rows after ``(value, pk)`` in ``ordering`` (``_Beyond``);
    the value goes to the database as its field sends it (SQLite keeps times as UTC text)."""
    value = Product._meta.get_field(KEYSET[ordering]).get_db_prep_value(value, connection)
    return queryset.filter(_Beyond(ordering, value, pk))


def _planned_rows(queryset: QuerySet) -> int:
    """How many rows PostgreSQL's planner expects ``queryset`` to return (its statistics; no
    row is read)."""
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def listing_count(filters: ProductFilters, queryset: QuerySet) -> tuple[int, bool]:
    """The products a listing holds, and whether that is exact. Counting 95k published
    products on every page was most of a page's database time; on PostgreSQL a listing the
    planner expects above ``LISTING_EXACT_COUNT_UP_TO`` answers that estimate instead (the
    answer says so), which is as good as exact for "page 1 of about 3,960". Searches (their
    estimates can be far off) and smaller listings are counted."""
    limit = settings.LISTING_EXACT_COUNT_UP_TO
    if limit and connection.vendor == "postgresql" and not filters.search:
        planned = _planned_rows(queryset)
        if planned > limit:
            return planned, False
    return queryset.count(), True


def listing_key(filters: ProductFilters) -> str | None:
    """The key a listing's estimate and anchors are kept under (``ListingEstimate``,
    ``ListingAnchors``), or None when they are not kept: on SQLite (which counts), and for
    filters whose values are the customer's own (a search, brands, prices, options,
    attributes), which would keep a row per value asked."""
    if (connection.vendor != "postgresql" or not settings.LISTING_EXACT_COUNT_UP_TO
            or filters.search or filters.brands or filters.options or filters.attributes
            or filters.price_min is not None or filters.price_max is not None):
        return None
    return json.dumps([filters.category.strip("/"), filters.in_stock, filters.featured])


_WRITES = "SELECT last_value FROM catalog_listing_writes"  # the sequence of migration 0010
_KEPT = (f"SELECT estimate FROM {ListingEstimate._meta.db_table} "  # noqa: S608 - a model's table
         f"WHERE key = %s AND generation = ({_WRITES})")


def _keep_estimate(key: str, estimate: int, generation: int) -> None:
    """Keep ``estimate`` as of ``generation`` (the sequence's value read before it was made:
    a write since then has moved the sequence past it, so it is never taken for fresh)."""
    ListingEstimate.objects.update_or_create(
        key=key, defaults={"estimate": estimate, "generation": generation})


ANCHOR_EVERY = 500  # products between two anchors: a deep page skips fewer than this
# The kept anchors' ids and sort keys, in order, if fresh; with how many ids were kept (an id
# without its product would shift the rest: the anchors are then taken for stale).
_ANCHOR_ROWS = (  # names from the models; the key is a bound parameter
    "SELECT a.generation, jsonb_array_length(a.product_ids::jsonb), p.id, p.{column} "  # noqa: S608
    f"FROM {ListingAnchors._meta.db_table} a CROSS JOIN LATERAL "
    "jsonb_array_elements_text(a.product_ids::jsonb) WITH ORDINALITY AS e (id, n) "
    f"JOIN {Product._meta.db_table} p ON p.id = e.id::bigint "
    f"WHERE a.key = %s AND a.generation = ({_WRITES}) ORDER BY e.n")
# This process's copy of the anchors it has used: key -> (generation, [(sort key, id)]). A page
# read from one checks in its own query that the write sequence is still at that generation.
_anchors: dict[str, tuple[int, list[tuple]]] = {}
ANCHORS_HELD = 500  # listings x orderings a process holds anchors of; then it starts again


def _anchors_of(queryset: QuerySet, key: str, ordering: str) -> tuple[int, list[tuple]]:
    """The listing's anchors, fresh, with their sort keys, held by this process (``_anchors``):
    those kept if fresh (one query), else found and kept again (``_keep_anchors``) and read.
    ``(-1, [])`` when writes keep making them stale: no page is taken from these."""
    column = Product._meta.get_field(KEYSET[ordering]).column
    for attempt in range(2):
        with connection.cursor() as cursor:
            cursor.execute(_ANCHOR_ROWS.format(column=column), [key])
            rows = cursor.fetchall()
        if rows and rows[0][1] == len(rows):
            if len(_anchors) >= ANCHORS_HELD:
                _anchors.clear()
            _anchors[key] = found = (rows[0][0], [(value, pk) for _, _, pk, value in rows])
            return found
        if not attempt:
            _keep_anchors(queryset, key, ordering)
    return (-1, [])


def _keep_anchors(queryset: QuerySet, key: str, ordering: str) -> None:
    """Find and keep the listing's anchors in ``ordering`` (``ListingAnchors``: the ids of its
    ``ANCHOR_EVERY``-th, 2 x ``ANCHOR_EVERY``-th... products) by one walk of the ordering
    index (row numbers, every ``ANCHOR_EVERY``-th kept), as of the write sequence's value read
    first: a write meanwhile has moved it past them."""
    with connection.cursor() as cursor:
        cursor.execute(_WRITES)
        generation = cursor.fetchone()[0]
    numbered = queryset.annotate(
        number=Window(RowNumber(), order_by=[OrderBy(F(name.lstrip("-")),
                                                     descending=name.startswith("-"))
                                             for name in ORDERINGS[ordering]]))
    ids = (numbered.alias(place=F("number") % ANCHOR_EVERY).filter(place=0)
           .order_by("number").values_list("id", flat=True))
    ListingAnchors.objects.update_or_create(
        key=key, defaults={"product_ids": json.dumps(list(ids)), "generation": generation})


def _listing_rows(page_ids: QuerySet, order: tuple[str, ...], key: str | None = None,
                  ) -> list[dict]:
    """The page's products (``page_ids`` may hold one more than the page, read to tell whether
    a next page exists): their sort keys and kept summary (``documents``), one query. With
    ``key``, each row also carries the listing's kept estimate (``kept``, None when there is
    none or it is stale) and the write sequence's value (``writes``), read in the same query."""
    rows = Product.objects.filter(pk__in=page_ids).order_by(*order)
    fields = {"summary": F("storefront_answer__summary")}
    if key is not None:
        # Constant SQL; the key is a bound parameter. (A Subquery cost more to compile.)
        fields.update(kept=RawSQL(_KEPT, [key]), writes=RawSQL(_WRITES, []))  # noqa: S611
    return list(rows.values("id", *KEYSET.values(), **fields))


def product_page(
    filters: ProductFilters, *, ordering: str = "newest", page: int = 1, page_size: int = 24,
    after: str = "",
) -> ProductPage:
    """One page of a listing, with the total (see ``ProductPage``): page ``page``, or
    with ``after`` (a ``next`` cursor; ``KEYSET`` orderings only) the page after that row.
    A listing whose estimate is kept (``listing_key``) is one query (with the category's
    subtree, two): the page and its kept estimate."""
    if after and ordering not in KEYSET:
        raise CatalogQueryError(f"The {ordering!r} ordering pages by number only (no cursor).",
                                "after")
    queryset = filter_products(filters)
    key = listing_key(filters)
    start = (page - 1) * page_size
    order = ORDERINGS[ordering]

    def rows() -> list[dict]:
        # The inner query walks the ordering index only (the filters and the sort key are in
        # it); OFFSET skips index entries, not rows with their kept JSON read, and a cursor
        # starts the walk where the page starts: page 2,000 then costs what page 1 does. A
        # deep page asked by number starts at the kept anchor before it, as from a cursor.
        if after:
            return page_of(_after(queryset, ordering, after), 0)
        if key is None or ordering not in KEYSET or start < ANCHOR_EVERY:
            return page_of(queryset, start)
        akey = json.dumps([key, ordering, ANCHOR_EVERY])  # another step: other anchors
        passed = start // ANCHOR_EVERY
        kept = _anchors.get(akey)
        for attempt in range(2):
            if kept is None or attempt:
                kept = _anchors_of(queryset, akey, ordering)
            generation, anchors = kept
            if passed > len(anchors):
                if attempt and generation >= 0:
                    return []  # fresh anchors: the listing ends before this page
                continue
            found = page_of(_beyond(queryset, ordering, *anchors[passed - 1]),
                            start - passed * ANCHOR_EVERY)
            if found and found[0]["writes"] == generation:
                return found  # the write sequence, read in the page's query, has not moved
            if not found and attempt and generation >= 0:
                return []  # nothing after fresh anchors: past the listing's end
        return page_of(queryset, start)  # writes moved the anchors again meanwhile: OFFSET

    def page_of(keys: QuerySet, begin: int) -> list[dict]:
        keys = keys.order_by(*order).values("pk")[begin:begin + page_size + 1]
        return _listing_rows(keys, order, key)

    def count() -> tuple[int, bool]:
        return storefront_cache.cached_count(filters, lambda: listing_count(filters, queryset))

    if key is None:
        total, exact = count()
        products = rows() if after or start < total else []
    else:
        products = rows()
        if products and products[0]["kept"] is not None:
            total, exact = products[0]["kept"], False
        else:
            total, exact = count()
            if products and not exact:
                _keep_estimate(key, total, products[0]["writes"])
    more = len(products) > page_size
    products = products[:page_size]
    following = (encode_cursor(ordering, products[-1])
                 if more and ordering in KEYSET else None)
    return ProductPage(
        products=documents.summaries([(row["id"], row["summary"]) for row in products]),
        count=total, page=page, page_size=page_size, count_exact=exact, next=following,
    )


def product_detail(slug: str) -> str | None:
    """A published product as ``GET /products/{slug}`` shows it (its kept ``detail`` JSON:
    category, breadcrumbs, variants with their stock status, images); None if there is none.
    One query when it is kept."""
    row = (published_products().filter(slug=slug)
           .values_list("id", "storefront_answer__detail").first())
    return None if row is None else documents.detail(*row)


def breadcrumbs(category: Category | None) -> list[Category]:
    """The category and its ancestors, root first (one query)."""
    if category is None:
        return []
    return list(category.get_ancestors(include_self=True))


def category_tree() -> list[dict]:
    """The whole active tree, nested, from one query."""
    nodes: dict[int, dict] = {}
    roots: list[dict] = []
    for category in Category.objects.filter(is_active=True).order_by("tree_id", "lft"):
        node = {
            "id": category.pk, "name": category.name, "slug": category.slug,
            "path": category.path, "children": [],
        }
        nodes[category.pk] = node
        parent = nodes.get(category.parent_id)
        if category.parent_id is None:
            roots.append(node)
        elif parent is not None:  # an inactive parent hides its subtree
            parent["children"].append(node)
    return roots


def average_price(category: Category) -> Decimal | None:
    """The average lowest price of the published products in the category and below it."""
    average = published_products().filter(
        category__tree_id=category.tree_id,
        category__lft__gte=category.lft,
        category__lft__lte=category.rght,
    ).aggregate(average=Avg("price_min"))["average"]
    return None if average is None else quantize(average)
