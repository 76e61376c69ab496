"""Permissions in the admin pages: what a staff member is offered, and a 403 for the rest.

The services check every action again (``backoffice.permissions.require``) and raise
``ActionNotPermitted``, a ``PermissionDenied``, which Django answers with a 403 wherever a view
lets it through. Here the pages only offer what the user may do:

- ``permission_check("orders.refund_order")`` makes a ``has_<name>_permission`` method for
  ``@action(permissions=["<name>"])``: unfold hides detail actions and Django hides bulk actions
  the user may not use, and unfold answers a direct request of a detail action with a 403;
- ``GuardedActionsMixin`` answers a POSTed bulk action that the page does not offer the user
  with a 403 (Django would only say "No action selected").
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from backoffice.inventory.services import Actor


def permission_check(permission: str) -> Callable:
    """A ``has_<x>_permission(request, obj=None)`` method: the user has ``permission``."""

    def has_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm(permission)

    has_permission.__doc__ = f"Whether the user has {permission}."
    return has_permission


def staff_actor(request: HttpRequest) -> Actor:
    """The signed-in staff member, as the services' actor."""
    return Actor(user=request.user, label=request.user.get_username())


class GuardedActionsMixin:
    """For a ``ModelAdmin`` with bulk actions: a POST naming one of its actions that this user
    is not offered is a 403, never a silent "no action selected"."""

    def changelist_view(self, request: HttpRequest, extra_context=None):
        name = request.POST.get("action") if request.method == "POST" else None
        if name and helpers.ACTION_CHECKBOX_NAME in request.POST:
            declared = {action_name for _func, action_name, _desc in self._get_base_actions()}
            if name in declared and name not in self.get_actions(request):
                raise PermissionDenied(
                    f"{request.user.get_username()} may not use the action {name!r}.")
        return super().changelist_view(request, extra_context)
