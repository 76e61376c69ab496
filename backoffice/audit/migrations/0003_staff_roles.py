"""The ready-made staff roles, as groups (``backoffice.roles.ROLES``).

Only the groups are made here; their permissions are given after every ``migrate`` by
``backoffice.roles.sync_roles_after_migrate`` (the permissions of every app exist only then;
see ``backoffice/roles.py``). Migrating backwards leaves the groups: staff may be in them.
"""

from django.db import migrations

from backoffice.roles import ROLES


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.using(schema_editor.connection.alias).get_or_create(name=name)


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0002_carry_over_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
