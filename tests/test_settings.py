"""Settings come from the environment, and the production defaults are safe."""

import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILE = ROOT / "backoffice" / "settings.py"
ENV_READ = re.compile(r'env_(?:str|bool|int|list)\(\s*"([A-Z_]+)"')
SETTINGS_VARS = set(ENV_READ.findall(SETTINGS_FILE.read_text()))


def load_settings(monkeypatch, tmp_path, **env: str) -> dict:
    """Evaluate backoffice/settings.py afresh under exactly ``env`` (plus a data dir)."""
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def production_env() -> dict[str, str]:
    return {"SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "shop.example.com",
            "PUBLIC_URL": "https://shop.example.com"}


def test_defaults_run_on_sqlite_file_cache_and_orm_broker(monkeypatch, tmp_path):
    s = load_settings(monkeypatch, tmp_path, DEBUG="1")
    db = s["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(db["NAME"]) == tmp_path / "db.sqlite3"
    # The job worker writes to the same file: it must wait for the lock, not fail.
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]
    cache = s["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.filebased.FileBasedCache"
    assert Path(cache["LOCATION"]) == tmp_path / "cache"
    assert s["Q_CLUSTER"]["orm"] == "default"
    assert "redis" not in s["Q_CLUSTER"]


def test_job_queue_retries_are_bounded(monkeypatch, tmp_path):
    q = load_settings(monkeypatch, tmp_path, DEBUG="1")["Q_CLUSTER"]
    assert q["timeout"] < q["retry"]
    assert q["max_attempts"] >= 1
    assert q["ack_failures"] is True


def test_database_url_selects_postgresql(monkeypatch, tmp_path):
    s = load_settings(
        monkeypatch, tmp_path, DEBUG="1", DATABASE_URL="postgres://shop:pw@db.internal:5433/shop"
    )
    db = s["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"]) == ("db.internal", 5433, "shop", "shop")
    assert db["CONN_MAX_AGE"] == 60
    assert db["CONN_HEALTH_CHECKS"] is True


def test_redis_url_moves_cache_and_broker_to_redis(monkeypatch, tmp_path):
    s = load_settings(monkeypatch, tmp_path, DEBUG="1", REDIS_URL="redis://cache.internal:6379/2")
    assert s["CACHES"]["default"]["BACKEND"] == "django_redis.cache.RedisCache"
    assert s["CACHES"]["default"]["LOCATION"] == "redis://cache.internal:6379/2"
    assert s["Q_CLUSTER"]["redis"] == "redis://cache.internal:6379/2"
    assert "orm" not in s["Q_CLUSTER"]


def test_production_needs_a_secret_key(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load_settings(monkeypatch, tmp_path)


def test_production_is_the_default_and_turns_on_secure_headers(monkeypatch, tmp_path):
    s = load_settings(monkeypatch, tmp_path, **production_env())
    assert s["DEBUG"] is False
    assert s["SECURE_SSL_REDIRECT"] is True
    assert s["SECURE_HSTS_SECONDS"] >= 60 * 60 * 24 * 365
    assert s["SESSION_COOKIE_SECURE"] is True
    assert s["CSRF_COOKIE_SECURE"] is True
    assert s["ALLOWED_HOSTS"] == ["shop.example.com"]
    assert s["STORAGES"]["staticfiles"]["BACKEND"].startswith("whitenoise.")
    # Health probes come over plain HTTP from inside the cluster.
    assert any(re.match(pattern, "health/ready") for pattern in s["SECURE_REDIRECT_EXEMPT"])


def test_secure_cookies_can_be_turned_off_for_a_plain_http_stack(monkeypatch, tmp_path):
    s = load_settings(monkeypatch, tmp_path, SECURE_COOKIES="0", **production_env())
    assert s["SESSION_COOKIE_SECURE"] is False
    assert s["CSRF_COOKIE_SECURE"] is False


def test_development_mode_does_not_force_https(monkeypatch, tmp_path):
    s = load_settings(monkeypatch, tmp_path, DEBUG="1")
    assert "SECURE_SSL_REDIRECT" not in s
    assert s["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]


def test_lists_are_comma_separated(monkeypatch, tmp_path):
    s = load_settings(
        monkeypatch,
        tmp_path,
        DEBUG="1",
        CORS_ALLOWED_ORIGINS="https://shop.example.com, https://m.example.com",
        CSRF_TRUSTED_ORIGINS="https://admin.example.com",
    )
    assert s["CORS_ALLOWED_ORIGINS"] == ["https://shop.example.com", "https://m.example.com"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://admin.example.com"]


@pytest.mark.parametrize(("name", "value"), [("DEBUG", "maybe"), ("Q_WORKERS", "two")])
def test_a_malformed_value_is_refused_with_its_name(monkeypatch, tmp_path, name, value):
    env = {"DEBUG": "1", name: value}
    with pytest.raises(ImproperlyConfigured, match=name):
        load_settings(monkeypatch, tmp_path, **env)


def test_cachalot_stays_off_until_an_app_is_whitelisted(monkeypatch, tmp_path):
    s = load_settings(monkeypatch, tmp_path, DEBUG="1")
    # An empty whitelist would make cachalot cache every table, stock and orders too.
    assert s["CACHALOT_ENABLED"] is bool(s["CACHALOT_ONLY_CACHABLE_APPS"])
    assert {"django_q"} <= set(s["CACHALOT_UNCACHABLE_APPS"])


def test_store_currency_is_upper_cased(monkeypatch, tmp_path):
    assert load_settings(monkeypatch, tmp_path, DEBUG="1", STORE_CURRENCY="kes")[
        "STORE_CURRENCY"
    ] == "KES"


def test_every_setting_read_from_the_environment_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n### ", 1)[0]
    table_names = set(re.findall(r"^\| `([A-Z_]+)`", section, flags=re.MULTILINE))
    assert SETTINGS_VARS - table_names == set(), "read by settings.py, missing from README"
    assert table_names - SETTINGS_VARS == set(), "in README, not read by settings.py"


def _check_deploy(tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    clean.update(
        DJANGO_SETTINGS_MODULE="backoffice.settings",
        DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **env,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_with_no_warnings(tmp_path):
    result = _check_deploy(tmp_path, **production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_does_flag_a_development_configuration(tmp_path):
    # Proves the check above is a real gate: DEBUG on must not pass it.
    result = _check_deploy(tmp_path, DEBUG="1")
    assert result.returncode != 0
    assert "security.W018" in result.stderr + result.stdout
