from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "backoffice.reviews"
    label = "reviews"
    verbose_name = "Reviews"

    def ready(self) -> None:
        from backoffice.reviews import signals  # noqa: F401 - connects the recount on delete
