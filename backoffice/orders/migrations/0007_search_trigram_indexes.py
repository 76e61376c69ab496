"""Trigram (pg_trgm) GIN indexes for the admin's order search, on PostgreSQL only: a part of an
email (``UPPER(email)``, what ``email__icontains`` compiles to; PostgreSQL 14+ also answers
``email__iexact`` from it) and of a phone number. See ``backoffice.admin_search``. Built
concurrently: checkout keeps writing orders meanwhile. SQLite gets none."""

from django.db import migrations

from backoffice.indexes import trigram_indexes


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("orders", "0006_order_action_permissions")]

    operations = [
        trigram_indexes(
            ("order_email_trgm", "orders_order", "email", True),
            ("order_phone_trgm", "orders_order", "phone", False),
        ),
    ]
