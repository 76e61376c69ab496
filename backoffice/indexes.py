"""Index operations for migrations, where Django's own ``AddIndex`` does not fit.

- ``trigram_indexes``: pg_trgm GIN indexes for the admin's contains searches
  (``backoffice.admin_search``), on PostgreSQL only, built without blocking writes. They cannot
  be ``Meta.indexes``: SQLite must keep migrating, and Django writes ``OpClass`` over an
  expression only with ``django.contrib.postgres`` installed;
- ``create_indexes``: the database half of moving an index a ``RunSQL`` made into a model's
  ``Meta.indexes`` (beside a state-only ``AddIndex``): it creates the index the schema editor's
  way where it is missing and leaves the one an older migration made.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import migrations
from django.db.models import Index


def _index_names(schema_editor, table: str) -> set[str]:
    with schema_editor.connection.cursor() as cursor:
        return set(schema_editor.connection.introspection.get_constraints(cursor, table))


def create_indexes(app_label: str, indexes: Sequence[tuple[str, Index]]) -> migrations.RunPython:
    """Create each ``(model_name, index)`` with the schema editor unless an index of that name
    exists on the model's table; reversed by dropping them."""

    def create(apps, schema_editor) -> None:
        for model_name, index in indexes:
            model = apps.get_model(app_label, model_name)
            if index.name not in _index_names(schema_editor, model._meta.db_table):
                schema_editor.add_index(model, index)

    def drop(apps, schema_editor) -> None:
        for model_name, index in indexes:
            model = apps.get_model(app_label, model_name)
            if index.name in _index_names(schema_editor, model._meta.db_table):
                schema_editor.remove_index(model, index)

    return migrations.RunPython(create, drop, elidable=False)


def trigram_indexes(*indexes: tuple[str, str, str, bool]) -> migrations.RunPython:
    """``(name, table, column, upper)`` pg_trgm GIN indexes, on PostgreSQL only, built
    concurrently (the migration needs ``atomic = False``). ``upper``: on ``UPPER(column)``, what
    ``icontains``/``istartswith`` compile to (PostgreSQL 14+ answers ``iexact`` from it too);
    otherwise on the column, for ``contains``/``startswith``. The ``pg_trgm`` extension is
    created when missing (a trusted extension: the database's owner may) and left in place when
    the migration is reversed (``TrigramExtension`` would drop it, and fails backwards on
    SQLite). An invalid index left by an interrupted build is dropped and built again."""

    def create(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        quote = schema_editor.quote_name
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, table, column, upper in indexes:
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("SELECT NOT indisvalid FROM pg_index "
                               "WHERE indexrelid = to_regclass(%s)", [name])
                row = cursor.fetchone()
            if row and row[0]:
                schema_editor.execute(f"DROP INDEX CONCURRENTLY {quote(name)}")
            expression = f"UPPER({quote(column)})" if upper else quote(column)
            schema_editor.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(name)} ON {quote(table)} "
                f"USING gin ({expression} gin_trgm_ops)"
            )

    def drop(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for name, _table, _column, _upper in indexes:
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")

    return migrations.RunPython(create, drop, elidable=False)
