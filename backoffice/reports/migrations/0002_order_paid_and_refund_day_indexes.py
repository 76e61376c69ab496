"""Made the indexes the live half of the reports reads by (orders by the time they were paid,
refunds by the time they were recorded) with ``RunSQL`` on the orders app's tables. They are
declared by ``Order.Meta.indexes`` and ``Refund.Meta.indexes`` now, and made by the orders app's
migration 0008 (which finds them in a database this migration ran on before). Kept, empty, so
that the history stays whole."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0001_initial"),
        ("orders", "0005_orders_to_payment_and_fulfilment"),
    ]

    operations = []
