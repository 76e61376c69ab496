"""The bundled email channel is on from the first migrate: account mails (password reset, email
verification) and order confirmations need it. A merchant may switch it off in the admin."""

from django.db import migrations


def email_on(apps, schema_editor):
    PluginConfig = apps.get_model("plugins", "PluginConfig")
    PluginConfig.objects.get_or_create(identifier="email", defaults={"active": True})


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("plugins", "0001_initial"),
    ]

    operations = [migrations.RunPython(email_on, migrations.RunPython.noop)]
