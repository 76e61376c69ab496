"""What a review of the first-run, API and plugin-settings changes found, each pinned by a test:
a signal while serve starts a child, one database spelt two ways, a proxy login in an API base,
integers too big for the database."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


# --- serve: a signal while a child is being started -------------------------------------------


def test_serve_signal_during_popen_leaves_no_orphan(monkeypatch):
    """A SIGTERM that lands after fork() but before Popen() returns (the handler raises inside
    Popen) must still stop that child; here it is never put in ``children`` and is orphaned."""
    from backoffice.management.commands import serve

    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen(cmd, **kwargs):
        child = real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kwargs)
        started.append(child)
        if len(started) == 1:
            # The signal arrives now, while Popen is still returning (as during its read of
            # the exec pipe): the handler installed by serve raises here.
            signal.raise_signal(signal.SIGTERM)
        return child

    monkeypatch.setattr(serve.subprocess, "Popen", popen)
    monkeypatch.setattr(serve, "STOP_GRACE_SECONDS", 1)
    with contextlib.suppress(SystemExit):
        serve.Command().handle(addr="127.0.0.1:0", noreload=True)
    try:
        time.sleep(0.2)
        alive = [c for c in started if c.poll() is None]
        assert not alive, "serve returned and left the first child running (an orphan)"
    finally:
        for child in started:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


# --- the cache key prefix: one database, two spellings ----------------------------------------


def _prefix(database_url: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backoffice.settings",
           "DATABASE_URL": database_url, "SECRET_KEY": "x" * 60, "DEBUG": "0",
           "ALLOWED_HOSTS": "localhost"}
    out = subprocess.run(
        [sys.executable, "-c",
         "from django.conf import settings; print(settings.CACHE_KEY_PREFIX)"],
        env=env, cwd=BASE_DIR, capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("one, other", [
    ("postgres://shop:pw@db/shop", "postgres://shop:pw@db:5432/shop"),
])
def test_same_database_gets_the_same_cache_prefix(one, other):
    """The web process and the worker share the database and the Redis cache; cachalot's
    invalidation is per key prefix, so two spellings of the same DATABASE_URL (default port
    written or not, host case) give two caches, and one process never sees the other's
    invalidations (stale query cache)."""
    assert _prefix(one) == _prefix(other)


# --- integers from JSON: a float the size of 1e300 becomes an int nothing bounds --------------


@pytest.mark.django_db
@pytest.mark.parametrize("patch", [
    {"google_category_id": 1e300},
    {"google_category_id": 10 ** 30},
])
def test_huge_integral_numbers_are_a_422_not_a_500(client, patch):
    from backoffice.integrations.models import Scope
    from backoffice.integrations.services import create_api_key

    _key, raw = create_api_key(name="ERP", scopes=[Scope.CATALOG_WRITE])
    product = {"handle": "polo", "name": "Polo",
               "variants": [{"sku": "POLO-S", "price": "10.00", "stock": {"main": 1}}],
               **patch}
    client.raise_request_exception = False
    response = client.post("/api/v1/integrations/products", {"products": [product]},
                           content_type="application/json", HTTP_X_API_KEY=raw)
    assert response.status_code == 422, (response.status_code, response.content[:300])


@pytest.mark.django_db
@pytest.mark.parametrize("quantity", [1e300, 10 ** 30])
def test_huge_stock_in_a_product_is_a_422_not_a_500(client, quantity):
    from backoffice.integrations.models import Scope
    from backoffice.integrations.services import create_api_key

    _key, raw = create_api_key(name="ERP", scopes=[Scope.CATALOG_WRITE])
    product = {"handle": "polo", "name": "Polo",
               "variants": [{"sku": "POLO-S", "price": "10.00", "stock": {"main": quantity}}]}
    client.raise_request_exception = False
    response = client.post("/api/v1/integrations/products", {"products": [product]},
                           content_type="application/json", HTTP_X_API_KEY=raw)
    assert response.status_code == 422, (response.status_code, response.content[:300])


# --- plugin settings: an API base with credentials is echoed into errors and logs ---------------


@pytest.mark.django_db
def test_api_base_credentials_are_not_echoed_into_the_error_log(caplog, monkeypatch):
    import logging

    from backoffice.payments import services as payments
    from backoffice.plugin_host.services import update_plugin_config

    update_plugin_config(identifier="stripe", active=True, changes={
        "secret_key": "sk_test_123", "webhook_secret": "whsec_x"})
    # Set where a deployment sets it: the environment (a proxy URL with its login in it).
    monkeypatch.setenv("STRIPE_API_BASE",
                       "https://proxyuser:hunter2-proxy-password@proxy.example")
    with caplog.at_level(logging.INFO), pytest.raises(payments.PaymentError):
        payments._bound("stripe")
    assert "hunter2" not in caplog.text, caplog.text
