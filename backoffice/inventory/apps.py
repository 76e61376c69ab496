from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "backoffice.inventory"
    label = "inventory"
    verbose_name = "Inventory"
