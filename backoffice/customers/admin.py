"""Customers in the admin: profiles on the user page, addresses, and API sessions; closing an
account and downloading a customer's data (the customers' list's actions, ``backoffice.admin``)."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.admin import ModelAdmin, StackedInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminTextInputWidget, UnfoldBooleanSwitchWidget

from backoffice.admin_access import staff_actor
from backoffice.catalog.admin import form_action
from backoffice.customers import privacy
from backoffice.customers.models import Address, CustomerProfile, TokenFamily
from backoffice.customers.services import AccountError, revoke_sessions


class CustomerProfileForm(forms.ModelForm):
    """The phone in E.164 and the channels as checkboxes: the same rules as the API's."""

    channels = forms.MultipleChoiceField(
        label=_("Messages about orders by"), required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked and never chosen: the store's defaults."),
    )

    class Meta:
        model = CustomerProfile
        fields = ["phone", "language", "accepts_marketing", "preferences"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from backoffice.notifications.services import active_channels

        codes = sorted(set(active_channels()) | {"email", "sms"})
        self.fields["channels"].choices = [(code, code) for code in codes]
        self.fields["channels"].initial = self.instance.notification_channels or []

    def clean_phone(self) -> str:
        from backoffice.notifications.phones import InvalidPhoneNumber, to_e164

        raw = self.cleaned_data.get("phone", "")
        try:
            return to_e164(raw) if raw.strip() else ""
        except InvalidPhoneNumber as exc:
            raise forms.ValidationError(str(exc)) from None

    def save(self, commit: bool = True):
        chosen = self.cleaned_data.get("channels") or []
        if chosen or self.instance.notification_channels is not None:
            self.instance.notification_channels = sorted(chosen)
        return super().save(commit)


class CustomerProfileInline(StackedInline):
    model = CustomerProfile
    form = CustomerProfileForm
    can_delete = False
    extra = 0
    fields = ["phone", "channels", "language", "accepts_marketing", "preferences", "closed_at"]
    readonly_fields = ["closed_at"]


@admin.register(Address)
class AddressAdmin(ModelAdmin):
    list_display = ["__str__", "customer", "city", "country", "is_default_shipping",
                    "is_default_billing"]
    list_filter = ["country", "is_default_shipping", "is_default_billing"]
    search_fields = ["user__email", "first_name", "last_name", "line1", "city", "phone"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    show_full_result_count = False

    @display(description=_("customer"), ordering="user__email")
    def customer(self, obj) -> str:
        return obj.user.email


@admin.register(TokenFamily)
class SessionAdmin(ModelAdmin):
    """API log-ins. Revoking one logs that device out at once."""

    list_display = ["customer", "user_agent", "created_at", "revoked_at", "revoked_reason"]
    list_filter = ["revoked_reason"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    readonly_fields = ["user", "user_agent", "created_at", "revoked_at", "revoked_reason"]
    actions = ["revoke"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @display(description=_("customer"), ordering="user__email")
    def customer(self, obj) -> str:
        return obj.user.email

    @action(description=_("Revoke the selected sessions"), permissions=["delete"])
    def revoke(self, request, queryset) -> None:
        count = revoke_sessions(family_ids=list(queryset.values_list("pk", flat=True)))
        messages.success(request, ngettext("%(count)d session revoked.",
                                           "%(count)d sessions revoked.", count)
                         % {"count": count})


# --- The customers' list: closing accounts, downloading a customer's data ------------------------


class CloseAccountsForm(forms.Form):
    reason = forms.CharField(
        label=_("Why"), max_length=200, widget=UnfoldAdminTextInputWidget,
        help_text=_("The customer's request, e.g. \"their email of 3 May, ticket 1234\". Kept "
                    "in the audit trail: write no personal data here."),
    )
    confirm = forms.BooleanField(
        label=_("I understand: their personal data is erased for good, and they cannot log in "
                "any more."), widget=UnfoldBooleanSwitchWidget,
    )


def close_accounts(modeladmin, request: HttpRequest, queryset) -> HttpResponse | None:
    """The bulk action: a confirmation page (why, and "I understand"), then each account
    closed by ``privacy.close_account``; staff accounts and closed ones are left, saying why."""

    def apply(data: dict) -> None:
        actor = staff_actor(request)
        closed = 0
        for user in queryset.order_by("pk"):
            try:
                privacy.close_account(user, actor=actor, reason=data["reason"])
            except AccountError as exc:
                modeladmin.message_user(request, f"{user.get_username()}: {exc}",
                                        messages.WARNING)
            else:
                closed += 1
        if closed:
            modeladmin.message_user(request, ngettext(
                "%(count)d account closed: its personal data is erased and a confirmation is "
                "on its way.",
                "%(count)d accounts closed: their personal data is erased and a confirmation "
                "is on its way to each.", closed) % {"count": closed}, messages.SUCCESS)

    return form_action(
        modeladmin, request, queryset, form_class=CloseAccountsForm,
        action_name="close_accounts",
        intro=_("Close these accounts and erase their personal data. Their orders stay, "
                "without contact details."),
        submit_label=_("Close and erase"), apply=apply,
    )


def download_personal_data(modeladmin, request: HttpRequest, queryset) -> HttpResponse | None:
    """The bulk action: one customer's data as a JSON file (what ``GET /me/export`` gives)."""
    users = list(queryset[:2])
    if len(users) != 1:
        modeladmin.message_user(request, _("Select one customer: their data is one file."),
                                messages.WARNING)
        return None
    data = privacy.export_account(users[0], actor=staff_actor(request))
    response = HttpResponse(json.dumps(data, cls=DjangoJSONEncoder, indent=2,
                                       ensure_ascii=False),
                            content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="customer-{users[0].pk}.json"'
    return response
