"""The ready-made staff roles: Django groups, defined here as data (role name -> permissions).

A migration (``audit/0003_staff_roles``) creates the groups, and after every ``migrate`` the
``post_migrate`` handler below gives each built-in group exactly the permissions listed here:
added when missing, taken away when someone added others. Permission assignment happens there,
not in the data migration, on purpose: permissions exist only once every app has migrated and
Django's own ``post_migrate`` has created them (custom ones included, and those of apps added
later, such as reports), whereas a data migration sees the models as they were at its place in
the migration graph. Done after each migrate, the roles follow every new permission.

To customise a role, copy it ("Copy role" on the group, or ``copy_role``): the copy, "<name>
(copy)", has the same permissions and is never touched by a migrate. Built-in groups are
read-only in the admin for that reason.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from backoffice import permissions as perms

logger = logging.getLogger(__name__)

OWNER = "Owner"
CATALOG_MANAGER = "Catalog manager"
FULFILMENT_CLERK = "Fulfilment clerk"
CUSTOMER_SUPPORT = "Customer support"
FINANCE = "Finance"

ALL = "__all__"  # every permission there is
# Apps whose permissions a role may name before they are installed: they are skipped until then.
OPTIONAL_APPS = frozenset({"reports"})


def _model(label: str, *actions: str) -> set[str]:
    """``_model("catalog.product", "view", "change")`` -> {"catalog.view_product", ...}."""
    app_label, model = label.split(".")
    return {f"{app_label}.{action}_{model}" for action in actions}


CRUD = ("view", "add", "change", "delete")

ROLES: dict[str, frozenset[str] | str] = {
    # Everything, the management of staff and roles included.
    OWNER: ALL,
    # Products, categories, variants and their prices and images, imports and catalog exports,
    # stock counts and adjustments; warehouses seen, not changed.
    CATALOG_MANAGER: frozenset({
        *_model("catalog.product", *CRUD), *_model("catalog.variant", *CRUD),
        *_model("catalog.category", *CRUD), *_model("catalog.productimage", *CRUD),
        *_model("imports.importjob", "view", "add"), perms.RUN_IMPORT,
        *_model("imports.exportjob", "view", "add"), perms.RUN_EXPORT,
        *_model("inventory.stock", "view", "change"), *_model("inventory.lowstock", "view"),
        *_model("inventory.stockmovement", "view"), *_model("inventory.warehouse", "view"),
        perms.ADJUST_STOCK,
    }),
    # Orders seen, shipped and delivered, packing slips printed; stock adjusted by a movement.
    # No refunds, no mark paid, no cancelling, no price or catalog changes.
    FULFILMENT_CLERK: frozenset({
        *_model("orders.order", "view"), perms.SHIP_ORDER, perms.DELIVER_ORDER,
        *_model("inventory.stock", "view"), *_model("inventory.lowstock", "view"),
        *_model("inventory.stockmovement", "view"), *_model("inventory.warehouse", "view"),
        perms.ADJUST_STOCK,
        *_model("catalog.product", "view"), *_model("catalog.variant", "view"),
    }),
    # Customers (their accounts, profiles and addresses; closing an account on the customer's
    # request), orders seen, unpaid orders cancelled, notes; notifications seen and resent.
    CUSTOMER_SUPPORT: frozenset({
        *_model("auth.user", "view", "change"),
        *_model("customers.customerprofile", "view", "change"), perms.ERASE_CUSTOMERS,
        *_model("customers.address", *CRUD),
        *_model("orders.order", "view"), perms.CANCEL_UNPAID_ORDER, perms.ADD_ORDER_NOTE,
        *_model("notifications.notification", "view"), perms.RESEND_NOTIFICATION,
    }),
    # Payments, refunds, mark paid, reports and exports; orders and the catalog seen, never
    # edited.
    FINANCE: frozenset({
        *_model("orders.order", "view"), perms.REFUND_ORDER, perms.MARK_ORDER_PAID,
        perms.EXPORT_ORDERS,
        *_model("payments.payment", "view", "change"),
        *_model("payments.paymentevent", "view", "change"),
        perms.VIEW_REPORTS,
        *_model("imports.exportjob", "view", "add"), perms.RUN_EXPORT,
        perms.EXPORT_CUSTOMERS, *_model("auth.user", "view"),
        *_model("catalog.product", "view"), *_model("catalog.variant", "view"),
    }),
}
BUILT_IN = frozenset(ROLES)


def is_built_in(group: Any) -> bool:
    return getattr(group, "name", group) in BUILT_IN


def role_permissions(permission_model: Any, name: str, *, using: str = "default") -> list[int]:
    """The ids of the permissions role ``name`` gets, among those that exist. A named
    permission that does not exist is skipped (and logged, unless its app is optional: the role
    gets it once the app is installed)."""
    wanted = ROLES[name]
    everything = permission_model.objects.using(using)
    if wanted == ALL:
        return list(everything.values_list("pk", flat=True))
    found = {
        f"{app_label}.{codename}": pk
        for pk, app_label, codename in everything.filter(
            content_type__app_label__in={p.split(".")[0] for p in wanted}
        ).values_list("pk", "content_type__app_label", "codename")
    }
    missing = sorted(p for p in wanted if p not in found
                     and p.split(".")[0] not in OPTIONAL_APPS)
    if missing:
        logger.warning("role %s: no such permissions (yet): %s", name, ", ".join(missing))
    return [found[p] for p in sorted(wanted) if p in found]


def sync_roles(*, group_model: Any = None, permission_model: Any = None,
               using: str = "default") -> dict[str, int]:
    """Create the built-in groups that are missing and give each exactly its permissions.
    Returns ``{role: number of permissions}``. Copies and other groups are left alone."""
    if group_model is None or permission_model is None:
        from django.contrib.auth.models import Group, Permission

        group_model, permission_model = Group, Permission
    counts = {}
    with transaction.atomic(using=using):
        for name in ROLES:
            group, _created = group_model.objects.using(using).get_or_create(name=name)
            ids = set(role_permissions(permission_model, name, using=using))
            have = set(group.permissions.values_list("pk", flat=True))
            if ids - have:
                group.permissions.add(*(ids - have))
            if have - ids:
                group.permissions.remove(*(have - ids))
            counts[name] = len(ids)
    return counts


def sync_roles_after_migrate(sender: Any, using: str = "default", **kwargs) -> None:
    """``post_migrate``: make every permission exist (those of apps that come after this one in
    ``INSTALLED_APPS`` are otherwise created later in the same signal), then sync the roles."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission
    from django.db import connections

    tables = set(connections[using].introspection.table_names())
    if not {Group._meta.db_table, Permission._meta.db_table} <= tables:
        return  # auth is not migrated on this database (yet)
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, interactive=False, using=using,
                           apps=global_apps)
    sync_roles(group_model=Group, permission_model=Permission, using=using)


def copy_name(name: str, taken: set[str]) -> str:
    """"<name> (copy)", or "(copy 2)", "(copy 3)"... when that is taken (at most 150 chars)."""
    candidate = f"{name[:140]} (copy)"
    number = 2
    while candidate in taken:
        candidate = f"{name[:136]} (copy {number})"
        number += 1
    return candidate


def copy_role(group: Any, *, actor: Any) -> Any:
    """A new group "<name> (copy)" with the same permissions, never reset by a migrate: how a
    built-in role is customised. Needs the permission to add groups."""
    from django.contrib.auth.models import Group

    from backoffice.audit.models import AuditAction
    from backoffice.audit.services import record

    perms.require(actor, perms.COPY_ROLE)
    with transaction.atomic():
        taken = set(Group.objects.filter(name__startswith=group.name[:136])
                    .values_list("name", flat=True))
        copy = Group.objects.create(name=copy_name(group.name, taken))
        permission_ids = list(group.permissions.values_list("pk", flat=True))
        copy.permissions.set(permission_ids)
        record(actor, AuditAction.ROLE_COPIED, copy,
               f"Copied the role {group.name} ({len(permission_ids)} permissions).",
               data={"from": group.name, "from_id": group.pk,
                     "permissions": len(permission_ids)})
    return copy
