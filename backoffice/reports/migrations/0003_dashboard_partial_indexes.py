"""Partial indexes the dashboard reads by, each covering only the few rows it counts, so that its
numbers cost the same at 200k orders and 300k stock rows as in a new store (measured by
benchmarks/reports_bench.py):

- stock rows at or below their low-stock threshold, by available quantity (the "Low stock"
  count and its lowest rows: ``inventory.selectors.low_stock_summary``);
- variants whose stock is watched (active, tracked): the low-stock count's other half;
- orders with a refund due (``orders.selectors.refund_due_q``: paid twice, or cancelled with
  money held), which the "needs you" counts read beside the open orders.

Their conditions are written exactly as the ORM writes the queries' ones, which is what lets the
database use them. Created here, on other apps' tables, because only the dashboard reads by
them; ``IF NOT EXISTS`` keeps this safe if those apps ever declare them. The same SQL works on
SQLite and PostgreSQL."""

from django.db import migrations

INDEXES = {
    "reports_stock_low": (
        "inventory_stock ((quantity - quantity_allocated), variant_id) "
        "WHERE (quantity - quantity_allocated) <= low_stock_threshold"
    ),
    "reports_variant_watched": (
        "catalog_variant (id) WHERE is_active AND track_inventory"
    ),
    "reports_order_refund_due": (
        "orders_order (id) WHERE (payment_status = 'overpaid' OR (status = 'cancelled' AND "
        "payment_status IN ('paid', 'partially_refunded', 'overpaid')))"
    ),
}


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0002_order_paid_and_refund_day_indexes"),
        ("inventory", "0001_initial"),
        ("catalog", "0005_variant_stock_tracking_and_import_mark"),
    ]

    operations = [
        migrations.RunSQL(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}",
                          f"DROP INDEX IF EXISTS {name}")
        for name, definition in INDEXES.items()
    ]
