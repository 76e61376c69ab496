"""Who a verified sign-in is: staff entering the admin, customers signing in through the API.

The rules (issue 16):
- An account is found by ``(issuer, sub)`` (``ExternalIdentity``), never by an email alone.
- An email counts only when the provider says it is verified (``email_verified`` or the
  provider's configured claim).
- Staff: the provider must be for staff; a verified email in an allowed domain and/or a mapped
  group let them in; mapped groups become their roles at every sign-in; nobody becomes
  superuser by a claim. A first sign-in creates the staff account, unless an account with that
  email exists: that one is linked only by its owner, signed in (``link_user``).
- Customers: a first sign-in links an existing account only when both the provider and the
  account have the email confirmed; otherwise a new account or a clear refusal. An account made
  here from a verified email is a confirmed one (guest orders with that email join it); from an
  unverified one it is mailed the usual confirmation link.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from backoffice.identity import client
from backoffice.identity.client import SignIn, SignInFailed
from backoffice.identity.models import ExternalIdentity, IdentityProvider, PendingSignIn

SIGN_IN_TTL = timedelta(minutes=10)


class AccountConflict(SignInFailed):
    """The sign-in is valid but cannot join or make an account (HTTP 409)."""


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def staff_provider(slug: str) -> IdentityProvider | None:
    return IdentityProvider.objects.filter(slug=slug, is_active=True, for_staff=True).first()


def customer_provider(slug: str) -> IdentityProvider | None:
    return IdentityProvider.objects.filter(slug=slug, is_active=True, for_customers=True).first()


def _claim_values(sign_in: SignIn, claim: str) -> set[str]:
    value = sign_in.claims.get(claim) if claim else None
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {str(item) for item in value}
    return set()


def _identity(sign_in: SignIn) -> ExternalIdentity | None:
    return (ExternalIdentity.objects.select_related("user")
            .filter(issuer=sign_in.issuer, subject=sign_in.subject).first())


def _link(user, provider: IdentityProvider, sign_in: SignIn, verified: bool) -> ExternalIdentity:
    try:
        with transaction.atomic():
            return ExternalIdentity.objects.create(
                user=user, provider=provider, issuer=sign_in.issuer, subject=sign_in.subject,
                email=sign_in.email if verified else "", last_used_at=timezone.now())
    except IntegrityError:
        raise AccountConflict("identity_taken", f"This {provider.name} account is linked to "
                              "another account already.") from None


def _touch(identity: ExternalIdentity, sign_in: SignIn, verified: bool) -> None:
    identity.last_used_at = timezone.now()
    fields = ["last_used_at"]
    if verified and sign_in.email and identity.email != sign_in.email:
        identity.email = sign_in.email
        fields.append("email")
    identity.save(update_fields=fields)


def _names(sign_in: SignIn) -> dict[str, str]:
    claims = sign_in.claims
    return {"first_name": str(claims.get("given_name") or "")[:150],
            "last_name": str(claims.get("family_name") or "")[:150]}


# --- Staff --------------------------------------------------------------------------------------


def _staff_groups(provider: IdentityProvider, sign_in: SignIn) -> list[Group] | None:
    """The roles the claim maps to (None when the provider maps none)."""
    if not provider.group_mapping:
        return None
    values = _claim_values(sign_in, provider.group_claim)
    names = {name for value, name in provider.group_mapping.items() if value in values}
    return list(Group.objects.filter(name__in=names))


@transaction.atomic
def staff_sign_in(provider: IdentityProvider, sign_in: SignIn, *,
                  link_user: AbstractBaseUser | None = None) -> AbstractBaseUser:
    """The staff user this verified sign-in lets into the admin; ``SignInFailed`` otherwise."""
    if not provider.for_staff:
        raise SignInFailed("not_allowed", f"{provider.name} is not a staff sign-in.")
    verified = sign_in.email_verified(provider.email_verified_claim)
    domains = provider.email_domains
    if not domains and not provider.group_mapping:
        raise SignInFailed("provider_misconfigured", f"{provider.name} lets nobody in yet: "
                           "set allowed email domains or a group mapping.")
    if domains:
        domain = sign_in.email.rpartition("@")[2]
        if not (verified and sign_in.email and domain in domains):
            raise SignInFailed("not_allowed", "This account may not enter the back office "
                               "(its email is not verified or not in an allowed domain).")
    groups = _staff_groups(provider, sign_in)
    if groups is not None and not groups:
        raise SignInFailed("not_allowed", "Your account has no role in this back office; ask "
                           "an administrator to add you to a mapped group.")
    identity = _identity(sign_in)
    if identity is not None:
        user = identity.user
        if not (user.is_staff or user.is_superuser):
            # Never turn a shopper's account into a staff one.
            raise AccountConflict("identity_taken", f"This {provider.name} account signs in to "
                                  "a customer account of the store; unlink it there first.")
        if link_user is not None and link_user.pk != user.pk:
            raise AccountConflict("identity_taken", f"This {provider.name} account is linked "
                                  "to another user already.")
        _touch(identity, sign_in, verified)
    elif link_user is not None:
        user = link_user
        _link(user, provider, sign_in, verified)
    else:
        user = _new_staff_user(provider, sign_in, verified)
    if not user.is_active:
        raise SignInFailed("inactive", "This account is switched off.")
    user = get_user_model().objects.select_for_update().get(pk=user.pk)
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if groups is not None:
        managed = set(Group.objects.filter(name__in=set(provider.group_mapping.values())))
        user.groups.remove(*(managed - set(groups)))
        user.groups.add(*groups)
    return user


def _new_staff_user(provider: IdentityProvider, sign_in: SignIn, verified: bool):
    users = get_user_model().objects
    email = sign_in.email if verified else ""
    if email and users.filter(email__iexact=email).exists():
        raise AccountConflict(
            "account_exists", "An account with this email exists already. Its owner links "
            f"{provider.name} to it: sign in with the password, then open the link page of "
            f"{provider.name} (/admin/sso/{provider.slug}/link/).")
    base = email or str(sign_in.claims.get("preferred_username") or "")[:100] or (
        f"{provider.slug}-{hashlib.sha256(sign_in.subject.encode()).hexdigest()[:10]}")
    username = base
    while users.filter(username=username).exists():
        username = f"{base[:130]}-{secrets.token_hex(3)}"
    user = users.create(username=username, email=email, is_staff=True, **_names(sign_in))
    user.set_unusable_password()
    user.save(update_fields=["password"])
    _link(user, provider, sign_in, verified)
    return user


# --- Customers ----------------------------------------------------------------------------------


def begin_customer_sign_in(provider: IdentityProvider, redirect_uri: str, *,
                           link_user: AbstractBaseUser | None = None) -> client.Authorization:
    """The provider's authorization URL for a shopper; state, nonce and PKCE verifier stay
    here until ``finish_customer_sign_in`` (at most ``SIGN_IN_TTL``)."""
    if redirect_uri not in provider.redirect_uris:
        raise SignInFailed("redirect_uri_not_allowed", "This redirect URI is not registered "
                           f"for {provider.name} in the back office.")
    made = client.authorization(provider, redirect_uri)
    now = timezone.now()
    PendingSignIn.objects.filter(expires_at__lt=now).delete()
    PendingSignIn.objects.create(
        provider=provider, state_hash=_hash(made.state), nonce=made.nonce,
        code_verifier=made.code_verifier, redirect_uri=redirect_uri, link_user=link_user,
        created_at=now, expires_at=now + SIGN_IN_TTL)
    return made


def finish_customer_sign_in(provider: IdentityProvider, *, state: str, code: str,
                            caller: AbstractBaseUser | None = None,
                            ) -> tuple[AbstractBaseUser, bool]:
    """The customer of a code sent back by the provider, and whether the account is new.

    A link started by a signed-in customer finishes only with that customer signed in
    (``caller``): otherwise someone could start a link to their own account and have another
    person's browser finish it, and that person's provider account would sign in to theirs."""
    pending = (PendingSignIn.objects.select_related("link_user")
               .filter(state_hash=_hash(state), provider=provider).first())
    # Used once: whoever deletes the row goes on; a replay finds nothing.
    if pending is None or not PendingSignIn.objects.filter(pk=pending.pk).delete()[0]:
        raise SignInFailed("invalid_state", "This sign-in is unknown or was used already; "
                           "start again.")
    if pending.expires_at <= timezone.now():
        raise SignInFailed("invalid_state", "This sign-in took too long; start again.")
    if pending.link_user_id is not None and (caller is None or caller.pk != pending.link_user_id):
        raise SignInFailed("invalid_state", "This link was started by a signed-in customer: "
                           "finish it with their access token.")
    sign_in = client.complete(provider, code=code, redirect_uri=pending.redirect_uri,
                              code_verifier=pending.code_verifier, nonce=pending.nonce)
    return customer_sign_in(provider, sign_in, link_user=pending.link_user)


def customer_sign_in(provider: IdentityProvider, sign_in: SignIn, *,
                     link_user: AbstractBaseUser | None = None) -> tuple[AbstractBaseUser, bool]:
    try:
        with transaction.atomic():
            return _customer_sign_in(provider, sign_in, link_user)
    except (IntegrityError, _Raced):
        # Two first sign-ins of one person at once: the other made the account; use it.
        with transaction.atomic():
            return _customer_sign_in(provider, sign_in, link_user)


def _refuse_staff(user) -> None:
    if user.is_staff or user.is_superuser:
        raise AccountConflict("account_exists", "This account cannot sign in to the store "
                              "this way.")


def _customer_sign_in(provider, sign_in, link_user):
    from backoffice.customers.models import CustomerProfile

    verified = sign_in.email_verified(provider.email_verified_claim)
    identity = _identity(sign_in)
    if link_user is not None:
        if identity is not None and identity.user_id != link_user.pk:
            raise AccountConflict("identity_taken", f"This {provider.name} account is linked "
                                  "to another account already.")
        if identity is None:
            _link(link_user, provider, sign_in, verified)
        else:
            _touch(identity, sign_in, verified)
        return link_user, False
    if identity is not None:
        user = identity.user
        if not user.is_active:
            raise SignInFailed("inactive", "This account is closed.")
        _refuse_staff(user)
        _touch(identity, sign_in, verified)
        return user, False
    email = sign_in.email
    if not email:
        raise SignInFailed("email_required", f"{provider.name} did not share an email "
                           "address; allow it (the 'email' scope) and try again.")
    user_model = get_user_model()
    existing = user_model.objects.filter(username=email).first()
    if existing is not None:
        _refuse_staff(existing)
        confirmed = CustomerProfile.objects.filter(
            user=existing, email_verified_at__isnull=False).exists()
        if verified and confirmed and existing.is_active:
            _link(existing, provider, sign_in, verified)
            return existing, False
        raise AccountConflict(
            "account_exists", "An account with this email exists. Log in with your password "
            f"and link {provider.name} from your account" + (
                "." if verified else f" ({provider.name} does not say this email is "
                                     "verified)."))
    return _new_customer(provider, sign_in, verified), True


class _Raced(Exception):
    """Another first sign-in of the same person made the account meanwhile."""


def _new_customer(provider, sign_in, verified):
    from backoffice.customers.services import AccountError, register_customer

    try:
        user = register_customer(email=sign_in.email, password=None, email_verified=verified,
                                 **_names(sign_in))
    except AccountError as exc:
        if exc.code == "email_taken":
            raise _Raced from None
        raise SignInFailed(exc.code, str(exc)) from None
    _link(user, provider, sign_in, verified)
    return user


@transaction.atomic
def unlink(user: AbstractBaseUser, identity_id: int) -> None:
    """Remove one of ``user``'s linked sign-ins; never the last way they have to sign in."""
    user = get_user_model().objects.select_for_update().get(pk=user.pk)
    identity = ExternalIdentity.objects.get(pk=identity_id, user=user)
    if not user.has_usable_password() and not user.external_identities.exclude(
            pk=identity.pk).exists():
        raise AccountConflict("last_sign_in_method", "This is your only way to sign in: link "
                              "another provider first.")
    identity.delete()


# --- Configuration ------------------------------------------------------------------------------


def issuer_is_secure(issuer: str, *, debug: bool) -> bool:
    """https, or http on this machine (a local provider in development and tests)."""
    from urllib.parse import urlsplit

    parts = urlsplit(issuer)
    local = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    return parts.scheme == "https" or (parts.scheme == "http" and (local or debug))


@transaction.atomic
def save_provider(provider: IdentityProvider, *, actor, secret: str | None = None) -> None:
    """Create or change a provider (``secret`` None keeps the stored one); audited."""
    from backoffice.audit.models import AuditAction
    from backoffice.audit.services import record
    from backoffice.permissions import require

    require(actor, "identity.add_identityprovider" if provider.pk is None
            else "identity.change_identityprovider")
    if secret is not None:
        provider.client_secret = secret
    provider.save()
    client.forget(provider.pk)
    record(actor, AuditAction.SIGN_IN_PROVIDER_CHANGED, provider,
           f"Sign-in provider {provider.name} saved" + (" with a new secret." if secret else "."),
           data={"issuer": provider.issuer, "for_staff": provider.for_staff,
                 "for_customers": provider.for_customers, "secret_changed": secret is not None})
