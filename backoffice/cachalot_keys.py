"""The query cache's key, computed only for a query it may cache.

django-cachalot asks ``CACHALOT_QUERY_KEYGEN`` for a key before it looks at the query's tables:
its own key compiles the whole SQL (a second time: the ORM compiles it again to run it) and only
then finds that a table is not cachable. Most queries of a checkout, an order page or a job read
stock, carts or orders, which are never cached (``CACHALOT_ONLY_CACHABLE_APPS``), so that work
was thrown away on every one of them. A query is cachable only when all its tables are, so when
its main table is not, or it locks rows, it is refused here before anything is compiled; every
other query gets cachalot's own key.
"""

from __future__ import annotations

from cachalot.utils import UncachableQuery, get_query_cache_key, is_cachable


def query_cache_key(compiler) -> str:
    query = compiler.query
    meta = query.get_meta()
    if query.select_for_update or (meta is not None and not is_cachable(meta.db_table)):
        raise UncachableQuery
    return get_query_cache_key(compiler)
