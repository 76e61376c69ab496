"""The reports' indexes on orders and refunds are declared by ``Order.Meta.indexes`` and
``Refund.Meta.indexes`` now. The reports app's migrations 0002 and 0003 made them with
``RunSQL``, so a database migrated before has them: only the state learns of them there; a new
database gets them here (``create_indexes`` skips an existing one)."""

from django.db import migrations, models

from backoffice.indexes import create_indexes

PAID_AT = models.Index(fields=["paid_at"], name="reports_order_paid_at")
REFUND_DUE = models.Index(
    fields=["id"],
    condition=models.Q(payment_status="overpaid") | (
        models.Q(status="cancelled")
        & models.Q(payment_status__in=["paid", "partially_refunded", "overpaid"])
    ),
    name="reports_order_refund_due",
)
REFUND_CREATED_AT = models.Index(fields=["created_at"], name="reports_refund_created_at")


class Migration(migrations.Migration):
    dependencies = [("orders", "0007_search_trigram_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(model_name="order", index=PAID_AT),
                migrations.AddIndex(model_name="order", index=REFUND_DUE),
                migrations.AddIndex(model_name="refund", index=REFUND_CREATED_AT),
            ],
            database_operations=[create_indexes("orders", [
                ("order", PAID_AT), ("order", REFUND_DUE), ("refund", REFUND_CREATED_AT),
            ])],
        ),
    ]
