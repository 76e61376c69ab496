"""``reports_variant_watched`` is declared by ``Variant.Meta.indexes`` now. The reports app's
migration 0003 made it with ``RunSQL``, so a database migrated before has it: only the state
learns of it there; a new database gets it here (``create_indexes`` skips an existing one)."""

from django.db import migrations, models

from backoffice.indexes import create_indexes

INDEX = models.Index(
    fields=["id"], condition=models.Q(is_active=True, track_inventory=True),
    name="reports_variant_watched",
)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0006_search_trigram_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="variant", index=INDEX)],
            database_operations=[create_indexes("catalog", [("variant", INDEX)])],
        ),
    ]
