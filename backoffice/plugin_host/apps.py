from django.apps import AppConfig


class PluginHostConfig(AppConfig):
    name = "backoffice.plugin_host"
    label = "plugins"
    verbose_name = "Plugins"

    def ready(self) -> None:
        from django.core.signals import request_finished, request_started
        from django.db.models.signals import post_delete, post_migrate, post_save

        from backoffice.plugin_host import (
            checks,  # noqa: F401 - registers the system checks
            loading,
        )
        from backoffice.plugin_host.config import sync_plugin_configs

        post_migrate.connect(_sync_after_migrate, sender=self)
        # The plugins' rows are read once per request (``loading._request_memo``).
        request_started.connect(loading.remember_for_this_request, dispatch_uid="plugin_rows")
        request_finished.connect(loading.forget_for_this_request, dispatch_uid="plugin_rows")
        config = self.get_model("PluginConfig")
        for signal in (post_save, post_delete):
            signal.connect(loading.plugin_rows_changed, sender=config, dispatch_uid="plugin_rows")
        self._sync = sync_plugin_configs


def _sync_after_migrate(sender, **kwargs) -> None:
    sender._sync(using=kwargs.get("using", "default"))
