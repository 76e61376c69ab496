"""Health probes: live is I/O-free, ready names what is down."""

import pytest
from django.db import OperationalError, connections
from django.test import override_settings
from django_q.conf import Conf

pytestmark = pytest.mark.django_db


def test_live_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_every_part_ok(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok", "static_files": "ok"},
    }
    assert response["Cache-Control"] == "no-store"


@override_settings(ALLOWED_HOSTS=["shop.example.com"], SECURE_SSL_REDIRECT=True)
def test_probes_by_ip_over_plain_http_are_answered(client):
    # A kubelet calls the pod IP over HTTP: no DisallowedHost, no redirect to HTTPS.
    for path in ("/health/live", "/health/ready", "/health/ready/"):
        response = client.get(path, HTTP_HOST="10.1.2.3:8000")
        assert response.status_code == 200, path
    # Everything else still gets the host check and the redirect.
    assert client.get("/admin/", HTTP_HOST="shop.example.com").status_code == 301
    assert client.get("/admin/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_ready_names_the_database_when_it_is_down(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connections["default"], "cursor", refuse)
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert "database" in body["failing"]
    assert body["checks"]["database"] == "error: OperationalError"


@override_settings(
    CACHES={
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            # Nothing listens on port 1: the connection is refused at once.
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
)
def test_ready_names_the_cache_when_it_is_unreachable(client):
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["cache"]


def test_ready_checks_a_real_redis_broker(client, monkeypatch, redis_url):
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", redis_url)
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "ok"


def test_ready_names_an_unreachable_redis_broker(client, monkeypatch):
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]


def test_health_probes_refuse_writes(client):
    # Only GET/HEAD are probes; a POST falls through to the normal URL routing (no such page).
    assert client.post("/health/ready").status_code == 404
