from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "backoffice.reviews"
    label = "reviews"
    verbose_name = "Reviews"
