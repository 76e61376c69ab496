"""Payments: start one for an order, act once on what providers say, reconcile, refund.

The storefront API, the webhook endpoint, the admin and the jobs all call these.

- **No provider is called while a row is locked.** A payment row is written first (so a retry
  finds it and reuses its idempotency key), the provider is called, then its answer is saved.
- **Webhooks are stored, then processed by a job.** The provider's event id is unique, so a
  replay is stored once. Acting on it locks the order and the payment and applies the status
  machine, so an event processed twice at once (the job and reconciliation) changes them once.
- **Providers whose webhooks are only signals** (``confirm_webhooks``: M-Pesa, Chapa) are
  asked where the payment stands before anything is believed.
- **A success must match**: the amount and currency the provider reports must be the payment's.
- **Status moves not in the machine are ignored** (``backoffice.payments.status``): a late
  "failed" after a success changes nothing; a late success after a failure is money received,
  and counts.
- Every move writes an ``OrderEvent`` and queues ``payment_status_changed`` for plugins.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Sum
from django.urls import reverse
from django.utils import timezone
from django_q.tasks import async_task

from backoffice import permissions
from backoffice.audit import services as audit
from backoffice.audit.models import AuditAction
from backoffice.inventory.services import SYSTEM, Actor
from backoffice.money import format_money, quantize
from backoffice.notifications import services as notifications
from backoffice.orders import services as orders
from backoffice.orders.models import Order, OrderEvent, Refund
from backoffice.orders.status import FulfilmentStatus, OrderStatus
from backoffice.orders.status import PaymentStatus as OrderPayment
from backoffice.payments.models import Payment, PaymentEvent
from backoffice.payments.status import (
    OPEN_STATUSES,
    SETTLED_STATUSES,
    PaymentStatus,
    can_move,
)
from backoffice.plugin_host import services as plugins
from backoffice.plugin_host.errors import PaymentProviderError, PluginError, UnknownProvider
from backoffice.plugin_host.events import emit_event
from backoffice.plugin_host.protocols import (
    PaymentLine,
    PaymentRequest,
    ProviderEvent,
    WebhookRequest,
)
from backoffice.plugin_host.protocols import RefundRequest as ProviderRefundRequest

logger = logging.getLogger(__name__)

PROCESS_TASK = "backoffice.payments.tasks.process_event"
# An event whose processing failed (a provider timeout, the database) is tried again by the
# reconciliation job this many times, then left with its error for staff.
MAX_EVENT_ATTEMPTS = 10
MANUAL = "manual"
# A refund the provider refused when asked again: maybe done, maybe not; staff check.
UNCONFIRMED = "unconfirmed"
# How long a start may wait for its provider (requests' read timeouts are 30 s).
IN_FLIGHT_SECONDS = 45

S = PaymentStatus


class PaymentError(Exception):
    """A payment operation that cannot be done. ``code`` is for programs; ``status`` the HTTP
    status the API answers with."""

    def __init__(self, message: str, code: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# --- Finding providers ---------------------------------------------------------------------------


def _bound(code: str) -> plugins.Bound:
    try:
        return plugins.payment_provider(code)
    except UnknownProvider:
        raise PaymentError(f"There is no payment method {code!r}.", "unknown_payment_method",
                           404) from None
    except PluginError as exc:  # its settings are incomplete: the merchant's to fix
        logger.error("payment provider %s cannot be used: %s", code, exc)
        raise PaymentError(f"{code} payments are not available right now.",
                           "provider_unavailable", 503) from exc


def _flag(provider: Any, name: str, default: bool) -> bool:
    return bool(getattr(provider, name, default))


def webhook_url(code: str) -> str:
    """Where provider ``code`` sends its webhooks for this store."""
    return settings.PUBLIC_URL + reverse("api-v1:payment_webhook", kwargs={"provider": code})


# --- Starting a payment --------------------------------------------------------------------------


def _check_payable(order: Order) -> None:
    if order.payment_status != OrderPayment.UNPAID:
        raise PaymentError("This order has been paid.", "already_paid")
    if order.status != OrderStatus.OPEN:
        raise PaymentError(
            f"An order that is {order.get_status_display().lower()} cannot be paid.",
            "not_payable",
        )
    if order.payment_due_at is not None and order.payment_due_at <= timezone.now():
        raise PaymentError("The time to pay for this order has run out.", "payment_window_over")
    if order.total <= 0:
        raise PaymentError("This order has nothing to pay.", "nothing_to_pay")


def _fill(template: str, order: Order, payment: Payment) -> str:
    return template.format_map({
        "order_number": order.number, "payment_id": payment.pk, "order_token": order.token,
    })


def _lines(order: Order) -> list[PaymentLine]:
    lines = [
        PaymentLine(name=" - ".join(p for p in (ln.product_name, ln.variant_name) if p),
                    quantity=ln.quantity, amount=ln.total)
        for ln in order.lines.all()
    ]
    if order.shipping_total:
        lines.append(PaymentLine(name=f"Shipping: {order.shipping_method_name}", quantity=1,
                                 amount=order.shipping_total))
    return lines


def _request(order: Order, payment: Payment) -> PaymentRequest:
    address = order.billing_address or order.shipping_address or {}
    return PaymentRequest(
        payment_id=payment.pk, order_number=order.number or "", amount=payment.amount,
        currency=payment.currency, idempotency_key=payment.idempotency_key,
        customer_email=order.email, customer_phone=payment.phone,
        description=f"Order {order.number}",
        return_url=_fill(settings.PAYMENT_RETURN_URL, order, payment),
        cancel_url=_fill(settings.PAYMENT_CANCEL_URL, order, payment),
        # Our payment id rides along, for providers that echo the URL back (M-Pesa): a
        # callback then finds its payment even if the start timed out before the reference.
        callback_url=f"{webhook_url(payment.provider)}?payment={payment.pk}",
        pay_by=order.payment_due_at,
        metadata={"payment_id": str(payment.pk), "order_number": order.number or "",
                  "first_name": str(address.get("first_name") or ""),
                  "last_name": str(address.get("last_name") or "")},
        lines=_lines(order),
    )


def start_payment(
    order: Order | int, provider_code: str, *, phone: str = "",
    user: AbstractBaseUser | None = None,
) -> tuple[Payment, bool]:
    """Start paying for ``order`` with ``provider_code``; returns ``(payment, created)``.

    An open payment of the order with the same provider is returned as it is (pressing "pay"
    twice does not push two M-Pesa prompts or open two Stripe sessions); one the provider never
    answered is started again with its own idempotency key. Raises ``PaymentError``.
    """
    bound = _bound(provider_code)
    pk = order.pk if isinstance(order, Order) else order
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).get(pk=pk)
        _check_payable(order)
        payment = (Payment.objects.filter(order=order, provider=provider_code,
                                          status__in=OPEN_STATUSES).order_by("-id").first())
        created = payment is None
        if payment is not None and (payment.provider_reference or _in_flight(payment)):
            # Started already, or being started by a request still waiting for the provider:
            # a second push or session would be a second way to pay the same order.
            return payment, False
        if payment is None:
            payment = Payment.objects.create(
                order=order, provider=provider_code, amount=order.total, currency=order.currency,
                idempotency_key=f"pay-{uuid.uuid4().hex}", phone=(phone or order.phone)[:32],
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
            _switch_method(order, provider_code, bound.provider)
        elif phone:
            payment.phone = phone[:32]
            payment.save(update_fields=["phone", "updated_at"])
    _initiate(payment, order, bound)
    payment.refresh_from_db()
    return payment, created


def _in_flight(payment: Payment) -> bool:
    """Created moments ago and neither answered nor failed: its start is still running."""
    return (not payment.message
            and payment.created_at > timezone.now() - timedelta(seconds=IN_FLIGHT_SECONDS))


def _switch_method(order: Order, code: str, provider: Any) -> None:
    """Paying another way than chosen at checkout: the order says so, and its payment window
    follows the new method (cash on delivery waits for staff, not a timer)."""
    if order.payment_method == code:
        return
    order.payment_method = code
    # Once goods went out on cash-on-delivery terms, the rest still ships on them: paying the
    # balance by card must not stop it (nor start a payment window).
    if order.fulfilment_status == FulfilmentStatus.UNFULFILLED:
        order.pay_on_delivery = not _flag(provider, "unpaid_orders_expire", True)
        if order.pay_on_delivery:
            order.payment_due_at = None
        elif order.payment_due_at is None:
            order.payment_due_at = timezone.now() + timedelta(
                minutes=settings.ORDER_PAYMENT_WINDOW_MINUTES)
    order.save(update_fields=["payment_method", "pay_on_delivery", "payment_due_at",
                              "updated_at"])


def _initiate(payment: Payment, order: Order, bound: plugins.Bound) -> None:
    request = _request(Order.objects.prefetch_related("lines").get(pk=order.pk), payment)
    try:
        result = bound.provider.initiate(request, bound.config)
    except PaymentProviderError as exc:
        apply_status(payment.pk, S.FAILED, message=str(exc), actor=_provider_actor(payment))
        raise PaymentError(str(exc), exc.code, 422) from exc
    except Exception as exc:
        # A timeout or a 5xx: the payment stays pending without a reference, and the same
        # start (same idempotency key) is tried again by the customer or by reconciliation.
        logger.exception("%s did not answer when starting payment %s", payment.provider,
                         payment.pk)
        Payment.objects.filter(pk=payment.pk).update(
            message="The provider did not answer; try again.", updated_at=timezone.now())
        raise PaymentError(f"{payment.provider} did not answer; try again in a moment.",
                           "provider_unavailable", 503) from exc
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        # A racing start may have answered first: the first reference stays (callbacks of the
        # other still find the payment by its id).
        locked.provider_reference = (locked.provider_reference
                                     or result.provider_reference[:255] or None)
        locked.next_action = {"kind": result.next_action.kind, "url": result.next_action.url,
                              "message": result.next_action.message}
        locked.message = ""
        locked.save(update_fields=["provider_reference", "next_action", "message",
                                   "updated_at"])
    if result.status != locked.status:
        apply_status(payment.pk, result.status, amount=payment.amount,
                     currency=payment.currency, authoritative=True,
                     actor=_provider_actor(payment))


def _provider_actor(payment: Payment) -> Actor:
    return Actor(label=f"{payment.provider} payment")


# --- Applying what a provider says ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What applying a provider's word did; ``retry`` when it must be tried again later."""

    text: str
    retry: bool = False
    error: str = ""


def _amount_problem(payment: Payment, amount: Decimal | None, currency: str,
                    authoritative: bool) -> str:
    if currency and currency.upper() != payment.currency:
        return f"paid in {currency.upper()}, but the payment is in {payment.currency}"
    if amount is None:
        return "" if authoritative else "the provider did not say how much was paid"
    if quantize(amount, payment.currency) != payment.amount:
        return f"{amount} {payment.currency} was paid, but {payment.amount} is due"
    return ""


def _order_event(order_id: int, actor: Actor, note: str) -> None:
    OrderEvent.objects.create(order_id=order_id, kind=OrderEvent.Kind.PAYMENT,
                              actor_id=actor.user_id, actor_label=actor.label[:120], note=note)


def _set_status(payment: Payment, status: str, actor: Actor, note: str) -> None:
    old = payment.status
    payment.status = status
    payment.save()
    _order_event(payment.order_id, actor, note)
    emit_event("payment_status_changed", payment_id=payment.pk, order_id=payment.order_id,
               provider=payment.provider, old_status=old, new_status=status)


def apply_status(
    payment_id: int, status: str, *, amount: Decimal | None = None, currency: str = "",
    provider_payment_id: str = "", message: str = "", amount_refunded: Decimal | None = None,
    refund_ids: Sequence[str] = (), authoritative: bool = False, actor: Actor = SYSTEM,
) -> Outcome:
    """Act on a provider's word about a payment, once, with the order and the payment locked.

    ``authoritative``: the answer came from asking the provider (or from staff), so a success
    without an amount is believed; a webhook's success must carry the amount.
    """
    with transaction.atomic():
        order_id = Payment.objects.values_list("order_id", flat=True).get(pk=payment_id)
        order = Order.objects.select_for_update(of=("self",)).get(pk=order_id)
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if status in {S.REFUNDED, S.PARTIALLY_REFUNDED}:
            return _apply_refunds(order, payment, amount_refunded, refund_ids, actor)
        old = payment.status
        if status == old:
            if message and message != payment.message:
                payment.message = message[:500]
                payment.save(update_fields=["message", "updated_at"])
                _order_event(order.pk, actor, f"{payment.provider}: {message}")
            return Outcome(f"already {old}")
        if not can_move(old, status):
            return Outcome(f"ignored: a {old} payment does not become {status}")
        if status == S.SUCCEEDED:
            problem = _amount_problem(payment, amount, currency, authoritative)
            if problem:
                payment.message = f"Not accepted: {problem}."[:500]
                payment.save(update_fields=["message", "updated_at"])
                _order_event(order.pk, actor,
                             f"{payment.provider} reported a payment that does not match: "
                             f"{problem}. The order was not marked paid.")
                notifications.payment_problem(
                    order.pk, f"payment:{payment.pk}:mismatch",
                    f"{payment.provider} reported a payment that does not match: {problem}. "
                    "The order was not marked paid: check the payment at the provider.")
                return Outcome("refused: " + problem, error=problem)
            payment.succeeded_at = timezone.now()
            payment.provider_payment_id = (provider_payment_id or payment.provider_payment_id)[:255]
        payment.message = message[:500]
        label = PaymentStatus(status).label.lower()
        _set_status(payment, status, actor,
                    f"Payment {payment.pk} with {payment.provider} {label}"
                    + (f" ({payment.provider_payment_id})" if status == S.SUCCEEDED
                       and payment.provider_payment_id else "")
                    + (f": {message}" if message else "."))
        if status == S.SUCCEEDED:
            _order_paid(order, payment, actor, message)
        elif status == S.FAILED:
            notifications.payment_failed(order, payment, message)
        return Outcome(f"{old} → {status}")


def _order_paid(order: Order, payment: Payment, actor: Actor, note: str) -> None:
    """The payment succeeded: the order's payment state follows, decided by the orders service
    from the order as read under its lock: paid (its stock allocation becomes final); paid
    already, a second payment (overpaid); cancelled a moment earlier, the money kept on it and
    a refund due. Money received is never lost, and staff are told what to sort out."""
    orders.payment_received(
        order, actor=actor, note=note or f"Paid with {payment.provider} (payment {payment.pk}).")


def _is_duplicate(payment: Payment) -> bool:
    """Another payment of the order took the money first: this one is a second payment."""
    return (Payment.objects.filter(order_id=payment.order_id, status__in=SETTLED_STATUSES,
                                   succeeded_at__lt=payment.succeeded_at)
            .exclude(pk=payment.pk).exists()) if payment.succeeded_at else False


def _duplicate_refunded(payment: Payment, amount: Decimal, actor: Actor) -> str:
    amount = min(amount, payment.amount)
    if amount <= payment.amount_refunded:
        return "duplicate payment: nothing new refunded"
    payment.amount_refunded = amount
    status = S.REFUNDED if amount >= payment.amount else S.PARTIALLY_REFUNDED
    if status != payment.status and can_move(payment.status, status):
        _set_status(payment, status, actor, f"Payment {payment.pk} (paid twice): {amount} "
                                            f"{payment.currency} given back; the order stands.")
    else:
        payment.save(update_fields=["amount_refunded", "updated_at"])
    if not _extra_money_held(payment.order_id):
        orders.overpayment_returned(payment.order_id, actor=actor)
    return f"duplicate payment: {amount} refunded"


def _extra_money_held(order_id: int) -> bool:
    """A payment after the order's first one still holds money."""
    taken = list(Payment.objects.filter(order_id=order_id, status__in=SETTLED_STATUSES)
                 .order_by("succeeded_at", "id").values_list("amount", "amount_refunded"))
    return any(amount > refunded for amount, refunded in taken[1:])


def refund_duplicate(payment_id: int, *, actor: Actor = SYSTEM) -> Payment:
    """Give back all of a second payment of an order already paid (the customer paid twice),
    through its provider. The order, paid by its first payment, is left as it is."""
    permissions.require(actor, permissions.REFUND_ORDER)
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != S.SUCCEEDED or not _is_duplicate(payment):
        raise PaymentError("Only a second payment of an order paid already is refunded this "
                           "way; refund the order instead.", "not_a_duplicate")
    bound = _bound(payment.provider)
    if payment.provider == MANUAL or not _flag(bound.provider, "supports_refunds", False):
        raise PaymentError(f"{payment.provider} cannot refund from here: give the money back "
                           "yourself.", "refund_by_hand")
    try:
        result = bound.provider.refund(ProviderRefundRequest(
            provider_reference=payment.provider_reference or "", amount=payment.amount,
            currency=payment.currency, idempotency_key=f"duplicate-{payment.idempotency_key}",
            reason="paid twice", provider_payment_id=payment.provider_payment_id,
        ), bound.config)
    except PaymentProviderError as exc:
        raise PaymentError(f"{payment.provider} refused the refund: {exc}", exc.code,
                           422) from exc
    if result.status == "failed":
        raise PaymentError(f"{payment.provider} could not refund the payment.", "refund_failed",
                           422)
    with transaction.atomic():
        Order.objects.select_for_update(of=("self",)).get(pk=payment.order_id)
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if result.status == "succeeded":
            _duplicate_refunded(locked, locked.amount, actor)
        else:
            _order_event(locked.order_id, actor,
                         f"Refund of payment {locked.pk} (paid twice) asked of "
                         f"{locked.provider}; it reports when it is done.")
        audit.record(actor, AuditAction.DUPLICATE_REFUNDED, locked,
                     f"Second payment of {format_money(locked.amount, locked.currency)} "
                     f"given back through {locked.provider} ({result.status}).",
                     data={"amount": str(locked.amount), "currency": locked.currency,
                           "order_id": locked.order_id, "status": result.status})
    payment.refresh_from_db()
    return payment


def _sync_refunded(payment: Payment, actor: Actor) -> None:
    """The payment's refunded amount and status follow its succeeded refunds (locked)."""
    total = (Refund.objects.filter(payment=payment, status=Refund.Status.SUCCEEDED)
             .aggregate(total=Sum("amount"))["total"] or Decimal("0"))
    total = min(total, payment.amount)
    if total == payment.amount_refunded:
        return
    payment.amount_refunded = total
    status = S.REFUNDED if total >= payment.amount else S.PARTIALLY_REFUNDED
    if status != payment.status and can_move(payment.status, status):
        _set_status(payment, status, actor,
                    f"Payment {payment.pk}: {total} {payment.currency} refunded in all.")
    else:
        payment.save(update_fields=["amount_refunded", "updated_at"])


def _apply_refunds(order: Order, payment: Payment, amount_refunded: Decimal | None,
                   refund_ids: Sequence[str], actor: Actor) -> Outcome:
    """The provider says money went back: our pending refunds it names are settled; money it
    refunded that we never asked for (from its dashboard) is recorded as a refund."""
    if payment.status not in SETTLED_STATUSES:
        return Outcome(f"waiting: refund reported for a {payment.status} payment", retry=True)
    if _is_duplicate(payment) and amount_refunded is not None:
        # A second payment of an order paid already: its money goes back without touching the
        # order (whose own payment still stands).
        return Outcome(_duplicate_refunded(payment, quantize(amount_refunded, payment.currency),
                                           actor))
    settled = 0
    pending = list(Refund.objects.filter(payment=payment, status=Refund.Status.PENDING)
                   .order_by("created_at", "id"))
    for refund in pending:
        if refund.provider_refund_id and refund.provider_refund_id in refund_ids:
            orders.settle_refund(refund, succeeded=True, actor=actor)
            settled += 1

    def total(status: str) -> Decimal:
        return (Refund.objects.filter(payment=payment, status=status)
                .aggregate(total=Sum("amount"))["total"] or Decimal("0"))

    recorded = ""
    if amount_refunded is not None:
        reported = quantize(amount_refunded, payment.currency)
        # Refunds the provider has acknowledged (they have its id), oldest first, are done
        # once its running total covers them (its events may not list refunds by id).
        for refund in Refund.objects.filter(payment=payment, status=Refund.Status.PENDING) \
                .exclude(provider_refund_id="").order_by("created_at", "id"):
            if total(Refund.Status.SUCCEEDED) + refund.amount > reported:
                break
            orders.settle_refund(refund, succeeded=True, actor=actor)
            settled += 1
        # Pending refunds count as ours too: one that timed out may be in the total already.
        extra = reported - total(Refund.Status.SUCCEEDED) - total(Refund.Status.PENDING)
        if extra > 0:
            try:
                orders.record_refund(
                    order, orders.RefundRequest(amount=extra,
                                                reason=f"refunded at {payment.provider}"),
                    actor=actor, payment_id=payment.pk,
                )
                recorded = f"; recorded {extra} {payment.currency} refunded at the provider"
            except orders.OrderError as exc:
                _order_event(order.pk, actor,
                             f"{payment.provider} refunded {extra} {payment.currency} that "
                             f"could not be recorded: {exc}")
                recorded = f"; could not record {extra}: {exc}"
    _sync_refunded(payment, actor)
    return Outcome(f"refunds: {settled} settled{recorded}")


# --- Webhooks -------------------------------------------------------------------------------------


def _claims(event: ProviderEvent) -> dict[str, Any]:
    data = asdict(event)
    data.pop("raw")
    data["refund_ids"] = list(event.refund_ids)
    return data


def receive_webhook(provider_code: str, *, body: bytes, headers: dict[str, str],
                    query: dict[str, str]) -> tuple[int, int]:
    """Verify and store a webhook (``WebhookVerificationError`` if it is not genuine: nothing
    stored); its events are processed by a job after commit. Returns (events, new events)."""
    bound = _bound(provider_code)
    events = bound.provider.verify_webhook(
        WebhookRequest(body=body, headers=headers, query=query), bound.config)
    signed = not _flag(bound.provider, "confirm_webhooks", False)
    new: list[int] = []
    with transaction.atomic():
        for event in events:
            stored, created = PaymentEvent.objects.get_or_create(
                provider=provider_code, event_id=event.event_id[:255],
                defaults={"source": PaymentEvent.Source.WEBHOOK, "claims": _claims(event),
                          "payload": dict(event.raw), "verified": signed},
            )
            if created:
                new.append(stored.pk)
        transaction.on_commit(lambda: _enqueue(new))
    return len(events), len(new)


def _enqueue(event_ids: list[int]) -> None:
    for pk in event_ids:
        async_task(PROCESS_TASK, pk, task_name=f"payment-event-{pk}")


def _find_payment(provider: str, claims: dict[str, Any]) -> Payment | None:
    mine = Payment.objects.filter(provider=provider)
    if claims.get("provider_reference"):
        found = mine.filter(provider_reference=claims["provider_reference"]).first()
        if found:
            return found
    if claims.get("provider_payment_id"):
        found = mine.filter(provider_payment_id=claims["provider_payment_id"]).first()
        if found:
            return found
    if claims.get("payment_id"):
        return mine.filter(pk=claims["payment_id"]).first()
    return None


def _decimal(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def process_event(event_id: int) -> str:
    """Act on one stored event (the job). Returns what it did."""
    event = PaymentEvent.objects.filter(pk=event_id, processed_at__isnull=True).first()
    if event is None:
        return "skipped"
    PaymentEvent.objects.filter(pk=event_id).update(attempts=F("attempts") + 1)
    claims = event.claims
    try:
        payment = _find_payment(event.provider, claims)
        if payment is None:
            return _finish(event_id, None, Outcome("", error="no payment of ours has this "
                                                   "reference"))
        status, amount = claims["status"], _decimal(claims.get("amount"))
        currency = claims.get("currency", "")
        if not payment.provider_reference and claims.get("provider_reference"):
            # Its start timed out before the provider's answer: the callback brings it.
            Payment.objects.filter(pk=payment.pk, provider_reference__isnull=True).update(
                provider_reference=claims["provider_reference"][:255])
        provider_payment_id, message = claims.get("provider_payment_id", ""), claims.get(
            "message", "")
        verified = event.verified
        if not verified and status not in {S.REFUNDED, S.PARTIALLY_REFUNDED}:
            # Only a signal: ask the provider itself (outside any lock).
            bound = _bound(event.provider)
            reference = claims.get("provider_reference") or payment.provider_reference or ""
            answer = bound.provider.query_status(reference, bound.config)
            verified = True
            if answer.status in OPEN_STATUSES and status not in OPEN_STATUSES:
                return _finish(event_id, payment, Outcome(
                    f"the webhook says {status}; the provider still says {answer.status}; "
                    "reconciliation asks again"), verified=True)
            status = answer.status
            currency = answer.currency or currency
            amount = answer.amount if answer.amount is not None else amount
            provider_payment_id = answer.provider_payment_id or provider_payment_id
            message = answer.message or message
        outcome = apply_status(
            payment.pk, status, amount=amount, currency=currency,
            provider_payment_id=provider_payment_id, message=message,
            amount_refunded=_decimal(claims.get("amount_refunded")),
            refund_ids=claims.get("refund_ids") or (), authoritative=event.source != "webhook",
            actor=_provider_actor(payment),
        )
        return _finish(event_id, payment, outcome, verified=verified)
    except Exception as exc:  # noqa: BLE001 - kept on the event and retried by reconciliation
        logger.exception("payment event %s could not be processed", event_id)
        PaymentEvent.objects.filter(pk=event_id).update(error=f"{type(exc).__name__}: {exc}"[:5000])
        _tell_staff_event_failed(event_id, exc)
        return "error"


def _tell_staff_event_failed(event_id: int, exc: Exception) -> None:
    """One alert per stored event that cannot be processed (retries add none)."""
    try:
        with transaction.atomic():
            provider = PaymentEvent.objects.values_list("provider", flat=True).get(pk=event_id)
            notifications.payment_problem(
                None, f"payment-event:{event_id}:error",
                f"A {provider} webhook (stored event {event_id}) could not be processed: "
                f"{type(exc).__name__}: {exc}. Reconciliation tries it again.")
    except Exception:  # noqa: BLE001 - an alert must never hide the original failure
        logger.exception("could not queue the staff alert for payment event %s", event_id)


def _finish(event_id: int, payment: Payment | None, outcome: Outcome,
            verified: bool | None = None) -> str:
    if outcome.retry:
        PaymentEvent.objects.filter(pk=event_id).update(outcome=outcome.text[:500])
        return outcome.text
    fields: dict[str, Any] = {"processed_at": timezone.now(), "outcome": outcome.text[:500],
                              "error": outcome.error, "payment": payment}
    if verified is not None:
        fields["verified"] = verified
    PaymentEvent.objects.filter(pk=event_id, processed_at__isnull=True).update(**fields)
    return outcome.text or outcome.error


# --- Staff ---------------------------------------------------------------------------------------


def record_manual_payment(order: Order | int, *, actor: Actor, note: str = "") -> Payment | None:
    """Staff received the money (cash on delivery, a bank transfer): the order's open manual
    payment, or a new one, succeeds for the amount due, and the order is paid. Returns None
    when the order was paid already."""
    permissions.require(actor, permissions.MARK_ORDER_PAID)
    pk = order.pk if isinstance(order, Order) else order
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).get(pk=pk)
        if (order.payment_status != OrderPayment.UNPAID
                and order.status != OrderStatus.CANCELLED):
            return None
        # Decided under the order's lock: a cancelled order is not marked paid.
        reason = orders.refusal(order, "mark_paid")
        if reason:
            raise orders.OrderError(reason, "not_payable")
        payment = (Payment.objects.filter(order=order, provider=MANUAL, status__in=OPEN_STATUSES)
                   .order_by("-id").first())
        if payment is None:
            key = uuid.uuid4().hex
            payment = Payment.objects.create(
                order=order, provider=MANUAL, amount=order.total, currency=order.currency,
                idempotency_key=f"pay-{key}", provider_reference=f"manual-staff-{key}",
                created_by=actor.user,
            )
        PaymentEvent.objects.create(
            provider=MANUAL, event_id=f"staff-{payment.pk}-{uuid.uuid4().hex[:8]}",
            source=PaymentEvent.Source.STAFF, payment=payment, verified=True,
            claims={"status": S.SUCCEEDED, "amount": payment.amount, "note": note},
            processed_at=timezone.now(), outcome=f"marked paid by {actor.label}",
        )
        apply_status(payment.pk, S.SUCCEEDED, amount=payment.amount, currency=payment.currency,
                     message=note, authoritative=True, actor=actor)
        audit.record(actor, AuditAction.ORDER_MARKED_PAID, order,
                     f"Marked paid: {format_money(payment.amount, payment.currency)} received "
                     f"(manual payment {payment.pk})." + (f" {note}" if note else ""),
                     data={"amount": str(payment.amount), "currency": payment.currency,
                           "payment_id": payment.pk})
    payment.refresh_from_db()
    return payment


def move_to(order: Order | int, status: str, *, actor: Actor = SYSTEM, note: str = "") -> None:
    """``orders.move_to`` for clerks and integrations, with *paid* recorded as a manual
    payment (so the order's payments say how it was paid, and its refunds find the money)."""
    if status == OrderPayment.PAID:
        record_manual_payment(order, actor=actor, note=note)
    else:
        orders.move_to(order, status, actor=actor, note=note)


# --- Refunds -------------------------------------------------------------------------------------


def refund_payment_of(order: Order) -> Payment | None:
    """The payment a refund of ``order`` goes back to: the newest one that took money and has
    some left to give back."""
    # The first payment that took the money is the order's; a later one is a duplicate,
    # given back on its own (``refund_duplicate``).
    first = (Payment.objects.filter(order=order, status__in=SETTLED_STATUSES)
             .order_by("succeeded_at", "id").first())
    return first if first is not None and first.amount_refunded < first.amount else None


def refund_order(order: Order | int, request: orders.RefundRequest, *,
                 actor: Actor = SYSTEM, by_hand: bool = False) -> Refund:
    """Refund an order: through the provider of the payment that took the money, where the
    provider can refund. ``by_hand`` records money given back outside the back office (cash, an
    M-Pesa reversal), as does an order that no payment of ours took. Raises ``OrderError``
    (nothing changed) or ``PaymentError`` (the provider cannot refund: nothing changed; it
    refused: recorded as failed; it did not answer: left pending and asked again)."""
    permissions.require(actor, permissions.REFUND_ORDER)
    pk = order.pk if isinstance(order, Order) else order
    order = Order.objects.get(pk=pk)
    payment = refund_payment_of(order)
    provider = None
    if payment is not None and payment.provider != MANUAL and not by_hand:
        try:
            bound = _bound(payment.provider)
        except PaymentError:
            bound = None
        provider = bound if bound and _flag(bound.provider, "supports_refunds", False) else None
        if provider is None:
            raise PaymentError(
                f"{payment.provider} cannot refund from here: give the money back through "
                f"{payment.provider} itself, then record the refund as made by hand.",
                "refund_by_hand",
            )
    if provider is None:
        with transaction.atomic():
            refund = orders.record_refund(order, request, actor=actor,
                                          payment_id=payment.pk if payment else None)
            if payment is not None:
                _sync_refunded(Payment.objects.select_for_update().get(pk=payment.pk), actor)
        return refund
    with transaction.atomic():
        refund = orders.record_refund(order, request, actor=actor,
                                      status=Refund.Status.PENDING, payment_id=payment.pk)
        room = payment.amount - payment.amount_refunded - (
            Refund.objects.filter(payment=payment, status=Refund.Status.PENDING)
            .exclude(pk=refund.pk).aggregate(total=Sum("amount"))["total"] or Decimal("0"))
        if refund.amount > room:
            raise orders.OrderError(
                f"At most {format_money(room, payment.currency)} of payment {payment.pk} is "
                "left to refund.",
                "too_much")
    return call_refund(refund, provider, actor=actor)


def call_refund(refund: Refund, bound: plugins.Bound, *, actor: Actor = SYSTEM,
                again: bool = False) -> Refund:
    """Ask the provider for a pending refund (``again``: a retry of a call that got no answer;
    its idempotency key is the refund's, so a provider that got the first call answers it)."""
    payment = refund.payment
    try:
        result = bound.provider.refund(ProviderRefundRequest(
            provider_reference=payment.provider_reference or "", amount=refund.amount,
            # The payment's key is random: unique across databases sharing one provider account.
            currency=payment.currency,
            idempotency_key=f"refund-{refund.pk}-{payment.idempotency_key}",
            reason=refund.reason, provider_payment_id=payment.provider_payment_id,
        ), bound.config)
    except PaymentProviderError as exc:
        if again:
            # The first call may have gone through (and a reused reference be refused): the
            # money may be back with the customer. Staff look; nothing is recorded as failed.
            _order_event(refund.order_id, actor,
                         f"{payment.provider} refused refund {refund.pk} when asked again "
                         f"({exc}); check it at {payment.provider} before refunding again.")
            # Not asked again; it settles when the provider's refunded total covers it.
            Refund.objects.filter(pk=refund.pk).update(provider_refund_id=UNCONFIRMED)
            raise PaymentError(str(exc), exc.code, 422) from exc
        _settled(refund, False, actor, "")
        raise PaymentError(f"{payment.provider} refused the refund: {exc}", exc.code,
                           422) from exc
    except Exception as exc:
        logger.exception("%s did not answer refund %s", payment.provider, refund.pk)
        raise PaymentError(
            f"{payment.provider} did not answer. The refund is recorded as pending and will be "
            "asked again.", "provider_unavailable", 503) from exc
    if result.status == "pending":
        Refund.objects.filter(pk=refund.pk).update(provider_refund_id=result.provider_refund_id)
    else:
        _settled(refund, result.status == "succeeded", actor, result.provider_refund_id)
    refund.refresh_from_db()
    return refund


def _settled(refund: Refund, succeeded: bool, actor: Actor, provider_refund_id: str) -> None:
    with transaction.atomic():
        orders.settle_refund(refund, succeeded=succeeded, actor=actor,
                             provider_refund_id=provider_refund_id)
        _sync_refunded(Payment.objects.select_for_update().get(pk=refund.payment_id), actor)


# --- Reconciliation ------------------------------------------------------------------------------


def reconcile_payment(payment: Payment, now: datetime | None = None) -> str:
    """Ask the provider where an open payment stands, and act on the answer."""
    now = now or timezone.now()
    Payment.objects.filter(pk=payment.pk).update(last_checked_at=now)
    abandon = now - timedelta(hours=settings.PAYMENT_ABANDON_AFTER_HOURS)
    actor = _provider_actor(payment)
    if not payment.provider_reference:
        # Started, but the provider never answered: nothing to ask it about.
        return apply_status(payment.pk, S.FAILED, actor=actor,
                            message="The provider never answered the start of this payment."
                            ).text
    bound = _bound(payment.provider)
    answer = bound.provider.query_status(payment.provider_reference, bound.config)
    if answer.status in OPEN_STATUSES:
        if payment.created_at < abandon and _flag(bound.provider, "unpaid_orders_expire", True):
            return apply_status(payment.pk, S.CANCELLED, actor=actor,
                                message="Given up: still open after "
                                        f"{settings.PAYMENT_ABANDON_AFTER_HOURS} hours.").text
        return f"still {answer.status}"
    PaymentEvent.objects.get_or_create(
        provider=payment.provider, event_id=f"query-{payment.pk}-{answer.status}",
        defaults={"source": PaymentEvent.Source.QUERY, "payment": payment, "verified": True,
                  "claims": {"status": answer.status, "amount": answer.amount,
                             "currency": answer.currency,
                             "provider_payment_id": answer.provider_payment_id,
                             "message": answer.message},
                  "payload": dict(answer.raw), "processed_at": now, "outcome": "asked"},
    )
    return apply_status(payment.pk, answer.status, amount=answer.amount,
                        currency=answer.currency, provider_payment_id=answer.provider_payment_id,
                        message=answer.message, authoritative=True, actor=actor).text


@dataclass
class ReconcileReport:
    events: int = 0
    payments: int = 0
    refunds: int = 0
    errors: int = 0


def reconcile(now: datetime | None = None, limit: int = 200) -> ReconcileReport:
    """The schedule: events whose processing failed are tried again; payments open longer than
    ``PAYMENT_RECONCILE_AFTER_MINUTES`` are asked about (each at most that often); refunds the
    provider never answered are asked again."""
    now = now or timezone.now()
    report = ReconcileReport()
    stale = now - timedelta(minutes=1)
    for pk in (PaymentEvent.objects.filter(processed_at__isnull=True, received_at__lt=stale,
                                           attempts__lt=MAX_EVENT_ATTEMPTS)
               .order_by("received_at").values_list("pk", flat=True)[:limit]):
        report.events += 1
        if process_event(pk) == "error":
            report.errors += 1
    after = now - timedelta(minutes=settings.PAYMENT_RECONCILE_AFTER_MINUTES)
    # Manual payments wait for staff: there is no one to ask.
    due = (Payment.objects.filter(status__in=OPEN_STATUSES, created_at__lte=after)
           .exclude(provider=MANUAL).exclude(last_checked_at__gt=after)
           .order_by("created_at")[:limit])
    for payment in due:
        report.payments += 1
        try:
            reconcile_payment(payment, now)
        except Exception:  # noqa: BLE001 - one provider down must not stop the others
            report.errors += 1
            logger.exception("could not reconcile payment %s", payment.pk)
    for refund in (Refund.objects.filter(status=Refund.Status.PENDING, provider_refund_id="",
                                         payment__isnull=False, created_at__lt=stale)
                   .select_related("payment")[:limit]):
        report.refunds += 1
        try:
            call_refund(refund, _bound(refund.payment.provider), again=True)
        except Exception:  # noqa: BLE001
            report.errors += 1
            logger.exception("could not ask for refund %s again", refund.pk)
    return report
