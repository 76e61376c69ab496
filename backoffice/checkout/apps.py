from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "backoffice.checkout"
    label = "checkout"
    verbose_name = "Checkout"
