from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "backoffice.audit"
    label = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from backoffice.roles import sync_roles_after_migrate

        # Every migrate puts the built-in roles back to exactly their definition.
        post_migrate.connect(sync_roles_after_migrate, sender=self)
