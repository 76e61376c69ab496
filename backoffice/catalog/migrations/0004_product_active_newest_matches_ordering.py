"""The "newest" listing index in the listing's exact order: (is_active, created_at DESC, id DESC).

It was (is_active, created_at DESC, id ASC), which no scan direction turns into ORDER BY
created_at DESC, id DESC: PostgreSQL sorted every page (an incremental sort over the
single-column created_at index), and could not pick a page's ids from the index alone.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0003_product_search_index'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='product',
            name='product_active_newest',
        ),
        migrations.AddIndex(
            model_name='product',
            index=models.Index(fields=['is_active', '-created_at', '-id'], name='product_active_newest'),
        ),
    ]
