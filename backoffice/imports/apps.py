from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "backoffice.imports"
    label = "imports"
    verbose_name = "Imports and exports"
