"""The demo store: a staff login and the demo data of the apps that exist.

``make demo`` calls :func:`setup_demo` through ``manage.py demo_setup``. Domain apps add a loader
to ``DEMO_LOADERS`` (a callable taking no arguments and returning a one-line summary); each
loader must be idempotent, because ``make demo`` runs again on every start.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

DEMO_USERNAME = "admin"


def _load_demo_catalog() -> str:
    # Imported here: this module is read before the apps' models are ready.
    from backoffice.catalog.demo import load_demo_catalog

    return load_demo_catalog()


def _activate_bundled_plugins() -> str:
    from backoffice.plugin_host.services import activate_plugins

    names = activate_plugins(["flat_rate_shipping", "manual_payment"])
    return f"Plugins switched on: {', '.join(names)}" if names else "Plugins already on"


DEMO_LOADERS: list[Callable[[], str]] = [_load_demo_catalog, _activate_bundled_plugins]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    created: bool


def _password_file() -> Path:
    return Path(settings.DATA_DIR) / "demo-admin-password"


def _demo_password() -> str:
    """The demo password: made once, kept in the data directory (git-ignored, owner-only)."""
    path = _password_file()
    if path.exists():
        password = path.read_text().strip()
        if password:
            return password
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


@transaction.atomic
def ensure_demo_login() -> DemoLogin:
    """Create the demo superuser, or give it back the demo password if it exists."""
    password = _demo_password()
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=DEMO_USERNAME, defaults={"email": "admin@example.com"}
    )
    user.is_staff = True
    user.is_superuser = True
    user.is_active = True
    user.set_password(password)
    user.save()
    return DemoLogin(username=DEMO_USERNAME, password=password, created=created)


def load_demo_data() -> list[str]:
    """Run every app's demo loader; return their summaries."""
    return [loader() for loader in DEMO_LOADERS]
