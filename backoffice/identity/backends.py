"""Authentication backends: passwords (switched off for staff by ``STAFF_PASSWORD_LOGIN``), and
the sessions that single sign-on and the break-glass link open."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend, ModelBackend

SIGN_IN_BACKEND = "backoffice.identity.backends.SignInBackend"


def staff_passwords_allowed() -> bool:
    return bool(getattr(settings, "STAFF_PASSWORD_LOGIN", True))


class PasswordBackend(ModelBackend):
    """Django's password check and permissions. With ``STAFF_PASSWORD_LOGIN`` off, a staff
    password neither logs in nor keeps a password session alive; customers are not affected."""

    def user_can_authenticate(self, user) -> bool:
        if not staff_passwords_allowed() and (user.is_staff or user.is_superuser):
            return False
        return super().user_can_authenticate(user)


class SignInBackend(BaseBackend):
    """Keeps the sessions opened by ``login(request, user, backend=SIGN_IN_BACKEND)`` after a
    verified OpenID Connect sign-in or a break-glass link. It checks no password: it has no
    ``authenticate``; permissions come from ``PasswordBackend``."""

    def get_user(self, user_id):
        user = get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()
        return user
