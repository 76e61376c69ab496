"""Admin classes for the framework's own models, restyled with unfold.

Django's auth and django-q2 register plain ``ModelAdmin`` classes; re-registering them on unfold's
``ModelAdmin`` gives them the same look, filters and forms as the rest of the back office.
"""

import functools

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Schedule, Success
from unfold.admin import ModelAdmin
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from backoffice.admin_navigation import in_sidebar_words
from backoffice.customers.admin import CustomerProfileInline

admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(BaseUserAdmin, ModelAdmin):
    inlines = [CustomerProfileInline]
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    list_filter_submit = True


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin, ModelAdmin):
    pass


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
