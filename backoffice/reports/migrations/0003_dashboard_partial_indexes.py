"""Made the partial indexes the dashboard reads by (stock rows at or below their threshold,
variants whose stock is watched, orders with a refund due) with ``RunSQL`` on other apps'
tables. They are declared by those models' ``Meta.indexes`` now (``Stock``, ``Variant``,
``Order``) and made by their apps' migrations (inventory 0005, catalog 0007, orders 0008), which
find them in a database this migration ran on before. Kept, empty, so that the history stays
whole."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0002_order_paid_and_refund_day_indexes"),
        ("inventory", "0001_initial"),
        ("catalog", "0005_variant_stock_tracking_and_import_mark"),
    ]

    operations = []
