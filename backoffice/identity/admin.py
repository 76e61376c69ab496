"""Sign-in providers and linked sign-ins in the admin.

The client secret is write-only: typed once, sealed (Fernet), never shown back; a blank field
keeps the stored one. Changing a provider needs ``identity.change_identityprovider`` (the Owner
role), checked again by the service, which writes the audit trail.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from backoffice.admin_access import staff_actor
from backoffice.admin_records import ReadOnlyRecord
from backoffice.identity import client, services
from backoffice.identity.models import ExternalIdentity, IdentityProvider


class IdentityProviderForm(forms.ModelForm):
    issuer = forms.URLField(label=_("issuer URL"), max_length=300, assume_scheme="https",
                            help_text=IdentityProvider._meta.get_field("issuer").help_text)
    client_secret = forms.CharField(
        label=_("client secret"), required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored encrypted and never shown again; leave blank to keep the current "
                    "one."))

    class Meta:
        model = IdentityProvider
        fields = ["name", "slug", "issuer", "client_id", "client_secret", "token_auth_method",
                  "scopes", "for_staff", "for_customers", "allowed_email_domains",
                  "email_verified_claim", "group_claim", "group_mapping",
                  "storefront_redirect_uris", "is_active"]

    def clean_issuer(self) -> str:
        issuer = self.cleaned_data["issuer"].rstrip("/")
        if not services.issuer_is_secure(issuer, debug=settings.DEBUG):
            raise forms.ValidationError(_("The issuer must be an https:// URL."))
        return issuer

    def clean_group_mapping(self) -> dict:
        mapping = self.cleaned_data.get("group_mapping") or {}
        if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
            raise forms.ValidationError(_('A JSON object of claim value → role name.'))
        unknown = sorted(set(mapping.values()) - set(
            Group.objects.filter(name__in=mapping.values()).values_list("name", flat=True)))
        if unknown:
            raise forms.ValidationError(_("No such role: %(names)s.") %
                                        {"names": ", ".join(unknown)})
        return mapping

    def clean(self):
        data = super().clean()
        if data.get("for_staff") and not (data.get("allowed_email_domains", "").strip()
                                          or data.get("group_mapping")):
            raise forms.ValidationError(_("A staff sign-in needs allowed email domains, a group "
                                          "mapping, or both: otherwise anyone with an account "
                                          "at the provider could enter."))
        if data.get("for_customers") and not data.get("storefront_redirect_uris", "").strip():
            self.add_error("storefront_redirect_uris", _("Customers' sign-in needs the "
                                                         "storefront's redirect URI(s)."))
        if not self.instance.pk and not data.get("client_secret"):
            self.add_error("client_secret", _("The provider gave you a client secret."))
        return data


@admin.register(IdentityProvider)
class IdentityProviderAdmin(ModelAdmin):
    form = IdentityProviderForm
    list_display = ["name", "slug", "issuer", "for_staff", "for_customers", "is_active",
                    "secret_state"]
    readonly_fields = ["staff_callback_url"]
    actions_detail = ["check_connection"]
    prepopulated_fields = {"slug": ["name"]}

    @display(description=_("client secret"))
    def secret_state(self, obj) -> str:
        return "••••••••" if obj.client_secret_sealed else "—"

    @display(description=_("staff redirect URI"))
    def staff_callback_url(self, obj) -> str:
        if not obj.pk:
            return _("Shown once saved.")
        return f"{settings.PUBLIC_URL}/admin/sso/{obj.slug}/callback/"

    def save_model(self, request, obj, form, change) -> None:
        services.save_provider(obj, secret=form.cleaned_data.get("client_secret") or None,
                               actor=staff_actor(request))

    @action(description=_("Check the connection"), url_path="check")
    def check_connection(self, request, object_id):
        from django.shortcuts import redirect

        provider = IdentityProvider.objects.get(pk=object_id)
        client.forget(provider.pk)
        try:
            endpoints = client.discovery(provider)
        except client.SignInFailed as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Discovery and keys read: %(endpoints)s.") % {
                "endpoints": ", ".join(f"{k}: {v}" for k, v in endpoints.items())})
        return redirect("admin:identity_identityprovider_change", object_id)


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(ReadOnlyRecord, ModelAdmin):
    """Who is linked to which provider account; unlinking is a delete (staff with the
    permission)."""

    list_display = ["user", "provider", "email", "created_at", "last_used_at"]
    list_filter = ["provider"]
    search_fields = ["=email", "=subject", "user__username"]
    list_select_related = ["user", "provider"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("identity.delete_externalidentity")
