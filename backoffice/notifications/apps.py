from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "backoffice.notifications"
    label = "notifications"
    verbose_name = _("Notifications")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from backoffice.notifications import checks  # noqa: F401 - registers the checks
        from backoffice.notifications.setup import ensure_rules

        post_migrate.connect(ensure_rules, sender=self)
