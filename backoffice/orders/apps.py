from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "backoffice.orders"
    label = "orders"
    verbose_name = "Orders"
