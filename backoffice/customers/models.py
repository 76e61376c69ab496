"""Customers: a profile beside Django's user, addresses, and the API's refresh tokens.

A customer logs in with their email: the user's ``username`` is the email, lower-cased, which
makes emails unique by a database constraint, not a read-then-write.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class CustomerProfile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer_profile"
    )
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    accepts_marketing = models.BooleanField(_("accepts marketing"), default=False)
    preferences = models.JSONField(_("preferences"), default=dict, blank=True)
    # The channels (codes: "email", "sms"...) of the messages about their orders; NULL until
    # they choose: the store's defaults (NOTIFICATION_DEFAULT_CHANNELS).
    notification_channels = models.JSONField(_("notification channels"), null=True, blank=True)
    language = models.CharField(
        _("language"), max_length=10, blank=True,
        help_text=_("Messages use it where a template in it exists (blank: the store's)."),
    )
    # Set when the customer opened the link mailed to them (or a password-reset link, which
    # proves the same): only then do guest orders placed with that email join the account.
    email_verified_at = models.DateTimeField(_("email verified at"), null=True, blank=True)
    # Set when the account was closed and its personal data erased (``customers.privacy``).
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("customer profile")
        verbose_name_plural = _("customer profiles")
        permissions = [
            ("export_customers", _("Can export customers")),
            ("erase_customers", _("Can close customers' accounts and erase their data")),
        ]

    def __str__(self) -> str:
        return str(self.user)


class Address(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="addresses"
    )
    first_name = models.CharField(_("first name"), max_length=100)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    company = models.CharField(_("company"), max_length=150, blank=True)
    line1 = models.CharField(_("address line 1"), max_length=255)
    line2 = models.CharField(_("address line 2"), max_length=255, blank=True)
    city = models.CharField(_("city"), max_length=100)
    region = models.CharField(_("region / county"), max_length=100, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=20, blank=True)
    country = models.CharField(_("country"), max_length=2, help_text=_("ISO 3166-1 alpha-2"))
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    is_default_shipping = models.BooleanField(_("default shipping address"), default=False)
    is_default_billing = models.BooleanField(_("default billing address"), default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("address")
        verbose_name_plural = _("addresses")
        ordering = ["-is_default_shipping", "-is_default_billing", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_default_shipping=True),
                name="one_default_shipping_address",
            ),
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_default_billing=True),
                name="one_default_billing_address",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}, {self.line1}, {self.city}".strip()


class TokenFamily(models.Model):
    """One log-in: every refresh token rotated from it. Revoking it logs that session out."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="token_families"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=40, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name = _("session")
        verbose_name_plural = _("sessions")

    def __str__(self) -> str:
        return f"session {self.pk} of user {self.user_id}"


class RefreshToken(models.Model):
    """A refresh token, stored only as its SHA-256: a database leak gives no usable token."""

    family = models.ForeignKey(TokenFamily, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"refresh token {self.pk} of {self.family_id}"
