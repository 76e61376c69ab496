"""Who is told what, on which channel; and sending it, once.

**Deciding** (``queue_customer``, ``queue_staff``, and the domain entry points below them) runs
inside the transaction of the change it tells of: it writes one ``Notification`` row per
recipient and channel, with only the event's own facts in ``context`` (a refund's amount, a
shipment's tracking number). The row's unique key (event key, recipient, channel) makes a
replayed event write nothing. Once the transaction commits, one job per event sends its rows.
Nothing is sent inside a web request, and a rolled-back change leaves no message.

**Sending** (``send``, the job) claims one row with a conditional UPDATE (two workers never
send the same row), renders it (the order as it is now, plus the event's facts), hands it to
the channel plugin and records the answer: ``sent`` (or ``delivered``) with the provider's
message id and cost; ``failed`` for good when the channel says so or the template cannot
render; a raised exception is temporary and retried with backoff (``BACKOFF_*``), up to
``MAX_ATTEMPTS``. A row left ``sending`` (its worker died mid-send) is marked failed, not sent
again: a message may be lost and shown as such, never sent twice. Staff can resend.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import CharField, F, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django_q.tasks import async_task

from backoffice.money import format_money
from backoffice.notifications import catalogue
from backoffice.notifications.models import (
    Audience,
    Notification,
    NotificationRule,
    StaffAlert,
    Status,
)
from backoffice.notifications.phones import e164_or_blank
from backoffice.notifications.rendering import TemplateError, base_language, render
from backoffice.plugin_host import services as plugins
from backoffice.plugin_host.errors import PluginConfigError, UnknownProvider
from backoffice.plugin_host.protocols import DeliveryReport
from backoffice.plugin_host.protocols import Notification as Message

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 60 * 60
# One send may take this long before django-q2 kills its worker.
SEND_TIMEOUT_SECONDS = 60
# A row still "sending" after this lost its worker: its outcome is unknown.
SENDING_TIMEOUT = timedelta(minutes=5)
# A message never tried this long after it was due lost its enqueue: the sweeper sends it.
LOST_ENQUEUE_AFTER = timedelta(minutes=5)
SEND_TASK = "backoffice.notifications.services.send"
SEND_EVENT_TASK = "backoffice.notifications.services.send_event"
_REDACTED = "[removed once sent: this message held a one-time link]"
# The recipient of a row whose personal data was erased (``erased:<pk>``: the unique key holds),
# and its text.
ERASED_PREFIX = "erased:"
ERASED_TEXT = "[erased: the customer's account was closed]"
_NOT_SENT_ERASED = "Not sent: the customer's account was closed and their data erased."
# What of a row is about its recipient: the address, the rendered text, the context.
PERSONAL_FIELDS = ("recipient", "subject", "body", "html", "context", "error")


def erased_recipient(pk: int) -> str:
    return f"{ERASED_PREFIX}{pk}"


def is_erased(row: Notification) -> bool:
    """Whether the row's personal data was erased (its customer closed their account)."""
    return row.recipient.startswith(ERASED_PREFIX)


def _erased_fields(pk: int) -> dict[str, Any]:
    return {"recipient": erased_recipient(pk), "subject": "", "body": ERASED_TEXT, "html": "",
            "context": {}}


_ERASED_RECIPIENT = {"recipient": Concat(Value(ERASED_PREFIX), Cast("pk", CharField()))}


def _erase_after_send(event: str) -> bool:
    spec = catalogue.EVENTS.get(event)
    return bool(spec and spec.erase_after_send)


def erase(pks: Iterable[int], *, keep_recipient: bool = False) -> int:
    """Erase what these rows hold about a customer whose account is closed: the rendered text
    and the context, and (unless ``keep_recipient``: a staff alert about their order) the
    recipient and the error (a mail server's answer may quote the address). Those still queued
    are not sent. A row being sent meanwhile records its outcome, never its text (``_finish``).
    Returns how many rows were erased."""
    rows = Notification.objects.filter(pk__in=list(pks))
    fields: dict[str, Any] = {"subject": "", "body": ERASED_TEXT, "html": "", "context": {}}
    if not keep_recipient:
        fields.update(_ERASED_RECIPIENT, error="")
    erased = rows.update(**fields)
    if not keep_recipient:
        rows.filter(status=Status.QUEUED).update(status=Status.FAILED, next_attempt_at=None,
                                                 error=_NOT_SENT_ERASED)
    return erased


# --- Channels -----------------------------------------------------------------------------------


def active_channels() -> dict[str, str]:
    """``{code: recipient kind}`` of the active plugins' notification channels."""
    found = {}
    for channel in plugins.notification_channels():
        found.setdefault(channel.code, recipient_kind(channel))
    return found


def recipient_kind(channel: Any) -> str:
    return getattr(channel, "recipient_kind", "") or ("email" if channel.code == "email"
                                                      else "phone")


def _switched_off(events: Iterable[str]) -> set[tuple[str, str]]:
    """``(event, channel)`` pairs the merchant switched off (no row: on), in one query."""
    return set(NotificationRule.objects.filter(event__in=list(events), enabled=False)
               .values_list("event", "channel"))


# --- Deciding (inside the change's transaction) -----------------------------------------------


def _write(rows: list[Notification], event_keys: Sequence[str], enqueue: bool = True) -> int:
    """Insert the rows (those already there are left as they are: a replay); send after
    commit (``enqueue``; the caller enqueues otherwise). Returns how many rows were offered."""
    if not rows:
        return 0
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    if enqueue:
        send_after_commit(sorted({row.event_key for row in rows} & set(event_keys)))
    return len(rows)


def send_after_commit(event_keys: Sequence[str]) -> None:
    """One job for these events' messages, once the transaction commits."""
    keys = [key for key in event_keys if key]
    if keys:
        transaction.on_commit(lambda: async_task(
            SEND_EVENT_TASK, *keys, task_name=f"notify-{keys[0]}"[:100],
            timeout=SEND_TIMEOUT_SECONDS * 5, save=False))


def customer_preferences(user_id: int | None) -> tuple[list[str], str]:
    """``(channels, language)`` a customer chose; the store's default channels for guests and
    until they choose, and "" for the store's language."""
    if user_id:
        from backoffice.customers.models import CustomerProfile

        found = (CustomerProfile.objects.filter(user_id=user_id)
                 .values_list("notification_channels", "language").first())
        if found is not None:
            channels, language = found
            return (list(settings.NOTIFICATION_DEFAULT_CHANNELS) if channels is None
                    else list(channels)), language or ""
    return list(settings.NOTIFICATION_DEFAULT_CHANNELS), ""


def _customer_rows(event: str, key: str, *, active: Mapping[str, str],
                   off: set[tuple[str, str]], email: str = "", phone: str = "",
                   user_id: int | None = None, order_id: int | None = None,
                   context: Mapping[str, Any] | None = None) -> list[Notification]:
    spec = catalogue.event(event)
    if spec.email_only:
        wanted = [code for code, kind in active.items() if kind == "email"][:1]
        language = customer_preferences(user_id)[1] if user_id else ""
    else:
        chosen, language = customer_preferences(user_id)
        wanted = sorted(code for code in chosen if code in active and (event, code) not in off)
    number = e164_or_blank(phone) if any(active[c] == "phone" for c in wanted) else ""
    rows = []
    for code in wanted:
        recipient = email.strip().lower() if active[code] == "email" else number
        if recipient:
            rows.append(Notification(
                event=event, event_key=f"{event}:{key}", audience=Audience.CUSTOMER,
                channel=code, recipient=recipient, user_id=user_id, order_id=order_id,
                language=base_language(language), context=dict(context or {}),
                sensitive=spec.sensitive, next_attempt_at=timezone.now(),
            ))
    return rows


def queue_customer(event: str, key: str, *, email: str = "", phone: str = "",
                   user_id: int | None = None, order_id: int | None = None,
                   context: Mapping[str, Any] | None = None) -> int:
    """Queue ``event`` for one customer on each channel they chose that is active and switched
    on, and that they have an address for (account mails: email only, whatever they chose).
    Its key is ``f"{event}:{key}"``. Returns how many messages were offered (a replay offers
    them again and writes nothing)."""
    active = active_channels()
    if not active:
        return 0
    rows = _customer_rows(event, key, active=active, off=_switched_off([event]), email=email,
                          phone=phone, user_id=user_id, order_id=order_id, context=context)
    return _write(rows, [f"{event}:{key}"])


def staff_recipients(event: str) -> list[tuple[str, str]]:
    """``[(kind, address)]`` for a staff alert: "email" addresses and "phone" numbers. An alert
    nobody was set up for goes to the active superusers' emails."""
    # The alert and its users' emails in one query (a row per user; one with none).
    found_rows = list(StaffAlert.objects.filter(event=event).values_list(
        "enabled", "emails", "phones", "users__email", "users__is_active", "users__is_staff"))
    if found_rows and not found_rows[0][0]:
        return []
    emails = [e for _, _, _, e, active, staff in found_rows if e and active and staff]
    phones: list[str] = []
    if found_rows:
        _, extra_emails, extra_phones = found_rows[0][:3]
        emails += [line.strip() for line in extra_emails.splitlines() if line.strip()]
        phones = [e164_or_blank(line) for line in extra_phones.splitlines() if line.strip()]
    if not emails and not any(phones):
        emails = list(get_user_model().objects.filter(is_active=True, is_superuser=True)
                      .exclude(email="").values_list("email", flat=True))
    found = [("email", e.lower()) for e in dict.fromkeys(emails)]
    found += [("phone", p) for p in dict.fromkeys(phones) if p]
    return found


def _staff_rows(event: str, key: str, *, active: Mapping[str, str], off: set[tuple[str, str]],
                order_id: int | None = None,
                context: Mapping[str, Any] | None = None) -> list[Notification]:
    catalogue.event(event)
    by_kind: dict[str, str] = {}
    for code in sorted(active, key=lambda c: (c != "sms", c != "email", c)):
        by_kind.setdefault(active[code], code)
    on = {code for code in by_kind.values() if (event, code) not in off}
    if not on:
        return []
    return [
        Notification(
            event=event, event_key=f"{event}:{key}", audience=Audience.STAFF,
            channel=by_kind[kind], recipient=address, order_id=order_id,
            context=dict(context or {}), next_attempt_at=timezone.now(),
        )
        for kind, address in staff_recipients(event)
        if kind in by_kind and by_kind[kind] in on
    ]


def queue_staff(event: str, key: str, *, order_id: int | None = None,
                context: Mapping[str, Any] | None = None) -> int:
    """Queue a staff alert for everyone set up to hear it (email; SMS for phone numbers, on the
    ``sms`` channel when active, else the first active phone channel)."""
    active = active_channels()
    if not active:
        return 0
    rows = _staff_rows(event, key, active=active, off=_switched_off([event]),
                       order_id=order_id, context=context)
    return _write(rows, [f"{event}:{key}"])


# --- The domain's events ------------------------------------------------------------------------


def customer_of(order: Any) -> dict[str, str]:
    """The customer of an order as plugins get it: email, phone (E.164 or ""), name, language
    ("" for the store's)."""
    return {"email": order.email, "phone": e164_or_blank(order.phone),
            "name": order.customer_name, "language": customer_preferences(order.user_id)[1]}


def _for_order(order: Any, event: str, key: str, **facts: Any) -> int:
    return queue_customer(event, key, email=order.email, phone=order.phone,
                          user_id=order.user_id, order_id=order.pk, context=facts)


def order_placed(order: Any) -> None:
    """The confirmation and the staff's new-order alert: read, written and sent together (this
    runs in every checkout's transaction)."""
    active = active_channels()
    if not active:
        return
    key = f"order:{order.pk}:placed"
    off = _switched_off(["order_placed", "staff_new_order"])
    rows = _customer_rows("order_placed", key, active=active, off=off, email=order.email,
                          phone=order.phone, user_id=order.user_id, order_id=order.pk)
    rows += _staff_rows("staff_new_order", key, active=active, off=off, order_id=order.pk)
    _write(rows, [f"order_placed:{key}", f"staff_new_order:{key}"])


def order_moved(order: Any, moves: Sequence[tuple[str, str, str]], note: str = "") -> None:
    """Called by the orders service for each set of state moves (under the order's lock)."""
    for state, old, new in moves:
        if state == "payment" and new == "paid" and old == "unpaid":
            _for_order(order, "payment_succeeded", f"order:{order.pk}:paid",
                       amount=format_money(order.total, order.currency))
        elif state == "payment" and new == "overpaid":
            queue_staff("staff_payment_problem", f"order:{order.pk}:overpaid", order_id=order.pk,
                        context={"problem": "Paid twice: the order holds more than its total. "
                                            "Refund the second payment."})
        elif state == "order" and new == "cancelled":
            _for_order(order, "order_cancelled", f"order:{order.pk}:cancelled", reason=note)
        elif state == "fulfilment" and new == "delivered":
            _for_order(order, "order_delivered", f"order:{order.pk}:delivered")


def shipment_created(order: Any, shipment: Any, quantities: Mapping[int, int]) -> None:
    from backoffice.orders.models import OrderLine

    names = dict(OrderLine.objects.filter(pk__in=list(quantities))
                 .values_list("pk", "product_name"))
    _for_order(order, "order_shipped", f"shipment:{shipment.pk}:shipped",
               carrier=shipment.carrier, tracking_number=shipment.tracking_number,
               tracking_url=shipment.tracking_url,
               shipped_lines=[{"name": names.get(pk, ""), "quantity": q}
                              for pk, q in quantities.items()])


def refund_succeeded(order: Any, refund: Any) -> None:
    _for_order(order, "order_refunded", f"refund:{refund.pk}:refunded",
               amount=format_money(refund.amount, order.currency), reason=refund.reason,
               refunded_total=format_money(order.refunded_total, order.currency))


def payment_failed(order: Any, payment: Any, message: str) -> None:
    if order.status == "open" and order.payment_status == "unpaid":
        _for_order(order, "payment_failed", f"payment:{payment.pk}:failed", error=message)


def payment_problem(order_id: int | None, key: str, problem: str) -> None:
    queue_staff("staff_payment_problem", key, order_id=order_id, context={"problem": problem})


def stock_low(*, stock_id: int, sku: str, product_name: str, warehouse: str, available: int,
              threshold: int) -> None:
    # Each fall to the threshold is its own alert (the stock service reports only the fall).
    queue_staff("staff_low_stock", f"stock:{stock_id}:low:{uuid.uuid4().hex}", context={
        "sku": sku, "product_name": product_name, "warehouse": warehouse,
        "available": available, "threshold": threshold,
    })


def low_stock_digest(rows: Sequence[Mapping[str, Any]]) -> int:
    if not rows:
        return 0
    day = timezone.localdate().isoformat()
    with transaction.atomic():
        return queue_staff("staff_low_stock_digest", f"low-stock-digest:{day}",
                           context={"rows": [dict(r) for r in rows], "count": len(rows)})


def import_failed(*, job_id: int, kind: str, file_name: str, error: str) -> None:
    queue_staff("staff_import_failed", f"import:{job_id}:failed", context={
        "job_id": job_id, "kind": kind, "file_name": file_name, "error": error[:2000]})


def plugin_failed(*, delivery_id: int, plugin: str, hook: str, attempts: int,
                  error: str) -> None:
    queue_staff("staff_plugin_failed", f"plugin-delivery:{delivery_id}:failed:{attempts}",
                context={"plugin": plugin, "hook": hook, "attempts": attempts,
                         "error": error.strip().splitlines()[-1][:500] if error.strip() else ""})


def account_email(user: Any, event: str, link: str) -> None:
    """Email verification (with the welcome) and password reset: to the account's address."""
    name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    queue_customer(event, f"user:{user.pk}:{event}:{uuid.uuid4().hex}", email=user.email,
                   user_id=user.pk, context={"customer_name": name or "", "link": link})


# --- Rendering a row --------------------------------------------------------------------------


def _address_lines(address: Mapping[str, Any] | None) -> dict[str, Any]:
    address = address or {}
    name = " ".join(p for p in (address.get("first_name"), address.get("last_name")) if p)
    lines = [address.get(k) for k in ("company", "line1", "line2") if address.get(k)]
    place = " ".join(p for p in (address.get("postal_code"), address.get("city")) if p)
    lines += [p for p in (place, address.get("region")) if p]
    return {"name": name, "lines": lines, "country": address.get("country", ""),
            "phone": address.get("phone", "")}


def _instructions(order: Any, bound: Any) -> str:
    explain = getattr(bound.provider, "customer_instructions", None) if bound else None
    if explain is None:
        return ""
    try:
        return str(explain(order_number=order.number or "", amount=order.total,
                           currency=order.currency, config=bound.config) or "")
    except Exception:  # noqa: BLE001 - instructions are a courtesy; the message still goes
        logger.exception("payment instructions of %s failed", order.payment_method)
        return ""


def order_context(order: Any) -> dict[str, Any]:
    """What an order message is rendered from: plain values, money as the customer reads it."""
    cur = order.currency
    url = settings.ORDER_STATUS_URL
    method = order.payment_method
    bound = None
    if method:
        with contextlib.suppress(UnknownProvider, PluginConfigError):
            bound = plugins.payment_provider(method)
    return {
        "order_number": order.number or "",
        "customer_name": order.customer_name,
        "email": order.email,
        "phone": order.phone,
        "currency": cur,
        "subtotal": format_money(order.subtotal, cur),
        "discount_total": format_money(order.discount_total, cur) if order.discount_total else "",
        "shipping_total": format_money(order.shipping_total, cur),
        "total": format_money(order.total, cur),
        "lines": [
            {"name": line.product_name, "variant": line.variant_name, "sku": line.sku,
             "quantity": line.quantity, "unit_price": format_money(line.unit_price, cur),
             "total": format_money(line.total, cur)}
            for line in order.lines.all()
        ],
        "shipping_address": _address_lines(order.shipping_address),
        "billing_address": _address_lines(order.billing_address),
        "shipping_method": order.shipping_method_name,
        "payment_method": bound.provider.name if bound else method,
        "pay_on_delivery": order.pay_on_delivery,
        "paid": order.payment_status != "unpaid",
        "shipped": order.fulfilment_status != "unfulfilled",
        "payment_instructions": "" if order.payment_status != "unpaid" else _instructions(
            order, bound),
        "order_url": url.format(order_number=order.number or "", order_token=order.token)
        if url else "",
    }


def context_of(row: Notification) -> dict[str, Any]:
    """The full context of a row: the store, the order as it is now, the event's facts."""
    context: dict[str, Any] = {"store_name": settings.STORE_NAME}
    if row.order_id:
        context.update(order_context(row.order))
    context.update(row.context or {})
    return context


# --- Sending (the jobs) --------------------------------------------------------------------------


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


def _claim(pk: int) -> bool:
    now = timezone.now()
    return Notification.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=pk, status=Status.QUEUED,
    ).update(status=Status.SENDING, started_at=now, attempts=F("attempts") + 1) == 1


def _finish(row: Notification, **fields: Any) -> str:
    if fields.get("status", Status.QUEUED) != Status.QUEUED and _erase_after_send(row.event):
        # Sent (or failed for good) to someone whose data is erased: nothing of them is kept.
        fields.update(_erased_fields(row.pk))
    recipient = row.recipient
    for name, value in fields.items():
        setattr(row, name, value)
    # One UPDATE, on the condition that the row still has its recipient: a row erased while it
    # was being sent (its customer closed their account meanwhile) records how the send went,
    # never the text or the address again.
    if not Notification.objects.filter(pk=row.pk, recipient=recipient).update(**fields):
        Notification.objects.filter(pk=row.pk).update(
            **{name: value for name, value in fields.items() if name not in PERSONAL_FIELDS})
    return row.status


def _fail(row: Notification, error: str) -> str:
    logger.warning("notification %s (%s to %s by %s) failed: %s", row.pk, row.event,
                   _masked(row.recipient), row.channel, error.splitlines()[-1] if error else "")
    return _finish(row, status=Status.FAILED, error=error[-2000:], next_attempt_at=None)


def _retry(row: Notification, error: str) -> str:
    if row.attempts >= MAX_ATTEMPTS:
        return _fail(row, f"gave up after {row.attempts} attempts: {error}")
    return _finish(row, status=Status.QUEUED, error=error[-2000:],
                   next_attempt_at=timezone.now() + _backoff(row.attempts))


def _masked(recipient: str) -> str:
    """For logs: enough to tell messages apart, not a customer's address."""
    if "@" in recipient:
        name, _, domain = recipient.partition("@")
        return f"{name[:1]}***@{domain}"
    return recipient[:5] + "***" + recipient[-2:]


def send(pk: int) -> str:
    """Send one queued notification (the job). Returns its status, or "skipped"."""
    if not _claim(pk):
        return "skipped"
    row = Notification.objects.select_related("order").get(pk=pk)
    try:
        bound = plugins.notification_channel(row.channel)
    except UnknownProvider:
        return _fail(row, f"The channel {row.channel!r} is not active any more.")
    except PluginConfigError as exc:
        return _retry(row, f"The channel's plugin is not set up: {exc}")
    try:
        rendered = render(row.event, row.channel, recipient_kind(bound.provider),
                          context_of(row), row.language)
    except TemplateError as exc:
        return _fail(row, f"The template cannot render: {exc}")
    message = Message(
        recipient=row.recipient, subject=rendered.subject, body=rendered.text,
        html=rendered.html, event=row.event, context=row.context, notification_id=row.pk,
        language=row.language,
    )
    try:
        result = bound.provider.send(message, bound.config)
    except Exception as exc:  # noqa: BLE001 - a channel's exception is a temporary failure
        return _retry(row, f"{type(exc).__name__}: {exc}")
    if row.sensitive:
        rendered = type(rendered)(subject=rendered.subject, text=_REDACTED,
                                  html=_REDACTED if rendered.html else "")
    fields = {"subject": rendered.subject, "body": rendered.text, "html": rendered.html,
              "provider_message_id": (result.provider_message_id or "")[:255],
              "cost": (result.cost or "")[:40], "next_attempt_at": None}
    if result.status == "failed":
        _finish(row, **fields)
        return _fail(row, result.error or "The provider refused the message.")
    now = timezone.now()
    fields.update(status=Status.DELIVERED if result.status == "delivered" else Status.SENT,
                  sent_at=now, error="")
    if result.status == "delivered":
        fields["delivered_at"] = now
    return _finish(row, **fields)


def send_event(*event_keys: str) -> int:
    """Send every queued message of these events (the job enqueued after their commit)."""
    sent = 0
    for pk in Notification.objects.filter(event_key__in=event_keys, status=Status.QUEUED) \
            .order_by("pk").values_list("pk", flat=True):
        if send(pk) in (Status.SENT, Status.DELIVERED):
            sent += 1
    return sent


def _enqueue(pks: Iterable[int]) -> None:
    for pk in pks:
        async_task(SEND_TASK, pk, task_name=f"notification-{pk}", timeout=SEND_TIMEOUT_SECONDS,
                   save=False)


def retry_due(limit: int = 500) -> int:
    """The schedule (every minute): rows whose worker died are failed (outcome unknown, never
    sent twice); due retries and rows whose enqueue was lost are enqueued."""
    now = timezone.now()
    stuck = Notification.objects.filter(status=Status.SENDING,
                                        started_at__lt=now - SENDING_TIMEOUT)
    # Failed for good: a message to a closed account keeps nothing of its recipient.
    stuck.filter(event__in=[code for code in catalogue.EVENTS if _erase_after_send(code)]) \
        .update(**_ERASED_RECIPIENT, subject="", body=ERASED_TEXT, html="", context={})
    stuck.update(status=Status.FAILED, next_attempt_at=None,
                 error="Its worker stopped while sending: it may or may not have gone out. "
                       "Resend it if it did not arrive.")
    # A first attempt is its event job's to make; the sweeper takes it only once that job had
    # time to (an enqueue lost between commit and queue), not while it waits behind a backlog.
    due = list(Notification.objects.filter(
        Q(attempts__gt=0, next_attempt_at__lte=now)
        | Q(attempts=0, next_attempt_at__lte=now - LOST_ENQUEUE_AFTER),
        status=Status.QUEUED,
    ).order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    _enqueue(due)
    return len(due)


def resend(pks: Iterable[int], *, actor: Any = None) -> tuple[int, int]:
    """Queue messages again (the admin's action): ``(queued, refused)``. Messages that held a
    one-time link are refused: the customer asks for a new link. ``actor`` (an
    ``inventory.services.Actor``; None: the system) needs ``notifications.resend_notification``."""
    from backoffice.permissions import RESEND_NOTIFICATION, require

    require(actor, RESEND_NOTIFICATION)
    rows = Notification.objects.filter(pk__in=list(pks)).exclude(status__in=[Status.SENDING,
                                                                             Status.QUEUED])
    # Nor are messages whose recipient was erased (a closed account): there is nobody to send to.
    refused = rows.filter(Q(sensitive=True) | Q(recipient__startswith=ERASED_PREFIX)).count()
    ids = list(rows.filter(sensitive=False).exclude(recipient__startswith=ERASED_PREFIX)
               .values_list("pk", flat=True))
    Notification.objects.filter(pk__in=ids).update(
        status=Status.QUEUED, attempts=0, resends=F("resends") + 1, error="",
        next_attempt_at=timezone.now(), provider_message_id="",
    )
    transaction.on_commit(lambda: _enqueue(ids))
    return len(ids), refused


# --- Delivery reports ---------------------------------------------------------------------------


def delivery_report_token(channel: str) -> str:
    """The secret part of a channel's delivery-report URL (changes with ``SECRET_KEY``)."""
    return salted_hmac("backoffice.notifications.delivery-report", channel,
                       algorithm="sha256").hexdigest()[:40]


def delivery_report_url(channel: str) -> str:
    return (f"{settings.PUBLIC_URL}/api/v1/notifications/delivery-reports/{channel}/"
            f"{delivery_report_token(channel)}/")


def token_matches(channel: str, token: str) -> bool:
    return constant_time_compare(delivery_report_token(channel), token or "")


def record_reports(channel: str, reports: Sequence[DeliveryReport]) -> int:
    """Apply a provider's delivery reports: ``sent`` → ``delivered`` or ``failed`` (with the
    reason). A report for a message we do not know, or one already final, changes nothing.
    Returns how many rows changed."""
    changed = 0
    now = timezone.now()
    for report in reports:
        if not report.provider_message_id:
            continue
        rows = Notification.objects.filter(channel=channel,
                                           provider_message_id=report.provider_message_id)
        extra: dict[str, Any] = {"cost": report.cost[:40]} if report.cost else {}
        if report.status == "delivered":
            changed += rows.filter(status__in=[Status.SENT, Status.SENDING]).update(
                status=Status.DELIVERED, delivered_at=now, **extra)
        elif report.status == "failed":
            changed += rows.filter(status__in=[Status.SENT, Status.SENDING]).update(
                status=Status.FAILED, error=(report.error or "The provider could not deliver "
                                             "it.")[:2000], **extra)
    return changed
