from django.apps import AppConfig


class PluginHostConfig(AppConfig):
    name = "backoffice.plugin_host"
    label = "plugins"
    verbose_name = "Plugins"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from backoffice.plugin_host import checks  # noqa: F401 - registers the system checks
        from backoffice.plugin_host.config import sync_plugin_configs

        post_migrate.connect(_sync_after_migrate, sender=self)
        self._sync = sync_plugin_configs


def _sync_after_migrate(sender, **kwargs) -> None:
    sender._sync(using=kwargs.get("using", "default"))
