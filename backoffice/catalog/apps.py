from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "backoffice.catalog"
    label = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from backoffice.catalog.models import Variant

        post_save.connect(_variant_changed, sender=Variant, dispatch_uid="listing-on-save")
        post_delete.connect(_variant_changed, sender=Variant, dispatch_uid="listing-on-delete")


def _variant_changed(sender, instance, **kwargs) -> None:
    """A variant saved or deleted one at a time (admin, shell): its product's listing columns
    follow. Bulk writes call ``refresh_listings`` themselves."""
    from backoffice.catalog.services import refresh_listings

    refresh_listings([instance.product_id])
