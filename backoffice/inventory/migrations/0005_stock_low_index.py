"""``reports_stock_low`` is declared by ``Stock.Meta.indexes`` now. The reports app's migration
0003 made it with ``RunSQL``, so a database migrated before has it: only the state learns of it
there; a new database gets it here (``create_indexes`` skips an existing one)."""

from django.db import migrations, models
from django.db.models.lookups import LessThanOrEqual

from backoffice.indexes import create_indexes

AVAILABLE = models.F("quantity") - models.F("quantity_allocated")
INDEX = models.Index(
    AVAILABLE, models.F("variant"),
    condition=models.Q(LessThanOrEqual(AVAILABLE, models.F("low_stock_threshold"))),
    name="reports_stock_low",
)


class Migration(migrations.Migration):
    dependencies = [("inventory", "0004_adjust_stock_permission")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="stock", index=INDEX)],
            database_operations=[create_indexes("inventory", [("stock", INDEX)])],
        ),
    ]
