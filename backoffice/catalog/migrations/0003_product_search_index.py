"""A GIN index for the storefront's full-text search, on PostgreSQL only.

The expression is exactly what ``SearchVector("name", "brand", "description", config="simple")``
compiles to, so the planner can use the index for ``q`` searches instead of computing a
tsvector for every product. SQLite has no such index; its search is a plain LIKE match.
"""

from django.db import migrations

INDEX = "product_search_simple"
EXPRESSION = (
    "to_tsvector('simple'::regconfig, COALESCE(\"name\", '') || ' ' || "
    "COALESCE(\"brand\", '') || ' ' || COALESCE(\"description\", ''))"
)


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON catalog_product USING GIN ({EXPRESSION})"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_listing_columns")]

    operations = [migrations.RunPython(create_index, drop_index)]
