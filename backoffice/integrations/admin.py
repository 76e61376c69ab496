"""API keys in the admin: the full key is shown once, right after it is created.

Creating and revoking keys needs ``integrations.manage_api_keys`` (checked again by the
services, which write both to the audit trail). A key is never edited (its scopes are what was
handed out) nor deleted (what it wrote stays attributed to it): revoke it and make another.
"""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from backoffice import permissions
from backoffice.admin_access import GuardedActionsMixin, permission_check, staff_actor
from backoffice.admin_records import ReadOnlyRecord
from backoffice.integrations.models import ApiKey, IntegrationWrite, Scope
from backoffice.integrations.services import create_api_key, revoke_api_keys


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(GuardedActionsMixin, ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "prefix", "scope_list", "created_at", "last_used_at", "state"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    has_manage_permission = permission_check(permissions.MANAGE_API_KEYS)

    def has_add_permission(self, request) -> bool:
        return self.has_manage_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        # A key's scopes never change after it is handed out: make a new key instead.
        return ["name", "scopes", "prefix", "created_by", "created_at", "last_used_at",
                "revoked_at"] if obj else []

    def get_fields(self, request, obj=None):
        return self.get_readonly_fields(request, obj) if obj else ["name", "scopes"]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return
        key, raw = create_api_key(
            name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"],
            created_by=request.user, actor=staff_actor(request),
        )
        obj.pk = key.pk
        messages.warning(request, format_html(
            "Copy this key now; it is not shown again: <code>{}</code>", raw,
        ))

    @display(description=_("scopes"))
    def scope_list(self, obj) -> str:
        return ", ".join(obj.scopes)

    @display(description=_("state"), label={"active": "success", "revoked": "danger"})
    def state(self, obj) -> str:
        return "revoked" if obj.revoked_at else "active"

    @action(description=_("Revoke the selected keys"), permissions=["manage"])
    def revoke(self, request, queryset) -> None:
        count = revoke_api_keys(key_ids=queryset.values_list("pk", flat=True),
                                actor=staff_actor(request))
        messages.success(request, ngettext("%(count)d key revoked.", "%(count)d keys revoked.",
                                           count) % {"count": count})


@admin.register(IntegrationWrite)
class IntegrationWriteAdmin(ReadOnlyRecord, ModelAdmin):
    """What each key wrote, newest first: a record, never edited."""

    list_display = ["created_at", "key", "endpoint", "reference", "changed"]
    list_filter = ["endpoint", "key"]
    list_select_related = ["key"]
    search_fields = ["reference", "key__name", "key__prefix"]
    show_full_result_count = False


    @display(description=_("what changed"))
    def changed(self, obj) -> str:
        return "; ".join(
            f"{entity}: " + ", ".join(f"{n} {action}" for action, n in actions.items())
            for entity, actions in obj.summary.items()
        )
