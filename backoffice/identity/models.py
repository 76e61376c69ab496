"""OpenID Connect sign-in: the providers the store trusts, and who signed in through them.

A person is known to a provider by ``sub``, which is unique and never reassigned within that
provider's issuer; an email can change owner or be unverified. So an account is found by
``(issuer, subject)`` and never by an email alone (``ExternalIdentity``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from backoffice import crypto


def _lines(text: str) -> list[str]:
    return [part.strip() for part in (text or "").replace(",", "\n").split() if part.strip()]


class IdentityProvider(models.Model):
    """An OpenID Provider this store trusts, for staff (the admin), customers (the API), or
    both. Endpoints and keys come from the issuer's discovery document."""

    name = models.CharField(_("name"), max_length=80,
                            help_text=_('Shown as "Sign in with <name>".'))
    slug = models.SlugField(_("code"), max_length=40, unique=True,
                            help_text=_("In the callback URLs; do not change it once "
                                        "registered with the provider."))
    issuer = models.URLField(
        _("issuer URL"), max_length=300,
        help_text=_("Exactly as in the provider's discovery document, e.g. "
                    "https://accounts.google.com"))
    client_id = models.CharField(_("client ID"), max_length=300)
    # Fernet-sealed ({"encrypted": ...}, backoffice.crypto); never shown back in the admin.
    client_secret_sealed = models.JSONField(_("client secret"), null=True, blank=True,
                                            editable=False)
    token_auth_method = models.CharField(
        _("client authentication"), max_length=30, default="client_secret_basic",
        choices=[("client_secret_basic", _("HTTP Basic (client_secret_basic)")),
                 ("client_secret_post", _("In the form (client_secret_post)"))],
        help_text=_("How the client ID and secret are sent to the token endpoint, as "
                    "registered with the provider."))
    scopes = models.CharField(_("scopes"), max_length=300, default="openid email profile")
    for_staff = models.BooleanField(_("staff sign-in to the admin"), default=False)
    for_customers = models.BooleanField(_("customer sign-in through the API"), default=False)
    allowed_email_domains = models.TextField(
        _("allowed email domains (staff)"), blank=True,
        help_text=_("One per line, e.g. example.com. Staff may enter only with a verified email "
                    "in one of them. Leave empty only with a group mapping."))
    email_verified_claim = models.CharField(
        _("email verified claim"), max_length=60, default="email_verified",
        help_text=_("The claim that says the email is verified (true). Microsoft Entra ID: "
                    "xms_edov, as an optional claim."))
    group_claim = models.CharField(
        _("group claim"), max_length=60, blank=True, default="groups",
        help_text=_("The ID-token claim holding the person's groups or roles."))
    group_mapping = models.JSONField(
        _("group mapping (staff)"), default=dict, blank=True,
        help_text=_('Claim value → back-office role, e.g. {"shop-admins": "Owner", '
                    '"warehouse": "Warehouse"}. When set, staff need at least one mapped '
                    "group to enter, and their roles follow the claim at every sign-in. "
                    "Nobody becomes superuser by a claim."))
    storefront_redirect_uris = models.TextField(
        _("storefront redirect URIs (customers)"), blank=True,
        help_text=_("One per line: where the provider may send shoppers back (the storefront's "
                    "callback page). Register the same URIs with the provider."))
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("sign-in provider")
        verbose_name_plural = _("sign-in providers")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def client_secret(self) -> str:
        return crypto.unseal(self.client_secret_sealed) if self.client_secret_sealed else ""

    @client_secret.setter
    def client_secret(self, value: str) -> None:
        self.client_secret_sealed = crypto.seal(value) if value else None

    @property
    def email_domains(self) -> list[str]:
        return [domain.lower().lstrip("@") for domain in _lines(self.allowed_email_domains)]

    @property
    def redirect_uris(self) -> list[str]:
        return _lines(self.storefront_redirect_uris)


class ExternalIdentity(models.Model):
    """A user's account at a provider: how a sign-in finds its user."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="external_identities")
    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE,
                                 related_name="identities")
    # The issuer at link time: a provider row edited to another issuer cannot take over
    # identities of the first one.
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    email = models.CharField(_("email at the provider"), max_length=254, blank=True)
    created_at = models.DateTimeField(_("linked"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last sign-in"), null=True, blank=True)

    class Meta:
        verbose_name = _("linked sign-in")
        verbose_name_plural = _("linked sign-ins")
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_subject"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} · {self.email or self.subject}"


class PendingSignIn(models.Model):
    """A customer sign-in between the authorization URL and the code coming back: the PKCE
    verifier and nonce stay here, server-side (never in the browser), found by the hash of
    ``state``, usable once, for ``SIGN_IN_TTL``."""

    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="+")
    state_hash = models.CharField(max_length=64, unique=True)
    nonce = models.CharField(max_length=100)
    code_verifier = models.CharField(max_length=128)
    redirect_uri = models.CharField(max_length=500)
    # Set when a signed-in customer links a provider to their account.
    link_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                  null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"sign-in {self.pk} with {self.provider_id}"
