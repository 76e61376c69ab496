"""Encrypt the plugin secrets stored in plain text before secrets were encrypted at rest.

Which settings are secret is declared by each plugin (``ConfigField(kind="secret")``), so only
the rows of plugins installed now are changed; the others are left alone (a plain value is still
read, and ``manage.py rotate_plugin_secrets`` encrypts it once the plugin is back). Going back
decrypts what it can, so the previous version reads its settings again.
"""

from django.db import migrations

from backoffice import crypto


def _secret_fields(identifier):
    from backoffice.plugin_host.loading import get_plugin_host

    plugin = get_plugin_host().plugins.get(identifier)
    if plugin is None:
        return None
    return {field.name for field in plugin.config_fields if field.kind == "secret"}


def encrypt_secrets(apps, schema_editor):
    PluginConfig = apps.get_model("plugins", "PluginConfig")
    db = schema_editor.connection.alias
    for row in PluginConfig.objects.using(db).only("id", "identifier", "settings"):
        secret = _secret_fields(row.identifier)
        if not secret or not row.settings:
            continue
        settings = dict(row.settings)
        changed = False
        for name in secret:
            value = settings.get(name)
            if value not in (None, "") and not crypto.is_sealed(value):
                settings[name] = crypto.seal(str(value))
                changed = True
        if changed:
            PluginConfig.objects.using(db).filter(pk=row.pk).update(settings=settings)


def decrypt_secrets(apps, schema_editor):
    PluginConfig = apps.get_model("plugins", "PluginConfig")
    db = schema_editor.connection.alias
    for row in PluginConfig.objects.using(db).only("id", "settings"):
        settings = dict(row.settings or {})
        changed = False
        for name, value in settings.items():
            if crypto.is_sealed(value):
                try:
                    settings[name] = crypto.unseal(value)
                except crypto.DecryptionError:
                    continue  # kept encrypted: the key is gone, and the value with it
                changed = True
        if changed:
            PluginConfig.objects.using(db).filter(pk=row.pk).update(settings=settings)


class Migration(migrations.Migration):

    dependencies = [
        ("plugins", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(encrypt_secrets, decrypt_secrets, elidable=False),
    ]
