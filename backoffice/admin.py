"""Admin classes for the framework's own models, restyled with unfold.

Django's auth and django-q2 register plain ``ModelAdmin`` classes; re-registering them on unfold's
``ModelAdmin`` gives them the same look, filters and forms as the rest of the back office.

Users and groups are where staff access is managed, so they guard it: only staff who may change
groups (the Owner role) make someone staff, give groups or permissions, or edit a staff account;
only superusers touch superusers. The built-in roles (``backoffice.roles``) are read-only here:
"Copy role" makes an editable copy.
"""

import csv
import functools

from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Schedule, Success
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from backoffice import permissions, roles
from backoffice.admin_access import GuardedActionsMixin, permission_check, staff_actor
from backoffice.admin_navigation import in_sidebar_words
from backoffice.customers.admin import CustomerProfileInline, download_personal_data
from backoffice.customers.admin import close_accounts as close_accounts_action
from backoffice.customers.services import EXPORT_COLUMNS
from backoffice.customers.services import export_customers as customer_rows

admin.site.unregister(User)
admin.site.unregister(Group)


def _spreadsheet_safe(value) -> object:
    """A cell a spreadsheet will not run as a formula (names and emails come from customers)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def manages_staff(request: HttpRequest) -> bool:
    """Whether the user may give staff access: make someone staff, give groups or
    permissions, edit a staff account."""
    return request.user.is_superuser or request.user.has_perm("auth.change_group")


@admin.register(User)
class UserAdmin(GuardedActionsMixin, BaseUserAdmin, ModelAdmin):
    inlines = [CustomerProfileInline]
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    list_filter_submit = True
    actions = ["export_customers", "export_personal_data", "close_accounts"]

    has_export_customers_permission = permission_check(permissions.EXPORT_CUSTOMERS)
    has_erase_customers_permission = permission_check(permissions.ERASE_CUSTOMERS)

    def _may_edit(self, request: HttpRequest, obj) -> bool:
        if request.user.is_superuser:
            return True
        if obj.is_superuser:
            return False
        return not obj.is_staff or manages_staff(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (
            obj is None or self._may_edit(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (
            obj is None or self._may_edit(request, obj))

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and not request.user.is_superuser:
            fields.append("is_superuser")
            if not manages_staff(request):
                fields += ["is_staff", "groups", "user_permissions"]
        return fields

    @action(description=_("Export customers (CSV)"), permissions=["export_customers"])
    def export_customers(self, request: HttpRequest, queryset) -> HttpResponse:
        """The selected customers (staff accounts left out) as a CSV file; the export is
        recorded in the audit trail."""
        rows = customer_rows(queryset, actor=staff_actor(request))
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="customers.csv"'
        writer = csv.writer(response)
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            writer.writerow([_spreadsheet_safe(cell) for cell in row])
        return response

    @action(description=_("Download the customer's data (JSON)"),
            permissions=["export_customers"])
    def export_personal_data(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """One customer's data, as the storefront's ``GET /me/export`` gives it; audited."""
        return download_personal_data(self, request, queryset)

    @action(description=_("Close accounts and erase personal data"),
            permissions=["erase_customers"])
    def close_accounts(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """On the customer's request, after a confirmation page (``privacy.close_account``)."""
        return close_accounts_action(self, request, queryset)


@admin.register(Group)
class GroupAdmin(GuardedActionsMixin, BaseGroupAdmin, ModelAdmin):
    """Groups are the staff roles. The built-in ones are set by the back office at every
    migrate, so they are read-only here; "Copy role" makes an editable copy."""

    list_display = ["name", "kind", "permission_count", "member_count"]
    actions = ["copy_roles"]

    def get_queryset(self, request: HttpRequest):
        def counted(model, field: str) -> Subquery:
            return Coalesce(Subquery(
                model.objects.filter(group_id=OuterRef("pk")).order_by().values(field)
                .annotate(n=Count("pk")).values("n"), output_field=IntegerField()), 0)

        return super().get_queryset(request).annotate(
            n_permissions=counted(Group.permissions.through, "group_id"),
            n_members=counted(User.groups.through, "group_id"),
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_change_permission(request, obj) and not (
            obj is not None and roles.is_built_in(obj))

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (
            obj is not None and roles.is_built_in(obj))

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        group = self.get_object(request, object_id)
        if group is not None and roles.is_built_in(group) and request.method == "GET":
            messages.info(request, _(
                "%(name)s is a built-in role: the back office sets its permissions at every "
                "update. To change them, select it in the list and use \"Copy role\", then "
                "edit the copy.") % {"name": group.name})
        return super().change_view(request, object_id, form_url, extra_context)

    @display(description=_("kind"), label={"built-in": "info", "custom": ""})
    def kind(self, obj) -> str:
        return "built-in" if roles.is_built_in(obj) else "custom"

    @display(description=_("permissions"), ordering="n_permissions")
    def permission_count(self, obj) -> int:
        return obj.n_permissions

    @display(description=_("members"), ordering="n_members")
    def member_count(self, obj) -> int:
        return obj.n_members

    @action(description=_("Copy role"), permissions=["add"])
    def copy_roles(self, request: HttpRequest, queryset) -> None:
        actor = staff_actor(request)
        copies = [roles.copy_role(group, actor=actor) for group in queryset.order_by("name")]
        messages.success(request, ngettext(
            "Copied as %(names)s: edit the copy, it is never reset.",
            "Copied as %(names)s: edit the copies, they are never reset.", len(copies),
        ) % {"names": ", ".join(copy.name for copy in copies)})


def _restyle(model, base_admin) -> None:
    """Register ``model`` again with ``base_admin`` mixed onto unfold's ModelAdmin."""
    if not admin.site.is_registered(model):
        return
    admin.site.unregister(model)
    admin.site.register(model, type(base_admin.__name__, (base_admin, ModelAdmin), {}))


_restyle(Schedule, q_admin.ScheduleAdmin)
_restyle(Success, q_admin.TaskAdmin)
_restyle(Failure, q_admin.FailAdmin)
_restyle(OrmQ, q_admin.QueueAdmin)


def _app_list_in_sidebar_words(get_app_list):
    """The site's app list (the dashboard, "All applications", app pages) in the sidebar's
    words. Wrapped on the site unfold made, which every admin registered on already."""

    @functools.wraps(get_app_list)
    def get_app_list_in_sidebar_words(request, app_label=None):
        return in_sidebar_words(get_app_list(request, app_label))

    return get_app_list_in_sidebar_words


admin.site.get_app_list = _app_list_in_sidebar_words(admin.site.get_app_list)
