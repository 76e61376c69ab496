from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "backoffice.catalog"
    label = "catalog"
    verbose_name = "Catalog"
