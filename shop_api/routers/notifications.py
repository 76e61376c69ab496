"""Delivery reports: a notification provider's later word on the messages it took.

A provider posts its reports to ``/notifications/delivery-reports/{channel}/{token}/``, the
address the admin shows (``backoffice.notifications.services.delivery_report_url``). The token is
the only proof that the post comes from the provider we gave the address to (delivery reports
are not signed): a wrong token is a 404, as a channel that is not active, or that takes no
reports, is, and changes nothing. The channel's plugin reads the body
(``parse_delivery_report``; a body that is not a report is a 400) and the reports are applied
at once: a message goes from sent to delivered or failed, once. A replayed report changes
nothing more.

Like payment webhooks, the route takes no authentication but its token, no cookies (so no CSRF
check) and is not throttled: a provider sends in bursts, and a wrong token costs one comparison.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest
from ninja import Router, Schema

from backoffice.notifications import services
from backoffice.plugin_host import services as plugins
from backoffice.plugin_host.errors import (
    PluginConfigError,
    UnknownProvider,
    WebhookVerificationError,
)
from backoffice.plugin_host.protocols import WebhookRequest
from shop_api.errors import ApiError, ErrorOut

logger = logging.getLogger(__name__)
router = Router(tags=["notifications"])


class DeliveryReportsOut(Schema):
    updated: int


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "Not found.")


@router.post("/notifications/delivery-reports/{channel}/{token}/",
             url_name="notification_delivery_report",
             response={200: DeliveryReportsOut, 400: ErrorOut, 404: ErrorOut, 413: ErrorOut,
                       503: ErrorOut},
             include_in_schema=False)
def delivery_reports(request: HttpRequest, channel: str, token: str):
    """A provider's delivery reports for ``channel``: ``{"updated": n}``, the messages they
    moved (0 for reports already applied, or of messages we do not know)."""
    if not services.token_matches(channel, token):
        raise _not_found()
    try:
        bound = plugins.notification_channel(channel)
    except UnknownProvider:
        raise _not_found() from None
    except PluginConfigError as exc:
        # The provider sends it again later; meanwhile the admin shows what to fix.
        logger.warning("delivery report for %s refused: %s", channel, exc)
        raise ApiError(503, "channel_unavailable",
                       "The channel is not set up; try again later.") from exc
    parse = getattr(bound.provider, "parse_delivery_report", None)
    if parse is None:
        raise _not_found()
    body = request.body  # over DATA_UPLOAD_MAX_MEMORY_SIZE: RequestDataTooBig, answered 413
    received = WebhookRequest(body=body, headers=dict(request.headers),
                              query={key: request.GET.get(key, "") for key in request.GET})
    try:
        reports = parse(received, bound.config)
    except WebhookVerificationError as exc:
        raise ApiError(400, "invalid_delivery_report",
                       f"The delivery report could not be read: {exc}") from exc
    except Exception as exc:
        logger.exception("the %s channel failed on a delivery report", channel)
        raise ApiError(503, "delivery_report_error",
                       "The delivery report could not be handled now.") from exc
    return {"updated": services.record_reports(channel, reports)}
