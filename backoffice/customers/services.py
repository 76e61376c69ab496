"""Customer accounts: registration, log-in tokens, passwords, profile and addresses.

Tokens: a short-lived JWT access token (``ACCESS_TOKEN_LIFETIME``) and an opaque refresh token
(``REFRESH_TOKEN_LIFETIME``) that is stored hashed and rotates on every use. Presenting a refresh
token that was already used means it was stolen (or replayed): the whole family, the thief's copy
and the customer's, is revoked. Logging out, changing or resetting the password revoke families
too, and an access token is refused as soon as its family is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.tokens import PasswordResetTokenGenerator, default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from backoffice.customers.models import Address, CustomerProfile, RefreshToken, TokenFamily
from backoffice.notifications import services as notifications
from backoffice.notifications.phones import InvalidPhoneNumber, to_e164
from backoffice.orders.services import attach_guest_orders
from backoffice.plugin_host.events import emit_event

ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
REFRESH_TOKEN_LIFETIME = timedelta(days=30)
JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "storefront"


class AccountError(Exception):
    """A customer-facing refusal with a stable ``code``; nothing was changed."""

    code = "account_error"

    def __init__(self, message: str, *, field: str = "", code: str = "") -> None:
        super().__init__(message)
        self.field = field
        if code:
            self.code = code


class InvalidCredentials(AccountError):
    code = "invalid_credentials"


class InvalidToken(AccountError):
    code = "invalid_token"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives
    token_type: str = "Bearer"  # noqa: S105 - the scheme's name, not a secret


def _signing_key() -> str:
    # A key of its own: tokens are not forgeable from another use of SECRET_KEY's derivations.
    return hashlib.sha256(f"storefront-jwt:{settings.SECRET_KEY}".encode()).hexdigest()


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


# --- Registration and log-in --------------------------------------------------------------------


def _validate_password(password: str, user: AbstractBaseUser | None = None) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise AccountError(" ".join(exc.messages), field="password", code="weak_password") from exc


@transaction.atomic
def register_customer(
    *, email: str, password: str | None, first_name: str = "", last_name: str = "",
    phone: str = "", accepts_marketing: bool = False, email_verified: bool = False,
) -> AbstractBaseUser:
    """Create a customer account; ``AccountError`` when the email is taken or the password weak.

    ``password`` None: an account that signs in another way (an OpenID Provider), with no
    usable password. ``email_verified``: the email is known to be theirs (the provider says
    so): confirmed at once and the guest orders placed with it join; otherwise the usual
    confirmation mail goes out."""
    email = normalise_email(email)
    try:
        validate_email(email)
    except ValidationError:
        raise AccountError(
            "Enter a valid email address.", field="email", code="invalid_email"
        ) from None
    user_model = get_user_model()
    user = user_model(username=email, email=email, first_name=first_name, last_name=last_name)
    if password is None:
        user.set_unusable_password()
    else:
        _validate_password(password, user)
        user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise AccountError(
            "An account with this email exists already.", field="email", code="email_taken"
        ) from None
    CustomerProfile.objects.create(user=user, phone=_phone(phone),
                                   accepts_marketing=accepts_marketing,
                                   email_verified_at=timezone.now() if email_verified else None)
    if email_verified:
        attach_guest_orders(user)
    else:
        request_email_verification(user=user)
    emit_event("customer_registered", customer_id=user.pk, email=email)
    return user


def check_credentials(*, email: str, password: str) -> AbstractBaseUser:
    """The active customer with these credentials; the same error whatever was wrong."""
    user = authenticate(username=normalise_email(email), password=password)
    if user is None or not user.is_active:
        raise InvalidCredentials("The email or the password is wrong.")
    return user


def start_session(user: AbstractBaseUser, *, user_agent: str = "") -> TokenPair:
    family = TokenFamily.objects.create(user=user, user_agent=user_agent[:255])
    return _issue(user, family)


def _issue(user: AbstractBaseUser, family: TokenFamily) -> TokenPair:
    now = timezone.now()
    raw_refresh = secrets.token_urlsafe(48)
    RefreshToken.objects.create(
        family=family, token_hash=_hash(raw_refresh), expires_at=now + REFRESH_TOKEN_LIFETIME
    )
    claims = {
        "sub": str(user.pk),
        "fam": str(family.pk),
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + ACCESS_TOKEN_LIFETIME,
        "jti": uuid.uuid4().hex,
    }
    access = jwt.encode(claims, _signing_key(), algorithm=JWT_ALGORITHM)
    return TokenPair(access, raw_refresh, int(ACCESS_TOKEN_LIFETIME.total_seconds()))


def session_for_access_token(token: str) -> tuple[AbstractBaseUser, uuid.UUID] | None:
    """``(user, session id)`` of an access token: the active user it belongs to and its
    session (``TokenFamily``, the ``fam`` claim), if the token is valid and the session live.
    One query."""
    try:
        claims = jwt.decode(
            token, _signing_key(), algorithms=[JWT_ALGORITHM], audience=JWT_AUDIENCE,
            options={"require": ["exp", "sub", "fam"]},
        )
        family_id = uuid.UUID(claims["fam"])
    except (jwt.PyJWTError, ValueError):
        return None
    user = get_user_model().objects.filter(
        pk=claims["sub"], is_active=True,
        token_families__id=family_id, token_families__revoked_at__isnull=True,
    ).first()
    return None if user is None else (user, family_id)


def user_for_access_token(token: str) -> AbstractBaseUser | None:
    """The active user an access token belongs to, if it is valid and its session is live."""
    found = session_for_access_token(token)
    return None if found is None else found[0]


def _revoke_families(queryset, reason: str) -> int:
    return queryset.filter(revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )


def refresh_session(*, refresh_token: str) -> TokenPair:
    """Trade a refresh token for a new pair. A reused token revokes its whole family."""
    with transaction.atomic():
        token = (
            RefreshToken.objects.select_for_update()
            .select_related("family__user")
            .filter(token_hash=_hash(refresh_token))
            .first()
        )
        if token is None:
            raise InvalidToken("This refresh token is not valid.")
        family = token.family
        if family.revoked_at is not None:
            raise InvalidToken("This session has ended; log in again.")
        if token.used_at is None:
            if token.expires_at <= timezone.now() or not family.user.is_active:
                raise InvalidToken("This session has expired; log in again.")
            token.used_at = timezone.now()
            token.save(update_fields=["used_at"])
            return _issue(family.user, family)
        # Reuse: the revocation must commit, so it happens here and the error comes after.
        _revoke_families(TokenFamily.objects.filter(pk=family.pk), "refresh token reused")
    raise InvalidToken("This refresh token was used already; the session is ended.")


def revoke_sessions(*, family_ids: list, reason: str = "revoked by staff") -> int:
    """End sessions by id (the admin's action); their tokens stop working at once."""
    return _revoke_families(TokenFamily.objects.filter(pk__in=family_ids), reason)


def sessions_of(user: AbstractBaseUser):
    """Every session of ``user``, ended ones too, each with ``last_used_at`` (its last log-in
    or refresh) and ``has_token`` (a refresh token left to use). One query."""
    unused = RefreshToken.objects.filter(family=OuterRef("pk"), used_at__isnull=True,
                                         expires_at__gt=timezone.now())
    return (TokenFamily.objects.filter(user=user)
            .annotate(last_used_at=Max("tokens__created_at"), has_token=Exists(unused)))


def live_sessions(user: AbstractBaseUser):
    """The customer's sessions that still work (not revoked, a refresh token left to use),
    most recently used first. One query."""
    return (sessions_of(user).filter(revoked_at__isnull=True, has_token=True)
            .order_by("-last_used_at", "-created_at"))


def revoke_session(*, user: AbstractBaseUser, session_id: Any) -> bool:
    """End one of ``user``'s sessions (a device); its tokens stop working at once. False when
    ``user`` has no such session (another customer's is not theirs to end); True for one that
    had ended already."""
    try:
        session_id = uuid.UUID(str(session_id))
    except ValueError:
        return False
    own = TokenFamily.objects.filter(pk=session_id, user=user)
    return bool(_revoke_families(own, "revoked by the customer")) or own.exists()


def log_out(*, refresh_token: str) -> None:
    """End the session the refresh token belongs to (unknown tokens are ignored)."""
    token = RefreshToken.objects.filter(token_hash=_hash(refresh_token)).only("family_id").first()
    if token is not None:
        _revoke_families(TokenFamily.objects.filter(pk=token.family_id), "logged out")


# --- Passwords ------------------------------------------------------------------------------


@transaction.atomic
def change_password(
    *, user: AbstractBaseUser, current_password: str, new_password: str, user_agent: str = ""
) -> TokenPair:
    """Change the password; every session ends and a new one starts for this client."""
    if not user.check_password(current_password):
        raise AccountError(
            "The current password is wrong.", field="current_password", code="invalid_password"
        )
    _validate_password(new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    _revoke_families(user.token_families.all(), "password changed")
    return start_session(user, user_agent=user_agent)


def request_password_reset(*, email: str) -> None:
    """Email a reset link if the account exists. The caller's answer never says which."""
    user = (
        get_user_model().objects.filter(username=normalise_email(email), is_active=True).first()
    )
    if user is None or not user.has_usable_password():
        return
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    link = settings.PASSWORD_RESET_URL.format(uid=uid, token=token)
    with transaction.atomic():
        notifications.account_email(user, "password_reset", link)


@transaction.atomic
def reset_password(*, uid: str, token: str, new_password: str) -> None:
    """Set a new password from a reset link; every session ends."""
    user = _user_from_uid(uid)
    if user is None or not default_token_generator.check_token(user, token):
        raise InvalidToken("This reset link is not valid or has expired.")
    _validate_password(new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    _revoke_families(user.token_families.all(), "password reset")
    # The link reached their mailbox: that verifies the email as well.
    _mark_email_verified(user)


# --- Email verification -------------------------------------------------------------------


class EmailVerificationTokenGenerator(PasswordResetTokenGenerator):
    """Tokens for the "confirm your email" link: their own salt (a reset token is no
    verification token, nor the other way round), and void once the email is verified or
    changed."""

    key_salt = "backoffice.customers.email-verification"

    def _make_hash_value(self, user, timestamp) -> str:
        profile = CustomerProfile.objects.filter(user=user).first()
        verified = profile.email_verified_at if profile else None
        stamp = "" if verified is None else verified.replace(microsecond=0, tzinfo=None)
        return f"{user.pk}{user.email}{stamp}{timestamp}"


email_verification_tokens = EmailVerificationTokenGenerator()


def request_email_verification(*, user: AbstractBaseUser) -> bool:
    """Mail ``user`` a link that confirms their email (after commit, as a job). False when the
    email is verified already."""
    profile, _ = CustomerProfile.objects.get_or_create(user=user)
    if profile.email_verified_at is not None:
        return False
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    link = settings.EMAIL_VERIFICATION_URL.format(
        uid=uid, token=email_verification_tokens.make_token(user)
    )
    notifications.account_email(user, "email_verification", link)
    return True


def _user_from_uid(uid: str) -> AbstractBaseUser | None:
    try:
        return get_user_model().objects.get(pk=force_str(urlsafe_base64_decode(uid)))
    except (ValueError, TypeError, OverflowError, get_user_model().DoesNotExist):
        return None


def _mark_email_verified(user: AbstractBaseUser) -> int:
    """The customer owns their mailbox: note it, and give them the guest orders placed with
    that email. Returns how many orders joined the account."""
    profile, _ = CustomerProfile.objects.get_or_create(user=user)
    if profile.email_verified_at is None:
        profile.email_verified_at = timezone.now()
        profile.save(update_fields=["email_verified_at", "updated_at"])
    return attach_guest_orders(user)


@transaction.atomic
def verify_email(*, uid: str, token: str) -> int:
    """Confirm an email from the mailed link; returns how many guest orders joined the
    account."""
    user = _user_from_uid(uid)
    if user is None or not user.is_active or not email_verification_tokens.check_token(
        user, token
    ):
        raise InvalidToken("This confirmation link is not valid or has expired.")
    return _mark_email_verified(user)


# --- Profile and addresses -------------------------------------------------------------------


@transaction.atomic
def update_profile(*, user: AbstractBaseUser, **changes: Any) -> CustomerProfile:
    profile, _ = CustomerProfile.objects.get_or_create(user=user)
    user_fields = [name for name in ("first_name", "last_name") if name in changes]
    for name in user_fields:
        setattr(user, name, changes[name])
    if user_fields:
        user.save(update_fields=user_fields)
    if "phone" in changes:
        changes["phone"] = _phone(changes["phone"])
    if "notification_channels" in changes:
        changes["notification_channels"] = _channels(changes["notification_channels"])
    if "language" in changes:
        changes["language"] = _language(changes["language"])
    for name in ("phone", "accepts_marketing", "preferences", "notification_channels",
                 "language"):
        if name in changes:
            setattr(profile, name, changes[name])
    profile.save()
    return profile


def _phone(raw: str) -> str:
    """E.164, read in the store's country when it has no country code; "" for none."""
    if not (raw or "").strip():
        return ""
    try:
        return to_e164(raw)
    except InvalidPhoneNumber as exc:
        raise AccountError(str(exc), field="phone", code="invalid_phone") from None


def _channels(codes: list[str]) -> list[str]:
    """The channels a customer may choose: the store's (active or known) ones."""
    from backoffice.notifications.services import active_channels

    known = set(active_channels()) | {"email", "sms"}
    unknown = sorted(set(codes) - known)
    if unknown:
        raise AccountError(f"Unknown channel(s): {', '.join(unknown)}. Choose from "
                           f"{', '.join(sorted(known))}.", field="notification_channels",
                           code="invalid_channel")
    return sorted(set(codes))


def _language(code: str) -> str:
    code = (code or "").strip().lower()
    known = {c.split("-")[0] for c, _ in settings.LANGUAGES}
    if code and code.split("-")[0] not in known:
        raise AccountError(f"{code!r} is not a language of this store ({', '.join(sorted(known))}"
                           ").", field="language", code="invalid_language")
    return code.split("-")[0]


def _clear_other_defaults(address: Address) -> None:
    others = Address.objects.filter(user_id=address.user_id).exclude(pk=address.pk)
    if address.is_default_shipping:
        others.filter(is_default_shipping=True).update(is_default_shipping=False)
    if address.is_default_billing:
        others.filter(is_default_billing=True).update(is_default_billing=False)


@transaction.atomic
def save_address(
    *, user: AbstractBaseUser, address: Address | None = None, **fields: Any
) -> Address:
    """Create or update one of ``user``'s addresses; making it a default unsets the old one.

    A customer's first address becomes their default shipping and billing address.
    """
    if address is None:
        first = not Address.objects.filter(user=user).exists()
        address = Address(user=user, is_default_shipping=first, is_default_billing=first)
    elif address.user_id != user.pk:
        raise Address.DoesNotExist
    for name, value in fields.items():
        setattr(address, name, value.upper() if name == "country" else value)
    # Lock the customer's addresses so two requests can't both leave a default behind, and
    # unset the old defaults first: the database allows one of each per customer.
    list(Address.objects.select_for_update().filter(user=user).values_list("pk", flat=True))
    _clear_other_defaults(address)
    address.save()
    return address


# --- Export --------------------------------------------------------------------------------------

EXPORT_COLUMNS = ("email", "first_name", "last_name", "phone", "language", "accepts_marketing",
                  "email_verified", "joined", "last_login")


def export_customers(users, *, actor: Any) -> list[tuple]:
    """The customers among ``users`` (a queryset; staff accounts are left out), one row each in
    ``EXPORT_COLUMNS`` order. Needs ``customers.export_customers``; who exported how many is
    written to the audit trail (the rows are personal data)."""
    from backoffice.audit.models import AuditAction
    from backoffice.audit.services import record
    from backoffice.permissions import EXPORT_CUSTOMERS, require

    require(actor, EXPORT_CUSTOMERS)
    rows = []
    customers = (users.filter(is_staff=False, is_superuser=False)
                 .select_related("customer_profile").order_by("pk"))
    for user in customers.iterator(chunk_size=2000):
        profile = getattr(user, "customer_profile", None)
        rows.append((
            user.email, user.first_name, user.last_name, profile.phone if profile else "",
            profile.language if profile else "",
            bool(profile and profile.accepts_marketing),
            bool(profile and profile.email_verified_at),
            user.date_joined.isoformat(), user.last_login.isoformat() if user.last_login else "",
        ))
    record(actor, AuditAction.CUSTOMERS_EXPORTED, None,
           f"{len(rows)} customers exported.",
           object_type=get_user_model()._meta.label_lower, data={"count": len(rows)})
    return rows
