"""Health probes for load balancers, Docker and Kubernetes.

- ``/health/live``: the process answers. No I/O, so a slow database never gets a healthy web
  process restarted.
- ``/health/ready``: the database, the cache and the job broker answer. 503 with the failing part
  named when one does not, so traffic goes elsewhere until it recovers.

Answered by a middleware placed before the host check and the HTTPS redirect: probes come by IP
address over plain HTTP.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_cache() -> None:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=10)
    value = cache.get(key)
    cache.delete(key)
    if value != "ok":
        raise RuntimeError("the cache did not return what was written")


def check_broker() -> None:
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    broker = get_broker()
    if Conf.ORM:
        # The ORM broker's ping() always says yes; ask its table instead.
        from django_q.models import OrmQ

        OrmQ.objects.using(Conf.ORM).exists()
    elif not broker.ping():
        raise RuntimeError("the broker did not answer ping")


def check_static_files() -> None:
    """The manifest of collected static files exists, where the storage needs one.

    Without it every admin page answers 500 ("Missing staticfiles manifest entry"), so a web
    process started before ``collectstatic`` must not be sent traffic.
    """
    from django.contrib.staticfiles.storage import ManifestFilesMixin
    from django.core.files.storage import storages

    storage = storages["staticfiles"]
    if isinstance(storage, ManifestFilesMixin) and storage.read_manifest() is None:
        raise RuntimeError(
            f"no {storage.manifest_name} in {storage.location}: run `manage.py collectstatic`"
        )


READINESS_CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "static_files": check_static_files,
}


def readiness() -> tuple[bool, dict[str, str]]:
    """Run every readiness check; return whether all passed and each one's result."""
    results: dict[str, str] = {}
    for name, check in READINESS_CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            # No traceback: probes repeat every few seconds while a dependency is down.
            logger.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = f"error: {type(exc).__name__}"
        else:
            results[name] = "ok"
    return all(value == "ok" for value in results.values()), results


def live_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def ready_view(request: HttpRequest) -> HttpResponse:
    ok, results = readiness()
    failing = [name for name, value in results.items() if value != "ok"]
    body = {"status": "ok" if ok else "unavailable", "checks": results}
    if failing:
        body["failing"] = failing
    response = JsonResponse(body, status=200 if ok else 503)
    response["Cache-Control"] = "no-store"
    return response


class HealthCheckMiddleware:
    routes = {LIVE_PATH: live_view, READY_PATH: ready_view}

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.routes.get(request.path_info.rstrip("/"))
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
