from django.apps import AppConfig


class PromotionsConfig(AppConfig):
    name = "backoffice.promotions"
    label = "promotions"
    verbose_name = "Promotions"
