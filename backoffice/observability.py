"""Request ids, request timing and the log filter that puts the request id on every line.

``RequestIdMiddleware`` takes the caller's ``X-Request-ID`` (when it is a sane token) or makes
one, keeps it in a context variable for the log filter, and returns it on the response.
``ServerTimingMiddleware`` measures the whole request and the time spent in the database, adds a
``Server-Timing`` header (browsers show it in their network panel) and writes one structured log
line per request.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

request_logger = logging.getLogger("backoffice.request")


def current_request_id() -> str:
    """The id of the request being served in this context, or ``-`` outside a request."""
    return _request_id.get()


class RequestIdLogFilter(logging.Filter):
    """Adds ``request_id`` to every log record so formatters can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class _QueryTimer:
    """A database execute wrapper that counts queries and adds up their time."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: Any):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start
            self.count += 1


class ServerTimingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        timer = _QueryTimer()
        start = time.perf_counter()
        with ExitStack() as stack:
            for connection in connections.all():
                stack.enter_context(connection.execute_wrapper(timer))
            response = self.get_response(request)
        total_ms = (time.perf_counter() - start) * 1000
        db_ms = timer.seconds * 1000
        if settings.SERVER_TIMING:
            timing = f'db;dur={db_ms:.2f};desc="{timer.count} queries", total;dur={total_ms:.2f}'
            # Entries the view added (the storefront cache's hit or miss) follow ours.
            extra = response.get("Server-Timing")
            response["Server-Timing"] = f"{timing}, {extra}" if extra else timing
        level = logging.DEBUG if request.path.startswith("/health/") else logging.INFO
        request_logger.log(
            level,
            "%s %s %s in %.1f ms (%d queries)",
            request.method,
            request.path,
            response.status_code,
            total_ms,
            timer.count,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(total_ms, 2),
                "db_ms": round(db_ms, 2),
                "db_queries": timer.count,
            },
        )
        return response


class NulCharacterGuardMiddleware:
    """Refuses (400) a URL whose path or query string holds a NUL character.

    PostgreSQL text cannot hold NUL, so a lookup or a search with one fails in the database: a
    500 from bad input. Django's forms refuse NUL in bodies already; this covers the URL.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or any(
            "\x00" in key or any("\x00" in v for v in values)
            for key, values in request.GET.lists()
        ):
            from django.http import JsonResponse

            return JsonResponse(
                {"detail": "The URL must not contain NUL characters.", "code": "bad_request",
                 "errors": []},
                status=400,
            )
        return self.get_response(request)
