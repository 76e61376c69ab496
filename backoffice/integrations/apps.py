from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "backoffice.integrations"
    label = "integrations"
    verbose_name = "Integrations"
