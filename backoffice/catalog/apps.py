from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "backoffice.catalog"
    label = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from backoffice.catalog.models import Category, Product, ProductImage, Variant
        from backoffice.inventory.models import Stock

        post_save.connect(_variant_changed, sender=Variant, dispatch_uid="listing-on-save")
        post_delete.connect(_variant_changed, sender=Variant, dispatch_uid="listing-on-delete")
        # What else a product's kept storefront answer (``documents``) shows, changed one at a
        # time (admin, shell); bulk writes call ``documents.forget`` themselves.
        post_save.connect(_product_changed, sender=Product, dispatch_uid="documents-product")
        for signal, name in ((post_save, "save"), (post_delete, "delete")):
            signal.connect(_image_changed, sender=ProductImage,
                           dispatch_uid=f"documents-image-{name}")
            signal.connect(_stock_row_changed, sender=Stock, dispatch_uid=f"documents-stock-{name}")
        post_save.connect(_category_changed, sender=Category, dispatch_uid="documents-category")


def _variant_changed(sender, instance, **kwargs) -> None:
    """A variant saved or deleted one at a time (admin, shell): its product's listing columns
    (and kept answers) follow. Bulk writes call ``refresh_listings`` themselves."""
    from backoffice.catalog.services import refresh_listings

    refresh_listings([instance.product_id])


def _product_changed(sender, instance, created: bool = False, **kwargs) -> None:
    if not created:  # a new product has nothing kept
        from backoffice.catalog import documents

        documents.forget([instance.pk])


def _image_changed(sender, instance, **kwargs) -> None:
    from backoffice.catalog import documents

    documents.forget([instance.product_id])


def _stock_row_changed(sender, instance, **kwargs) -> None:
    """A stock row saved or deleted one at a time (a threshold edited, a warehouse's rows
    deleted): its variant's stock status may have moved."""
    from backoffice.catalog import documents

    documents.forget_variants([instance.variant_id])


def _category_changed(sender, instance, created: bool = False, **kwargs) -> None:
    """A category renamed or moved: the products in it and below it show its name and path in
    their breadcrumbs."""
    if not created:
        from backoffice.catalog import documents
        from backoffice.catalog.models import Product

        below = instance.get_descendants(include_self=True)
        documents.forget(Product.objects.filter(category__in=below).values("pk"))
