"""SMS through Africa's Talking (Kenya, Uganda, Tanzania, Rwanda, Nigeria, Malawi...).

Each message is one call of the ``africastalking`` SDK's ``SMSService.send``, on a service made
for that call with the plugin's settings: never the SDK's module-global ``initialize()``, whose
shared state would mix settings across threads.

**What Africa's Talking answers decides what the back office does** (``DeliveryResult`` and
exceptions, see ``backoffice/notifications/services.py``):

- status codes 100 Processed, 101 Sent, 102 Queued: *sent*, with Africa's Talking's
  ``messageId`` (delivery reports are matched by it) and the ``cost`` it charged;
- codes that say the message can never go to this number (403 InvalidPhoneNumber, 404
  UnsupportedNumberType, 406 UserInBlacklist, 409 DoNotDisturbRejection): *failed* for good;
- everything else is temporary and raised, so the core tries again with backoff: the account
  (401 RiskHold, 402 InvalidSenderId, 405 InsufficientBalance: the merchant fixes the sender ID
  or tops up meanwhile), Africa's Talking or the networks (407, 500, 501, 502, an HTTP error
  answer, a timeout, no connection), and codes it does not document;
- an answer with no recipient at all (Africa's Talking sends ``{"Message": "InvalidSenderId",
  "Recipients": []}`` when the sender ID is not the account's) is read by its ``Message``, as
  the status of that name would be; a ``Message`` that names no status is temporary.

The SDK raises ``AfricasTalkingException`` with the answer's body, not its HTTP status, for any
answer outside 2xx: a body in the usual ``SMSMessageData`` shape (a do-not-disturb rejection
comes as HTTP 409 with one) is read as above, "The supplied authentication is invalid" is the
401 of a wrong username or API key, and anything else is temporary.

Delivery reports (``parse_delivery_report``) are the form Africa's Talking posts to the
delivery-report URL the admin shows (``delivery_report_url("sms")``).

Username ``sandbox`` talks to the sandbox (``api.sandbox.africastalking.com``), any other to the
live API (``api.africastalking.com``): the SDK decides by the username. ``api_base`` replaces
either host (a proxy, or a local fake of the API in tests).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

import requests
from africastalking.Service import AfricasTalkingException
from africastalking.SMS import SMSService

from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField, api_base_errors, configured_api_base
from backoffice.plugin_host.errors import WebhookVerificationError
from backoffice.plugin_host.protocols import (
    DeliveryReport,
    DeliveryResult,
    Notification,
    WebhookRequest,
)

hookspec_version = ">=1.1,<2"
label = "Africa's Talking SMS"

PLUGIN = "africastalking_sms"
SANDBOX_USERNAME = "sandbox"
# (connect, read) seconds; the job that sends has 60 in all (SEND_TIMEOUT_SECONDS).
TIMEOUT = (3.05, 15)
ALPHANUMERIC_SENDER_MAX = 11  # GSM's limit for a sender name
NUMERIC_SENDER_MAX = 15  # a short code, or a full number
# What the SDK accepts (``+<country code><number>``), as E.164 writes it.
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

config_fields = [
    ConfigField("username", "Username", required=True,
                help_text="Your Africa's Talking app's username. Write sandbox to use the "
                          "sandbox (api.sandbox.africastalking.com, with the sandbox app's "
                          "API key; messages reach the sandbox's simulator, not phones); any "
                          "other username sends for real through api.africastalking.com."),
    ConfigField("api_key", "API key", kind="secret", required=True,
                help_text="Generated in the Africa's Talking dashboard (Settings > API Key) "
                          "for this username's app. A new key can take a few minutes to work."),
    ConfigField("sender_id", "Sender ID or short code",
                help_text="The alphanumeric sender ID (11 characters at most) or short code "
                          "Africa's Talking approved for your account. Blank: Africa's "
                          "Talking's shared sender."),
    ConfigField("api_base", "API base URL", kind="url",
                help_text="Leave blank for Africa's Talking itself (the username picks the "
                          "sandbox or live host). Another address (a proxy, a local fake for "
                          "tests) must be https; plain http only on 127.0.0.1 or localhost."),
]


class TemporarySmsFailure(Exception):
    """Africa's Talking did not take the message this time; the core tries again later."""


# --- Settings -----------------------------------------------------------------------------------


def validate_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Problems across settings, as ``{field: message}``: a sandbox username the SDK would not
    recognise, a sender ID no network takes, an API base URL that is not https."""
    errors: dict[str, str] = {}
    username = str(values.get("username") or "")
    if username.strip().lower() == SANDBOX_USERNAME and username != SANDBOX_USERNAME:
        errors["username"] = ("Write sandbox in lower case, without spaces: only that exact "
                              "username uses the sandbox.")
    elif username != username.strip():
        errors["username"] = "The username has spaces around it."
    sender = str(values.get("sender_id") or "")
    if sender:
        if sender != sender.strip():
            errors["sender_id"] = "The sender ID has spaces around it."
        elif sender.isdigit() and len(sender) > NUMERIC_SENDER_MAX:
            errors["sender_id"] = (f"A short code or number has {NUMERIC_SENDER_MAX} digits "
                                   "at most.")
        elif not sender.isdigit() and len(sender) > ALPHANUMERIC_SENDER_MAX:
            errors["sender_id"] = (f"An alphanumeric sender ID has {ALPHANUMERIC_SENDER_MAX} "
                                   f"characters at most; this one has {len(sender)}.")
        elif not sender.isprintable() or not sender.isascii():
            errors["sender_id"] = "A sender ID is plain letters, digits and spaces."
    errors.update(api_base_errors(values))
    return errors


def sms_service(config: Mapping[str, Any]) -> SMSService:
    """A service for one send, with these settings (``PluginConfigError`` if they are wrong).

    The class comes from its module: ``africastalking.SMS`` itself is None until the SDK's
    global ``initialize()`` has run, which this plugin never calls."""
    base = configured_api_base(PLUGIN, config, validate=validate_config, default="")
    service = SMSService(str(config["username"]), str(config["api_key"]))
    if base:
        # The SDK has no setting for its host: its constructor builds
        # "https://api.<domain>/version1" from the username. Replacing it on this one instance
        # (never on the class or the module) points only this send elsewhere.
        service._baseUrl = f"{base}/version1"
        service._contentUrl = f"{base}/version1"  # premium messages; never left on the real host
    return service


# --- Sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: Literal["sent", "failed", "retry"]
    name: str
    meaning: str


# The send answer's ``statusCode`` per recipient, as Africa's Talking documents them.
STATUS_CODES: dict[int, Outcome] = {
    100: Outcome("sent", "Processed", ""),
    101: Outcome("sent", "Sent", ""),
    102: Outcome("sent", "Queued", ""),
    401: Outcome("retry", "RiskHold", "Africa's Talking holds this account's messages for a "
                                       "risk review: ask their support to release it."),
    402: Outcome("retry", "InvalidSenderId", "The sender ID or short code is not one of this "
                                             "account's: fix it in the plugin's settings, or "
                                             "leave it blank for the shared sender."),
    403: Outcome("failed", "InvalidPhoneNumber", "The phone number is not valid."),
    404: Outcome("failed", "UnsupportedNumberType", "This kind of number cannot be sent SMS "
                                                    "by Africa's Talking."),
    405: Outcome("retry", "InsufficientBalance", "The Africa's Talking account is out of "
                                                 "credit: top it up."),
    406: Outcome("failed", "UserInBlacklist", "The recipient has blocked messages from this "
                                              "sender (opted out)."),
    407: Outcome("retry", "CouldNotRoute", "Africa's Talking could not route it to the "
                                           "recipient's network."),
    409: Outcome("failed", "DoNotDisturbRejection", "Refused under do-not-disturb rules "
                                                    "(Nigeria: a promotional sender ID cannot "
                                                    "send between 8pm and 8am)."),
    500: Outcome("retry", "InternalServerError", "Africa's Talking failed on its side."),
    501: Outcome("retry", "GatewayError", "The network's gateway failed."),
    502: Outcome("retry", "RejectedByGateway", "The network's gateway turned it away for "
                                               "now."),
}
_BY_NAME = {outcome.name.lower(): outcome for outcome in STATUS_CODES.values()}
# The body of Africa's Talking's 401 (a wrong username or API key).
_BAD_CREDENTIALS = "supplied authentication is invalid"


class AfricasTalkingSmsChannel:
    code = "sms"
    name = "SMS (Africa's Talking)"
    recipient_kind = "phone"

    def send(self, notification: Notification, config: Mapping[str, Any]) -> DeliveryResult:
        if not _E164.match(notification.recipient):
            return DeliveryResult(status="failed", error="The recipient is not a phone number "
                                  "in international form (+<country code><number>).")
        if not notification.body.strip():
            return DeliveryResult(status="failed", error="The message is empty: check the "
                                                         "SMS template of this event.")
        service = sms_service(config)
        sender = str(config.get("sender_id") or "") or None
        try:
            answer = service.send(notification.body, [notification.recipient],
                                  sender_id=sender, timeout=TIMEOUT)
        except AfricasTalkingException as exc:
            return _error_answer(str(exc), config)
        except requests.ReadTimeout:
            # The request reached Africa's Talking, which takes no idempotency key: sending it
            # again could send the SMS twice. At most once: failed, for staff to resend.
            return DeliveryResult(status="failed", error=(
                f"Africa's Talking did not answer within {TIMEOUT[1]:g} s: the SMS may or may "
                "not have gone out. Resend it if it did not arrive."))
        except requests.RequestException as exc:  # no connection: nothing was sent
            raise TemporarySmsFailure(f"Africa's Talking could not be reached or answered "
                                      f"unreadably ({type(exc).__name__}).") from exc
        return _result(_decoded(answer, config), config)

    def parse_delivery_report(self, request: WebhookRequest,
                              config: Mapping[str, Any]) -> list[DeliveryReport]:
        """One delivery report, as Africa's Talking posts it (a form)."""
        fields = _report_fields(request.body)
        message_id = str(fields.get("id") or "").strip()
        status = str(fields.get("status") or "").strip()
        if not message_id or not status:
            raise WebhookVerificationError("not an Africa's Talking delivery report (no id or "
                                           "status)")
        kind = REPORT_STATUSES.get(status, "sent")  # an unknown status: nothing final yet
        error = ""
        if kind == "failed":
            error = _report_error(status, str(fields.get("failureReason") or "").strip())
        return [DeliveryReport(provider_message_id=message_id, status=kind, error=error)]


def _scrubbed(text: str, config: Mapping[str, Any]) -> str:
    """A provider's text for an error message: never the API key, never very long."""
    key = str(config.get("api_key") or "")
    if len(key) >= 8:
        text = text.replace(key, "[API key]")
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _decoded(answer: Any, config: Mapping[str, Any]) -> Mapping[str, Any]:
    # The SDK parses the body only when the content type is exactly "application/json";
    # Africa's Talking's "application/json; charset=UTF-8" comes back as text.
    if isinstance(answer, bytes):
        answer = answer.decode("utf-8", errors="replace")
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            raise TemporarySmsFailure("Africa's Talking answered something that is not JSON: "
                                      f"{_scrubbed(answer, config)!r}") from None
    if not isinstance(answer, Mapping) or not isinstance(answer.get("SMSMessageData"),
                                                         Mapping):
        raise TemporarySmsFailure("Africa's Talking answered without SMSMessageData: "
                                  f"{_scrubbed(json.dumps(answer, default=str), config)!r}")
    return answer


def _result(answer: Mapping[str, Any], config: Mapping[str, Any]) -> DeliveryResult:
    data = answer["SMSMessageData"]
    recipients = data.get("Recipients")
    first = recipients[0] if isinstance(recipients, list) and recipients else None
    if not isinstance(first, Mapping):
        return _no_recipient(str(data.get("Message") or ""), config)
    try:
        code = int(first.get("statusCode"))
    except (TypeError, ValueError):
        code = 0
    status = str(first.get("status") or "")
    outcome = STATUS_CODES.get(code)
    if outcome is None:
        raise TemporarySmsFailure(f"Africa's Talking answered a status it does not document: "
                                  f"{_scrubbed(status, config) or '?'} ({code}).")
    if outcome.kind == "sent":
        return DeliveryResult(status="sent", provider_message_id=str(first.get("messageId") or ""),
                              cost=str(first.get("cost") or ""))
    return _refused(outcome, f"{status or outcome.name}, {code}")


def _refused(outcome: Outcome, said: str) -> DeliveryResult:
    """A permanent refusal as a result; a temporary one raised."""
    if outcome.kind == "failed":
        return DeliveryResult(status="failed",
                              error=f"Africa's Talking refused it ({said}): {outcome.meaning}")
    raise TemporarySmsFailure(f"Africa's Talking did not send it ({said}): {outcome.meaning}")


def _no_recipient(message: str, config: Mapping[str, Any]) -> DeliveryResult:
    """An answer that lists no recipient: its ``Message`` is the reason ("InvalidSenderId")."""
    outcome = _BY_NAME.get(message.strip().lower())
    if outcome is not None and outcome.kind != "sent":
        return _refused(outcome, outcome.name)
    raise TemporarySmsFailure("Africa's Talking sent it to no one: "
                              f"{_scrubbed(message, config) or 'it gave no reason'}.")


def _error_answer(body: str, config: Mapping[str, Any]) -> DeliveryResult:
    """An answer outside 2xx (the SDK kept only its body)."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, Mapping) and isinstance(answer.get("SMSMessageData"), Mapping):
        return _result(answer, config)
    if _BAD_CREDENTIALS in body.lower():
        raise TemporarySmsFailure(
            "Africa's Talking refused the username and API key (\"The supplied authentication "
            "is invalid\"): check that the API key is the current one of this username's app "
            "(the sandbox app's key for the username sandbox), and that the sender ID is "
            "yours.")
    raise TemporarySmsFailure("Africa's Talking answered with an error: "
                              f"{_scrubbed(body, config) or 'an empty answer'}")


# --- Delivery reports ---------------------------------------------------------------------------

REPORT_STATUSES: dict[str, Literal["sent", "delivered", "failed"]] = {
    "Sent": "sent", "Submitted": "sent", "Buffered": "sent",
    "Success": "delivered",
    "Failed": "failed", "Rejected": "failed", "AbsentSubscriber": "failed", "Expired": "failed",
}
_REPORT_MEANINGS = {
    "Failed": "It could not be delivered to the phone",
    "Rejected": "The network rejected it",
    "AbsentSubscriber": "The phone was off or out of coverage until the network gave up",
    "Expired": "The network discarded it (its content or the sender ID was flagged)",
}
FAILURE_REASONS = {
    "InsufficientCredit": "the subscriber has too little airtime for a premium message",
    "InvalidLinkId": "the on-demand link id was not valid",
    "UserIsInactive": "the line is inactive or was deactivated by the network",
    "UserInBlackList": "the recipient blocked messages from this sender",
    "UserAccountSuspended": "the line is suspended by the network",
    "NotNetworkSubcriber": "the number is not on the network the message went to",
    "UserNotSubscribedToProduct": "the number is not subscribed to the product",
    "UserDoesNotExist": "the number does not exist",
    "DeliveryFailure": "the network gave no reason",
    "DoNotDisturbRejection": "refused under do-not-disturb rules",
}
_REASONS_BY_LOWER = {name.lower(): text for name, text in FAILURE_REASONS.items()}


def _report_fields(body: bytes) -> dict[str, str]:
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):  # a JSON body, should a proxy re-encode the form
        try:
            found = json.loads(text)
        except ValueError:
            raise WebhookVerificationError("the body is not JSON nor a form") from None
        return ({str(k): str(v) for k, v in found.items() if v is not None}
                if isinstance(found, dict) else {})
    return dict(parse_qsl(text, keep_blank_values=True))


def _report_error(status: str, reason: str) -> str:
    meaning = _REPORT_MEANINGS.get(status, status)
    if not reason:
        return f"{meaning} (Africa's Talking: {status})."
    explained = _REASONS_BY_LOWER.get(reason.lower())
    return (f"{meaning}: {explained} (Africa's Talking: {status}, {reason})." if explained
            else f"{meaning} (Africa's Talking: {status}, {reason}).")


@hookimpl
def register_notification_channels() -> list[AfricasTalkingSmsChannel]:
    return [AfricasTalkingSmsChannel()]
