"""The storefront's response cache: public catalog reads answered from the shared cache.

What is cached: the JSON body of a ``200`` answer to an anonymous ``GET`` of the product listing,
a product's detail, the category tree and a category's detail, in the ``storefront`` cache (Redis
with ``REDIS_URL``, a file cache otherwise; apart from the default cache so that one entry per URL
asked never pushes out throttling counters or cachalot's marks), for
``STOREFRONT_CACHE_TIMEOUT`` seconds at most (0 turns this module off). A hit returns the stored
bytes: no database query, no parameter parsing, no schema validation, no serialisation. Errors,
other methods and requests that carry credentials or a cart (``Authorization``, ``X-API-Key``,
``X-Cart-Token``, a session cookie) are never served from nor written to the cache. Listing
counts are cached the same way, per set of filters, so the pages and orderings of one listing
share one ``COUNT``.

How it stays true: every key holds a *stamp* of what the answers are built from, so a write makes
the next read miss instead of anything being deleted.

- The catalog tables (categories, products, their images, variants, extra categories): the
  invalidation marks django-cachalot keeps per table in the default cache. cachalot renews a mark
  on every ORM write and every raw ``INSERT``/``UPDATE``/``DELETE``, after the transaction
  commits (catalog services run their single UPDATEs in a transaction for that reason: outside
  one, cachalot renews the mark just *before* the statement); ``backoffice.bulk.insert_rows``
  renews it after its ``COPY``, which cachalot cannot see. Writes to these tables go through
  cachalot even when ``CACHALOT_ENABLED=0``.
- Stock (availability is shown, never cached as such): ``backoffice.inventory.signals``, renewed
  after every committed stock change by whoever writes stock. Listing and detail keys hold it;
  the category tree, a category and the counts don't show stock and don't.
- The response's schema and the media URL, so a release that changes either never serves the
  old shape.

The stamp is every mark itself (hashed), not the newest one as ``cachalot.api.
get_last_invalidation`` gives: a mark evicted from the cache would make that maximum go *back*
to an older value and bring back answers stored under it. A missing mark starts again at "now"
(what cachalot itself does), so the stamp only ever moves to values it never had.

Ordering makes it safe under concurrency: a reader takes the stamp *before* it reads the
database, and writers renew marks only *after* their commit, so an answer built from old rows can
only be stored under a stamp that is already out of date. The queries of a miss bypass cachalot
for the same reason: cachalot stamps a query result with the time it *finished*, so a result read
just before a commit can outlive the write that made it old.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from functools import cache as memoize
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from backoffice.inventory.signals import STAMP_KEY as STOCK_STAMP_KEY
from backoffice.inventory.signals import stock_stamp

logger = logging.getLogger(__name__)

# Bump when what is cached changes in a way the schemas don't show (e.g. how a value is computed).
FORMAT = "1"
CACHE_HEADER = "X-Cache"
HIT, MISS, BYPASS = "hit", "miss", "bypass"
# Requests that say who is asking: their answers may one day differ per customer, so they are
# neither served from nor written to the shared cache.
PERSONAL_HEADERS = ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY", "HTTP_X_CART_TOKEN")


def enabled() -> bool:
    return settings.STOREFRONT_CACHE_TIMEOUT > 0


# Answers and counts live in a cache of their own (one entry per URL asked must not push out
# throttling counters or cachalot's marks); the stamps live in the default cache, beside
# cachalot's marks.
ANSWERS_CACHE = "storefront"


def _cache():
    return caches[DEFAULT_CACHE_ALIAS]


def _answers():
    return caches[ANSWERS_CACHE if ANSWERS_CACHE in settings.CACHES else DEFAULT_CACHE_ALIAS]


def _digest(text: str, length: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# --- Stamps -------------------------------------------------------------------------------------


@memoize
def _catalog_table_keys() -> tuple[str, ...]:
    from cachalot.settings import cachalot_settings

    from backoffice.catalog.models import Category, Product, ProductImage, Variant

    models = (Category, Product, Product.extra_categories.through, ProductImage, Variant)
    keygen = cachalot_settings.CACHALOT_TABLE_KEYGEN
    return tuple(keygen(DEFAULT_DB_ALIAS, model._meta.db_table) for model in models)


def current_stamp(*, stock: bool = True) -> str:
    """The stamp of the catalog tables (and, with ``stock``, of stock) as of now; read it
    before reading the database. Inside a transaction it includes that transaction's own
    uncommitted writes (as cachalot and the stock stamp see them), which nobody else's does."""
    from cachalot.cache import cachalot_caches
    from cachalot.settings import cachalot_settings
    from cachalot.transaction import AtomicCache

    keys = list(_catalog_table_keys())
    marks_cache = cachalot_caches.get_cache(db_alias=DEFAULT_DB_ALIAS)  # transaction-aware
    shared = caches[cachalot_settings.CACHALOT_CACHE]
    committed_stock = None
    if stock and marks_cache is _cache() and not isinstance(marks_cache, AtomicCache):
        values = marks_cache.get_many([*keys, STOCK_STAMP_KEY])  # one round trip
        committed_stock = values.pop(STOCK_STAMP_KEY, None)
    else:
        values = marks_cache.get_many(keys)
    missing = [key for key in keys if key not in values]
    if missing:
        # Evicted or never written: start them at "now", as cachalot does for its own queries
        # (add, so a concurrent invalidation is never overwritten).
        now = time.time()
        for key in missing:
            shared.add(key, now, cachalot_settings.CACHALOT_TIMEOUT)
        values.update(shared.get_many(missing))
        if any(key not in values for key in keys):  # a cache that keeps nothing
            return f"unstored-{time.time_ns()}"
    parts = [repr(values[key]) for key in keys]
    if stock:
        parts.append(stock_stamp(committed=committed_stock))
    return _digest("|".join(parts), 24)


# --- Keys -----------------------------------------------------------------------------------


@memoize
def _schema_fingerprint(schema: Any) -> str:
    from pydantic import TypeAdapter

    shape = json.dumps(TypeAdapter(schema).json_schema(), sort_keys=True)
    return _digest(f"{FORMAT}|{settings.MEDIA_URL}|{shape}", 12)


def normalized_url(request: HttpRequest) -> str:
    """The path and the query string as the view reads them: parameters sorted by name, the
    values of a repeated parameter kept in their order (``option=Size:M&option=Size:L`` is not
    ``option=Size:L&option=Size:M``), encodings and separators made canonical."""
    from urllib.parse import urlencode

    query = request.GET
    pairs = [(name, value) for name in sorted(query) for value in query.getlist(name)]
    return f"{request.path}?{urlencode(pairs)}"


def is_personal(request: HttpRequest) -> bool:
    return any(request.META.get(name) for name in PERSONAL_HEADERS) or (
        settings.SESSION_COOKIE_NAME in request.COOKIES
    )


def _storable(response: HttpResponseBase) -> bool:
    return (
        response.status_code == 200
        and isinstance(response, HttpResponse)  # not streaming
        and response.get("Content-Type", "").startswith("application/json")
        and not response.cookies
        and "no-store" not in response.get("Cache-Control", "")
        and "private" not in response.get("Cache-Control", "")
    )


def _mark(response: HttpResponseBase, outcome: str) -> HttpResponseBase:
    response[CACHE_HEADER] = outcome
    if settings.SERVER_TIMING:  # ServerTimingMiddleware adds its own entries after this one
        response["Server-Timing"] = f'cache;desc="{outcome}"'
    return response


def _render_fresh(render: Callable[[], HttpResponseBase]) -> HttpResponseBase:
    """Run the view with cachalot off (see the module's docstring)."""
    from backoffice.caching import query_cache_disabled

    if not settings.CACHALOT_ENABLED:
        return render()
    with query_cache_disabled():  # restores cachalot's flag even when the view raises
        return render()


def serve(
    request: HttpRequest, render: Callable[[], HttpResponseBase], *, schema: Any,
    stock: bool = True,
) -> HttpResponseBase:
    """Answer ``request`` from the cache, or with ``render()`` (storing a cacheable answer).

    ``schema`` is the answer's response schema (part of the key); ``stock`` says whether the
    answer shows availability (then the stock stamp is part of the key too).
    """
    if not enabled() or request.method != "GET":
        return render()
    if is_personal(request):
        return _mark(render(), BYPASS)
    store = _answers()
    try:
        key = (f"storefront:{_schema_fingerprint(schema)}:{current_stamp(stock=stock)}:"
               f"{_digest(normalized_url(request))}")
        entry = store.get(key)
    except Exception:
        logger.warning("Storefront cache unavailable; answering without it", exc_info=True)
        return render()
    if entry is not None:
        content_type, body = entry
        return _mark(HttpResponse(body, content_type=content_type), HIT)
    response = _render_fresh(render)
    if _storable(response):
        try:
            store.set(key, (response["Content-Type"], response.content),
                      settings.STOREFRONT_CACHE_TIMEOUT)
        except Exception:
            logger.warning("Could not store a storefront response", exc_info=True)
    return _mark(response, MISS)


def cached(schema: Any, *, stock: bool = True) -> Callable:
    """A view decorator for ninja's ``decorate_view``: the operation (parameter parsing,
    the view, validation and rendering of its answer) runs only on a miss.

    ``@router.get(...)`` then ``@decorate_view(storefront_cache.cached(ProductOut))``.
    """

    def decorator(run: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(run)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return serve(request, lambda: run(request, *args, **kwargs), schema=schema,
                         stock=stock)

        return wrapper

    return decorator


# --- Listing counts -------------------------------------------------------------------------


def cached_count(filters: Any, count: Callable[[], tuple[int, bool]]) -> tuple[int, bool]:
    """``count()`` of a listing's filters (a dataclass): the count and whether it is exact,
    shared by every page and ordering of that listing until a catalog table changes. (Counts
    read only catalog tables: the in-stock filter reads the stored ``is_in_stock``, which stock
    writers keep through a catalog write.)
    """
    if not enabled():
        return count()
    store = _answers()
    try:
        described = json.dumps(dataclasses.asdict(filters), sort_keys=True, default=str)
        key = (f"storefront:listing-count:{FORMAT}:{current_stamp(stock=False)}:"
               f"{_digest(described)}")
        value = store.get(key)
    except Exception:
        logger.warning("Storefront cache unavailable; counting without it", exc_info=True)
        return count()
    if value is not None:
        return tuple(value)
    value = count()
    try:
        store.set(key, value, settings.STOREFRONT_CACHE_TIMEOUT)
    except Exception:
        logger.warning("Could not store a listing count", exc_info=True)
    return value
