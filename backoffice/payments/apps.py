from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "backoffice.payments"
    label = "payments"
    verbose_name = "Payments"
