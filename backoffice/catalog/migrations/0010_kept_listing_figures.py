"""Kept listing estimates and anchors, and on PostgreSQL the sequence that every statement writing products
or categories draws from (a statement-level trigger), which tells a kept estimate from a stale
one (``ListingEstimate``, ``ListingAnchors``)."""

from django.db import migrations, models

FORWARD = """
CREATE SEQUENCE catalog_listing_writes;
CREATE FUNCTION catalog_listing_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('catalog_listing_writes');
    RETURN NULL;
END $$;
CREATE TRIGGER catalog_product_listing_written
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON catalog_product
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_listing_written();
CREATE TRIGGER catalog_category_listing_written
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON catalog_category
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_listing_written();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS catalog_category_listing_written ON catalog_category;
DROP TRIGGER IF EXISTS catalog_product_listing_written ON catalog_product;
DROP FUNCTION IF EXISTS catalog_listing_written();
DROP SEQUENCE IF EXISTS catalog_listing_writes;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0009_product_category_price_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='ListingEstimate',
            fields=[
                ('key', models.TextField(primary_key=True, serialize=False)),
                ('estimate', models.BigIntegerField()),
                ('generation', models.BigIntegerField()),
            ],
            options={
                'verbose_name': 'kept listing estimate',
                'verbose_name_plural': 'kept listing estimates',
            },
        ),
        migrations.CreateModel(
            name='ListingAnchors',
            fields=[
                ('key', models.TextField(primary_key=True, serialize=False)),
                ('product_ids', models.TextField()),
                ('generation', models.BigIntegerField()),
            ],
            options={
                'verbose_name': 'kept listing anchors',
                'verbose_name_plural': 'kept listing anchors',
            },
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]
