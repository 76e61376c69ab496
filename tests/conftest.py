import os
import socket
from urllib.parse import urlparse

import pytest
from django.core.cache import caches
from django.db import connection

# A real OpenID Provider (Node.js, tests/oidc) for the SSO tests: see tests/oidc_provider.py.
from tests.oidc_provider import oidc_provider, oidc_provider_factory  # noqa: F401

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")


def _redis_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _clear_cache():
    from backoffice.catalog import storefront

    storefront._anchors.clear()  # the deep-page anchors this process holds
    for each in caches.all(initialized_only=False):
        each.clear()
    yield
    for each in caches.all(initialized_only=True):
        each.clear()


@pytest.fixture
def redis_url() -> str:
    """A Redis database for tests that need the real server. CI must have it: fail, not skip."""
    if not _redis_reachable(REDIS_TEST_URL):
        message = f"Redis is not reachable at {REDIS_TEST_URL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_TEST_URL


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-123-long")
    client.force_login(user)
    return client
