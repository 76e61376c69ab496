"""One error shape for every 4xx answer of the API.

```json
{"detail": "Human-readable message", "code": "machine_readable_code", "errors": [...]}
```

``errors`` lists field errors (``field``, ``message``, ``code``) on validation failures, and
the lines at fault when checkout refuses a cart (with ``sku`` and ``available`` or
``current_price``); it is empty otherwise. Routes raise :class:`ApiError` (or Django's
``Http404``); the handlers here turn every exception ninja knows into that shape.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError

logger = logging.getLogger(__name__)

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "throttled",
}


class FieldError(Schema):
    field: str
    message: str
    code: str
    # On checkout's line errors: the SKU, and what is left or what it costs now.
    sku: str | None = None
    available: int | None = None
    current_price: str | None = None


class ErrorOut(Schema):
    detail: str
    code: str
    errors: list[FieldError] = []


class ApiError(Exception):
    """An error a route reports to the client: a status, a stable code and a message."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []


def _field_name(loc: list | tuple) -> str:
    # ninja reports ("body", "payload", "email"): the client cares about the last parts.
    parts = [str(part) for part in loc if part not in ("body", "payload", "query", "path")]
    return ".".join(parts) or "__all__"


def error_response(
    api: NinjaAPI,
    request: HttpRequest,
    status: int,
    detail: str,
    code: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> HttpResponse:
    body = {
        "detail": detail,
        "code": code or _CODES_BY_STATUS.get(status, "error"),
        "errors": errors or [],
    }
    return api.create_response(request, body, status=status)


def install_error_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(ApiError)
    def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return error_response(api, request, exc.status, exc.detail, exc.code, exc.errors)

    @api.exception_handler(ValidationError)
    def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        errors = [
            {
                "field": _field_name(error.get("loc", ())),
                "message": str(error.get("msg", "Invalid value")),
                "code": str(error.get("type", "invalid")),
            }
            for error in exc.errors
        ]
        return error_response(api, request, 422, "The request is not valid.", errors=errors)

    @api.exception_handler(Http404)
    def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(api, request, 404, "Not found.")

    @api.exception_handler(Throttled)
    def on_throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
        response = error_response(api, request, 429, "Too many requests; try again later.")
        if exc.wait:
            response["Retry-After"] = str(int(exc.wait))
        return response

    @api.exception_handler(AuthenticationError)
    def on_not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return error_response(api, request, exc.status_code, "Authentication required.")

    @api.exception_handler(RequestDataTooBig)
    def on_body_too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        # The client's doing, not a fault here: a warning, without a traceback.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        logger.warning("%s %s: a body of %s bytes refused, over the limit of %s bytes",
                       request.method, request.path, request.META.get("CONTENT_LENGTH", "?"),
                       limit)
        return error_response(api, request, 413,
                              f"The request body is over the limit of {limit} bytes.")

    @api.exception_handler(HttpError)
    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return error_response(api, request, exc.status_code, str(exc))

    @api.exception_handler(PermissionDenied)
    def on_permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        # A service refused the caller (``backoffice.permissions``): an API key whose scopes
        # do not cover what it asked for. The routes check scopes first; this is the backstop.
        return error_response(api, request, 403, str(exc) or "Permission denied.",
                              getattr(exc, "code", "permission_denied"))
