from django.apps import AppConfig, apps


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from backoffice import checks  # noqa: F401 - registers the system checks
        from backoffice.schedules import sync_schedules_after_migrate

        # Sent per app with models; django_q's is the one whose table the schedules live in.
        post_migrate.connect(
            sync_schedules_after_migrate, sender=apps.get_app_config("django_q")
        )
