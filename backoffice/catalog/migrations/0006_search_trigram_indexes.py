"""Trigram (pg_trgm) GIN indexes for the admin's contains searches, on PostgreSQL only: a SKU's
part (``UPPER(sku)``, what ``sku__icontains`` compiles to) and a product's name. See
``backoffice.admin_search``. The ``pg_trgm`` extension is created when missing, and the indexes
are built concurrently, so a live store keeps selling while they are. SQLite gets neither; its
search scans as before."""

from django.db import migrations

from backoffice.indexes import trigram_indexes


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("catalog", "0005_variant_stock_tracking_and_import_mark")]

    operations = [
        trigram_indexes(
            ("variant_sku_trgm", "catalog_variant", "sku", True),
            ("product_name_trgm", "catalog_product", "name", True),
        ),
    ]
