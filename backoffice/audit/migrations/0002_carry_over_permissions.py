"""Nobody loses what they could do when the actions got permissions of their own.

Before, one model permission covered several actions (``orders.change_order``: every order
action; ``inventory.change_stock``: adjusting stock...). Groups and users holding such a
permission are given the new ones it used to cover, once. The built-in roles are then set by
``backoffice.roles`` after the migrate, as always. The permissions are created here first: a
migration runs before Django's ``post_migrate`` creates them.
"""

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations

ORDER_ACTIONS = [
    "orders.ship_order", "orders.deliver_order", "orders.cancel_order",
    "orders.cancel_unpaid_order", "orders.refund_order", "orders.mark_order_paid",
    "orders.add_order_note", "payments.change_payment", "payments.change_paymentevent",
]
CARRY_OVER = {
    "orders.change_order": ORDER_ACTIONS,
    "orders.view_order": ["orders.export_orders"],
    "inventory.change_stock": ["inventory.adjust_stock"],
    "imports.change_importjob": ["imports.run_import"],
    "imports.add_exportjob": ["imports.run_export"],
    "plugins.change_pluginconfig": ["plugins.manage_plugins"],
    "integrations.add_apikey": ["integrations.manage_api_keys"],
    "integrations.change_apikey": ["integrations.manage_api_keys"],
    "notifications.change_notification": ["notifications.resend_notification"],
}


def carry_over(apps, schema_editor):
    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # Historical app configs have no models module, which create_permissions requires.
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
        app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model(settings.AUTH_USER_MODEL)

    def permission(name):
        app_label, codename = name.split(".")
        return Permission.objects.using(using).filter(
            content_type__app_label=app_label, codename=codename).first()

    for old_name, new_names in CARRY_OVER.items():
        old = permission(old_name)
        new = [p for p in map(permission, new_names) if p is not None]
        if old is None or not new:
            continue
        for group in Group.objects.using(using).filter(permissions=old):
            group.permissions.add(*new)
        for user in User.objects.using(using).filter(user_permissions=old):
            user.user_permissions.add(*new)


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("customers", "0004_export_customers_permission"),
        ("imports", "0004_run_import_and_export_permissions"),
        ("integrations", "0003_manage_api_keys_permission"),
        ("inventory", "0004_adjust_stock_permission"),
        ("notifications", "0003_resend_notification_permission"),
        ("orders", "0006_order_action_permissions"),
        ("payments", "0001_initial"),
        ("plugins", "0003_manage_plugins_permission"),
    ]

    operations = [migrations.RunPython(carry_over, migrations.RunPython.noop)]
