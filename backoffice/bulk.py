"""Fast inserts for bulk writes (imports, stock levels): ``COPY`` on PostgreSQL, one prepared
``executemany`` on SQLite; and updates of known rows with one ``UPDATE ... FROM`` a list of values.

Django's ``bulk_create`` compiles every value of every row through the field machinery: about
5,000 rows/s here, so 100k variants, their images and products would take most of the import's
30-second budget on their own. These rows are plain values we have already validated, so they go
to the database the way the backend loads data fastest. Values are adapted with the backend's
own ``connection.ops`` adapters (JSON, dates), the same the ORM would use, and auto timestamps are
filled in here because no ``pre_save`` runs. Callers read the new ids back by their natural key
(slug, SKU) in chunked queries.

``COPY`` goes through psycopg's own cursor, under cachalot's radar (it only watches
``execute``/``executemany``): ``insert_rows`` therefore tells cachalot itself that the table
changed, after the write (inside a transaction cachalot applies it when the transaction commits).
That keeps the query cache and the storefront's response cache, whose catalog stamp is built from
cachalot's table invalidations, true after every bulk write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cachalot.api import invalidate
from django.db import connection, models
from django.db.models.expressions import RawSQL
from django.utils import timezone


def _adapter(field: models.Field) -> Callable[[Any], Any] | None:
    """How a value of ``field`` goes to this backend, or None when it goes as it is."""
    ops = connection.ops
    if isinstance(field, models.JSONField):
        # As JSON text: COPY's text format and SQLite both take it for a JSON column.
        encoder = field.encoder
        return lambda value: None if value is None else json.dumps(value, cls=encoder)
    if isinstance(field, models.DateTimeField) and connection.vendor != "postgresql":
        return lambda value: None if value is None else ops.adapt_datetimefield_value(value)
    if isinstance(field, models.DecimalField) and connection.vendor != "postgresql":
        return lambda value: None if value is None else ops.adapt_decimalfield_value(value)
    return None


def insert_rows(model: type[models.Model], rows: Iterable[dict]) -> int:
    """Insert ``rows`` (dicts by field attname; missing fields take their defaults)."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    plan = []
    for field in fields:
        if isinstance(field, models.DateTimeField) and (field.auto_now or field.auto_now_add):
            default = now
        elif field.has_default() or not field.null:
            default = field.get_default()
        else:
            default = None
        plan.append((field.attname, default))
    adapters = [
        (position, adapt)
        for position, field in enumerate(fields)
        if (adapt := _adapter(field)) is not None
    ]
    values = []
    for row in rows:
        cells = [row.get(name, default) for name, default in plan]
        for position, adapt in adapters:
            cells[position] = adapt(cells[position])
        values.append(cells)
    if not values:
        return 0
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(fields))
            # Table and column names come from model metadata; every value is a bound parameter.
            sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
            cursor.executemany(sql, values)
    # Uncachable tables (stock, the ledger) are ignored by cachalot; stock writers change the
    # stock stamp themselves (backoffice.inventory.signals.stock_changed).
    invalidate(model._meta.db_table, db_alias=connection.alias)
    return len(values)


UPDATE_CHUNK = 1000  # rows per UPDATE; (fields + 1) parameters each, under SQLite's limit


def update_rows(objects: list[models.Model], fields: list[str]) -> int:
    """Save ``fields`` of ``objects`` (saved rows of one model, as they are in memory) with one
    ``UPDATE ... FROM`` a list of values per ``UPDATE_CHUNK`` rows: what ``bulk_update`` does
    with a ``CASE WHEN`` per field and row, whose compiling cost a checkout more than the rest
    of its stock writes. Values go through each field's ``get_db_prep_save``, as the ORM sends
    them; ``auto_now`` is not applied (set it on the objects). cachalot sees the statement
    (``execute``) and invalidates the table as for any raw write."""
    if not objects:
        return 0
    meta = type(objects[0])._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    quote = connection.ops.quote_name
    typed = connection.vendor == "postgresql"  # a VALUES list's literals need their types there
    cell = ", ".join(f"%s::{field.cast_db_type(connection)}" if typed else "%s"
                     for field in columns)
    names = ", ".join(quote(field.column) for field in columns)
    sets = ", ".join(f"{quote(field.column)} = v.{quote(field.column)}" for field in columns[1:])
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    with connection.cursor() as cursor:
        for chunk in chunked(objects, UPDATE_CHUNK):
            values = [field.get_db_prep_save(getattr(obj, field.attname), connection)
                      for obj in chunk for field in columns]
            rows = ", ".join([f"({cell})"] * len(chunk))
            # Names come from model metadata; every value is a bound parameter.
            cursor.execute(
                f"WITH v ({names}) AS (VALUES {rows}) "  # noqa: S608
                f"UPDATE {table} SET {sets} FROM v WHERE {table}.{pk} = v.{pk}", values)
    return len(objects)


LOOKUP_CHUNK = 2000  # keys per IN (...) lookup; well under SQLite's variable limit


def chunked(items: list, size: int = LOOKUP_CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def key_chunks(queryset: models.QuerySet, key: str, keys: list) -> Iterator[models.QuerySet]:
    """``queryset`` narrowed to ``key`` in ``keys`` with ONE bound parameter, whatever the size:
    ``= ANY(array)`` on PostgreSQL, ``IN (SELECT value FROM json_each(...))`` on SQLite; chunks
    of ``IN (...)`` elsewhere. Django's ``__in`` would bind (and compile) one parameter per key."""
    if not keys:
        return
    model = queryset.model
    quote = connection.ops.quote_name
    column = f"{quote(model._meta.db_table)}.{quote(model._meta.get_field(key).column)}"
    if connection.vendor == "postgresql":
        sql, param = f"{column} = ANY(%s)", list(keys)
    elif connection.vendor == "sqlite" and connection.features.supports_json_field:
        sql = f"{column} IN (SELECT value FROM json_each(%s))"  # noqa: S608
        param = json.dumps(list(keys))
    else:
        for chunk in chunked(keys):
            yield queryset.filter(**{f"{key}__in": chunk})
        return
    # The column comes from model metadata and the keys are one bound parameter.
    condition = RawSQL(sql, (param,), output_field=models.BooleanField())  # noqa: S611
    yield queryset.filter(condition)
