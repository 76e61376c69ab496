"""Indexes the live half of the reports reads by: orders by the time they were paid, refunds by
the time they were recorded (today's sales are a range on each). They are created here, on the
orders app's tables, because only the reports read by them; ``IF NOT EXISTS`` keeps this safe
if the orders app ever declares the same index itself. The same SQL works on SQLite and
PostgreSQL."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0001_initial"),
        ("orders", "0005_orders_to_payment_and_fulfilment"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS reports_order_paid_at ON orders_order (paid_at)",
            "DROP INDEX IF EXISTS reports_order_paid_at",
        ),
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS reports_refund_created_at ON orders_refund (created_at)",
            "DROP INDEX IF EXISTS reports_refund_created_at",
        ),
    ]
