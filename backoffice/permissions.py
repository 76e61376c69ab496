"""One permission check on the service path: ``require(actor, "orders.refund_order")``.

The services that move money, stock, plugins and keys call ``require`` first, whoever calls them
(the admin, the API, a job), so a view that forgets a check still cannot do what the person may
not. Who the ``Actor`` is decides how it is checked:

- a staff user: Django's permissions (their own and their groups', see ``backoffice.roles``);
  an inactive or anonymous user has none;
- an API key (``Actor.scopes`` set): its scopes, each standing for the permission names in
  ``SCOPE_PERMISSIONS``, so a key and a person are held to the same names;
- nobody (a job, a webhook, the payment window, a command): the system, always allowed.

A refusal is ``ActionNotPermitted``, a ``PermissionDenied``: the admin answers it with a 403 (an
uncaught ``PermissionDenied`` is Django's 403) and the API with its 403 error shape. Nothing has
changed when it is raised.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

# The permissions of the actions that matter, and what each lets a person do, in the words of a
# refusal ("clerk may not refund orders"). Declared in their models' ``Meta.permissions``.
SHIP_ORDER = "orders.ship_order"
DELIVER_ORDER = "orders.deliver_order"
CANCEL_ORDER = "orders.cancel_order"
CANCEL_UNPAID_ORDER = "orders.cancel_unpaid_order"
REFUND_ORDER = "orders.refund_order"
MARK_ORDER_PAID = "orders.mark_order_paid"
ADD_ORDER_NOTE = "orders.add_order_note"
EXPORT_ORDERS = "orders.export_orders"
ADJUST_STOCK = "inventory.adjust_stock"
RUN_IMPORT = "imports.run_import"
RUN_EXPORT = "imports.run_export"
MANAGE_PLUGINS = "plugins.manage_plugins"
MANAGE_API_KEYS = "integrations.manage_api_keys"
EXPORT_CUSTOMERS = "customers.export_customers"
ERASE_CUSTOMERS = "customers.erase_customers"
RESEND_NOTIFICATION = "notifications.resend_notification"
# Declared by the reports app (``backoffice.reports``), which may not be installed.
VIEW_REPORTS = "reports.view_reports"
COPY_ROLE = "auth.add_group"

ACTIONS: dict[str, str] = {
    SHIP_ORDER: "ship orders",
    DELIVER_ORDER: "mark orders delivered",
    CANCEL_ORDER: "cancel orders",
    CANCEL_UNPAID_ORDER: "cancel unpaid orders",
    REFUND_ORDER: "refund orders",
    MARK_ORDER_PAID: "mark orders paid",
    ADD_ORDER_NOTE: "add notes to orders",
    EXPORT_ORDERS: "export orders",
    ADJUST_STOCK: "adjust stock",
    RUN_IMPORT: "run imports",
    RUN_EXPORT: "export the catalog",
    MANAGE_PLUGINS: "manage plugins",
    MANAGE_API_KEYS: "manage API keys",
    EXPORT_CUSTOMERS: "export customers",
    ERASE_CUSTOMERS: "close customers' accounts",
    RESEND_NOTIFICATION: "resend notifications",
    VIEW_REPORTS: "view reports",
    COPY_ROLE: "copy roles",
}

# What an API key's scope (``integrations.Scope``) allows, as permission names. A key writing
# the catalog runs the import engine (which writes the stock a product record carries).
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    "catalog:write": frozenset({RUN_IMPORT}),
    "stock:write": frozenset({ADJUST_STOCK}),
    "orders:read": frozenset({"orders.view_order"}),
    "orders:write": frozenset({
        "orders.view_order", SHIP_ORDER, DELIVER_ORDER, CANCEL_ORDER, MARK_ORDER_PAID,
        ADD_ORDER_NOTE,
    }),
}


class ActionNotPermitted(PermissionDenied):
    """The actor may not do this; nothing was changed. ``permission`` names what it needs."""

    code = "permission_denied"

    def __init__(self, permission: str, who: str) -> None:
        self.permission = permission
        self.who = who
        action = ACTIONS.get(permission, f"do this ({permission})")
        super().__init__(f"{who} may not {action}: that needs the permission {permission}.")


def is_system(actor: Any) -> bool:
    """A job, a webhook, a command: no person and no key."""
    return getattr(actor, "user", None) is None and getattr(actor, "scopes", None) is None


def actor_name(actor: Any) -> str:
    """Who the actor is, for people: the username, the key's label, or the job's label."""
    user = getattr(actor, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user.get_username()
    return getattr(actor, "label", "") or ("an anonymous user" if user is not None else "system")


def has_permission(actor: Any, permission: str) -> bool:
    """Whether ``actor`` may do what ``permission`` (``app_label.codename``) allows."""
    scopes = getattr(actor, "scopes", None)
    if scopes is not None:
        return any(permission in SCOPE_PERMISSIONS.get(scope, ()) for scope in scopes)
    user = getattr(actor, "user", None)
    if user is None:
        return True
    if not getattr(user, "is_authenticated", False):
        return False
    return user.has_perm(permission)


def require(actor: Any, permission: str) -> None:
    """Raise ``ActionNotPermitted`` unless ``actor`` has ``permission``."""
    if not has_permission(actor, permission):
        raise ActionNotPermitted(permission, actor_name(actor))


def require_any(actor: Any, *permissions: str) -> None:
    """Raise ``ActionNotPermitted`` (naming the first) unless ``actor`` has one of them."""
    if not any(has_permission(actor, permission) for permission in permissions):
        raise ActionNotPermitted(permissions[0], actor_name(actor))
