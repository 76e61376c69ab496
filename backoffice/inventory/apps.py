from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "backoffice.inventory"
    label = "inventory"
    verbose_name = "Inventory"

    def ready(self) -> None:
        from backoffice.inventory.signals import connect_signals

        connect_signals()
