"""The category index with the price beside it (made first, then the old one dropped)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0008_storefront_answer'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='product',
            index=models.Index(fields=['is_active', 'category', 'price_min'], name='product_active_category_price'),
        ),
        migrations.RemoveIndex(
            model_name='product',
            name='product_active_category',
        ),
    ]
