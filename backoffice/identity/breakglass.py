"""The break-glass login: when single sign-on is down and staff passwords are switched off, a
person with a shell on the server (``manage.py breakglass_login <username>``) gets a link that
lets one superuser in once, within ``TTL``.

The link is signed with ``SECRET_KEY`` and carries a digest of the user's last login and
password hash: signing in changes ``last_login``, so the link works once (as Django's
password-reset tokens do). Each use is written to the audit trail.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core import signing
from django.utils.crypto import salted_hmac

SALT = "backoffice.identity.breakglass"
TTL = 600  # seconds


def _stamp(user) -> str:
    last = user.last_login.isoformat() if user.last_login else ""
    return salted_hmac(SALT, f"{user.pk}|{user.password}|{last}",
                       algorithm="sha256").hexdigest()[:32]


def make_token(user) -> str:
    if not (user.is_active and user.is_superuser):
        raise ValueError("Only an active superuser gets a break-glass link.")
    return signing.dumps({"u": user.pk, "s": _stamp(user)}, salt=SALT, compress=True)


def user_for(token: str):
    """The superuser of a valid, unused, unexpired token; None otherwise."""
    try:
        data = signing.loads(token, salt=SALT, max_age=TTL)
        user = get_user_model().objects.get(pk=data["u"], is_active=True, is_superuser=True)
    except (signing.BadSignature, KeyError, TypeError, get_user_model().DoesNotExist):
        return None
    return user if signing.constant_time_compare(_stamp(user), data.get("s", "")) else None


def record_use(user) -> None:
    from backoffice.audit.models import AuditAction
    from backoffice.audit.services import record
    from backoffice.inventory.services import Actor

    record(Actor(user=user), AuditAction.BREAKGLASS_LOGIN, user,
           "Signed in with a break-glass link from the command line.")
