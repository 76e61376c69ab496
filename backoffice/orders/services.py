"""What happens to an order after checkout: payment, shipping, delivery, cancelling, refunds.

The admin actions, the API (customers and integration keys), the payments service (webhooks,
manual payments, refunds) and the jobs all call these. Each locks the order row first
(``select_for_update``) and decides from the order as read under that lock, so a customer's
cancel and a payment landing at the same moment are decided one after the other, never both
from a stale read. An order's states move only through ``_apply``, which checks every move in
its machine (``backoffice.orders.status``; an illegal move raises and, the transaction rolling
back, changes nothing), derives the overall status, and for each move writes one
``OrderEvent`` (actor, time, which state, from, to, note) and queues the
``order_status_changed`` plugin event in the same transaction.

Who may do what is checked first, by ``backoffice.permissions.require`` (staff by their
permissions, API keys by their scopes, jobs and webhooks always): a refusal raises
``ActionNotPermitted`` before anything is locked or changed. What staff and keys do is also
written to the audit trail (``backoffice.audit``), beside the order's own timeline.

What may be done to an order, and why not, is said once, by ``refusal``: the services raise its
words under the lock, and the admin asks it to show only the actions an order allows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.translation import ngettext

from backoffice import permissions
from backoffice.audit import services as audit
from backoffice.audit.models import AuditAction
from backoffice.inventory import services as inventory
from backoffice.inventory.services import SYSTEM, Actor, Placement
from backoffice.money import format_money, quantize
from backoffice.notifications import services as notifications
from backoffice.orders.models import (
    Allocation,
    Order,
    OrderEvent,
    OrderLine,
    Refund,
    RefundLine,
    Shipment,
    ShipmentLine,
)
from backoffice.orders.status import (
    MONEY_HELD,
    SHIPPABLE_PAYMENT,
    FulfilmentStatus,
    IllegalTransition,
    OrderError,
    OrderStatus,
    PaymentStatus,
    State,
    check_move,
    fulfilment_of,
    is_purchased,
    label,
    overall_status,
    payment_after_refunds,
)
from backoffice.plugin_host.events import emit_event

logger = logging.getLogger(__name__)

__all__ = [
    "IllegalTransition", "OrderError", "RULES", "Facts", "add_note", "attach_guest_orders",
    "cancel_order", "create_shipment", "expire_unpaid_orders", "facts", "mark_delivered",
    "mark_paid", "move_to", "overpayment_returned", "payment_received",
    "record_refund", "refundable_amount", "refundable_quantities", "refusal", "settle_refund",
    "shippable_quantities",
]

P = PaymentStatus
FS = FulfilmentStatus
S = OrderStatus

# What each action needs, in the words its form shows and its refusal repeats.
RULES = {
    "mark_paid": "An order is marked paid only while it is unpaid and not cancelled.",
    "ship": "An order ships only while it is not cancelled and is paid, or paid on delivery.",
    "deliver": "An order is delivered once everything in it has shipped.",
    "cancel": "An order can be cancelled only until any of it ships.",
    "cancel_unpaid": "An order can be cancelled here only while it is unpaid and none of it "
                     "has shipped.",
    "refund": "Only money that was paid can be refunded.",
}
ACTIONS = frozenset(RULES)
NOTHING_TO_SHIP = "Nothing is left to ship."


# --- Reading an order ---------------------------------------------------------------------------


def _lock(order: Order | int) -> Order:
    pk = order.pk if isinstance(order, Order) else order
    return Order.objects.select_for_update(of=("self",)).get(pk=pk)


@dataclass(frozen=True)
class Facts:
    """What an order's lines and shipments say (one query): units still owed (ordered, not
    shipped, not refunded), shipments made and how many of them arrived."""

    left_to_ship: int
    shipments: int
    delivered: int


def _left_expression():
    return Greatest(F("quantity") - F("quantity_shipped") - F("quantity_refunded"), Value(0))


def with_facts(queryset):
    """Orders annotated with their ``facts`` (three correlated subqueries in the same query),
    so that ``facts(order)`` reads them without another query."""
    left = (OrderLine.objects.filter(order=OuterRef("pk")).order_by().values("order")
            .annotate(n=Sum(_left_expression())).values("n"))
    shipments = (Shipment.objects.filter(order=OuterRef("pk")).order_by().values("order")
                 .annotate(n=Count("pk")).values("n"))
    delivered = (Shipment.objects.filter(order=OuterRef("pk"), delivered_at__isnull=False)
                 .order_by().values("order").annotate(n=Count("pk")).values("n"))
    return queryset.annotate(
        f_left=Coalesce(Subquery(left, output_field=IntegerField()), 0),
        f_shipments=Coalesce(Subquery(shipments, output_field=IntegerField()), 0),
        f_delivered=Coalesce(Subquery(delivered, output_field=IntegerField()), 0),
    )


def facts(order: Order | int) -> Facts:
    """The order's ``Facts``: from its annotations when read ``with_facts``, else one query
    (under the lock, the services always ask again)."""
    if isinstance(order, Order) and hasattr(order, "f_left"):
        return Facts(order.f_left, order.f_shipments, order.f_delivered)
    pk = order.pk if isinstance(order, Order) else order
    row = with_facts(Order.objects.filter(pk=pk)).values(
        "f_left", "f_shipments", "f_delivered").get()
    return Facts(row["f_left"], row["f_shipments"], row["f_delivered"])


def refusal(order: Order, action: str, known: Facts | None = None) -> str:
    """Why ``action`` cannot be done to ``order`` as read ("" when it can). The services ask it
    under the order's lock and raise its answer; the admin asks it to offer only what an order
    allows. ``known``: the order's ``facts`` when already read."""
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is not an order action")
    rule = RULES[action]
    payment = order.payment_status
    cancelled = order.status == S.CANCELLED
    if action == "mark_paid":
        if cancelled:
            return f"{rule} This one is cancelled."
        if payment != P.UNPAID:
            return f"{rule} This one is {label(State.PAYMENT, payment)} already."
        return ""
    if action in {"cancel", "cancel_unpaid"}:
        if cancelled:
            return "This order is cancelled already."
        if order.fulfilment_status != FS.UNFULFILLED:
            return f"{rule} Part of this one has shipped: it can be refunded instead."
        if action == "cancel_unpaid" and payment != P.UNPAID:
            return (f"{rule} This one is {label(State.PAYMENT, payment)}: contact the store to "
                    "cancel it.")
        return ""
    if action == "ship":
        if cancelled:
            return f"{rule} This one is cancelled."
        if payment == P.REFUNDED or (payment != P.UNPAID and order.refunded_total >= order.total):
            # Overpaid after a full refund: the money held is a second payment to give back,
            # nothing pays for the goods.
            return f"{rule} Everything paid for this one was refunded."
        if payment not in SHIPPABLE_PAYMENT and not (
                payment == P.UNPAID and order.pay_on_delivery):
            return f"{rule} This one is unpaid and not paid on delivery."
        known = known or facts(order)
        if not known.left_to_ship:
            return NOTHING_TO_SHIP
        return ""
    if action == "deliver":
        if order.fulfilment_status == FS.DELIVERED:
            return "This order is delivered already."
        known = known or facts(order)
        if not known.shipments:
            return "Nothing has shipped yet; create a shipment first."
        if known.left_to_ship:
            return (ngettext("%(count)d item has not shipped yet.",
                             "%(count)d items have not shipped yet.", known.left_to_ship)
                    % {"count": known.left_to_ship}) + f" {rule}"
        return ""
    # refund
    if payment == P.UNPAID:
        return "Nothing has been paid for this order, so nothing can be refunded."
    if payment not in MONEY_HELD:
        return "Everything paid for this order has been refunded already."
    return ""


def _refuse(order: Order, action: str, known: Facts | None = None, code: str = "") -> None:
    reason = refusal(order, action, known)
    if reason == NOTHING_TO_SHIP:
        raise OrderError(reason, "nothing_to_ship")
    if reason:
        raise OrderError(reason, code or f"cannot_{action}")


# --- Moving an order's states (the one place) ---------------------------------------------------


def _event(order: Order, kind: str, actor: Actor, note: str = "", **fields) -> OrderEvent:
    return OrderEvent.objects.create(
        order=order, kind=kind, actor_id=actor.user_id, actor_label=actor.label[:120],
        note=note, **fields,
    )


def _apply(order: Order, actor: Actor, note: str = "", *, payment: str | None = None,
           fulfilment: str | None = None, cancel: bool = False,
           left_to_ship: int | None = None) -> list[tuple[str, str, str]]:
    """On a locked order: move its payment and/or fulfilment state and/or cancel it, each move
    checked in its machine before anything is written, then the overall status derived
    (``status.overall_status``). Each move writes one ``OrderEvent`` and one
    ``order_status_changed`` plugin event. Returns the moves ``(state, from, to)``."""
    wanted = {
        State.PAYMENT: (order.payment_status, payment or order.payment_status),
        State.FULFILMENT: (order.fulfilment_status, fulfilment or order.fulfilment_status),
    }
    moves = []
    for state, (old, new) in wanted.items():
        if old != new:
            check_move(state, old, new)
            moves.append((state, old, new))
    if cancel:
        check_move(State.ORDER, order.status, S.CANCELLED)
    new_payment, new_fulfilment = wanted[State.PAYMENT][1], wanted[State.FULFILMENT][1]
    cancelled = cancel or order.status == S.CANCELLED
    if left_to_ship is None and not cancelled and new_fulfilment == FS.UNFULFILLED:
        left_to_ship = facts(order).left_to_ship
    overall = overall_status(payment=new_payment, fulfilment=new_fulfilment, cancelled=cancelled,
                             left_to_ship=left_to_ship or 0)
    if overall != order.status:
        check_move(State.ORDER, order.status, overall)
        moves.append((State.ORDER, order.status, overall))
    if not moves:
        return []
    bought_before = is_purchased(status=order.status, payment=order.payment_status,
                                 fulfilment=order.fulfilment_status)
    order.payment_status, order.fulfilment_status, order.status = (
        new_payment, new_fulfilment, overall)
    fields = ["payment_status", "fulfilment_status", "status", "updated_at"]
    if new_payment == P.PAID and order.paid_at is None:
        order.paid_at = timezone.now()
        fields.append("paid_at")
    if cancel:
        order.cancelled_at = timezone.now()
        fields.append("cancelled_at")
    order.save(update_fields=fields)
    for state, old, new in moves:
        _event(order, OrderEvent.Kind.STATUS, actor, note, state=state, from_status=old,
               to_status=new)
        emit_event(
            "order_status_changed", order_id=order.pk, order_number=order.number or "",
            old_status=old, new_status=new, state=state, status=order.status,
            payment_status=order.payment_status, fulfilment_status=order.fulfilment_status,
            reason=note, customer=lambda: notifications.customer_of(order),
        )
    notifications.order_moved(order, moves, note)
    bought = is_purchased(status=order.status, payment=order.payment_status,
                          fulfilment=order.fulfilment_status)
    if order.user_id and bought != bought_before:
        _refresh_reviews(order.user_id, [order.pk])
    return moves


def _refresh_reviews(user_id: int, order_ids: list[int]) -> None:
    """Bought or not any more: the customer's reviews of these orders' products say so."""
    from backoffice.reviews.services import refresh_verified_purchases

    product_ids = list(OrderLine.objects.filter(order_id__in=order_ids)
                       .values_list("product_id_snapshot", flat=True).distinct())
    if product_ids:
        refresh_verified_purchases(user_id=user_id, product_ids=product_ids)


# --- Stock held by an order ------------------------------------------------------------------


def _reference(order: Order) -> str:
    return f"order {order.number}"


def _placements(order: Order) -> list[tuple[Allocation, Placement]]:
    return [
        (a, Placement(a.stock_id, a.stock.variant_id, a.stock.warehouse_id, a.quantity))
        for a in Allocation.objects.filter(line__order=order, quantity__gt=0)
        .select_related("stock").order_by("stock_id")
    ]


def _take_allocations(
    order: Order, wanted: Mapping[int, int], *,
    unallocated_first: Mapping[int, OrderLine] | None = None,
) -> tuple[list[Placement], dict[int, int]]:
    """Take ``{line id: quantity}`` off the lines' allocations (rows still to be written to
    stock by the caller). Returns the placements taken and ``{line id: units no allocation
    covered}``: units sold without stock (a variant whose stock is not tracked allocates
    nothing; a backorder one only what was on the shelf at checkout).

    A line's units left to ship are its allocated units plus its unallocated ones. Shipping takes
    the allocated ones first (they are on the shelf); with ``unallocated_first`` (the lines as
    read before this change), a refund of unshipped units gives up the unallocated ones first, so
    the stock already promised stays with the units still to ship."""
    taken = []
    uncovered: dict[int, int] = {}
    held = _placements(order)
    for pk, quantity in wanted.items():
        mine = [(a, p) for a, p in held if a.line_id == pk]
        if unallocated_first is not None:
            allocated = sum(a.quantity for a, _ in mine)
            free = min(quantity, max(unallocated_first[pk].quantity_to_ship - allocated, 0))
            uncovered[pk] = free
            quantity -= free
        for allocation, placement in mine:
            if quantity <= 0:
                break
            take = min(quantity, allocation.quantity)
            taken.append(Placement(placement.stock_id, placement.variant_id,
                                   placement.warehouse_id, take))
            Allocation.objects.filter(pk=allocation.pk).update(quantity=F("quantity") - take)
            quantity -= take
        if quantity > 0:
            uncovered[pk] = uncovered.get(pk, 0) + quantity
    return taken, uncovered


def _backordered(lines: Mapping[int, OrderLine], uncovered: Mapping[int, int]) -> dict[int, int]:
    """``{variant id: units}`` of the unallocated units shipping now that must come off the
    shelf: those of variants whose stock is tracked (sold on backorder). Units of a variant whose
    stock is not tracked (or of one deleted since) leave no trace in stock."""
    from backoffice.catalog.models import Variant

    variant_of = {pk: lines[pk].variant_id for pk, qty in uncovered.items()
                  if qty and lines[pk].variant_id is not None}
    if not variant_of:
        return {}
    tracked = set(Variant.objects.filter(pk__in=set(variant_of.values()), track_inventory=True)
                  .values_list("pk", flat=True))
    wanted: dict[int, int] = {}
    for pk, variant_id in variant_of.items():
        if variant_id in tracked:
            wanted[variant_id] = wanted.get(variant_id, 0) + uncovered[pk]
    return wanted


def _release_all(order: Order, actor: Actor, note: str) -> None:
    """Give back every allocation the order holds (its unallocated units, sold without stock,
    hold nothing to give back)."""
    held = _placements(order)
    if held:
        inventory.release([p for _, p in held], actor=actor, reference=_reference(order),
                          note=note)
        Allocation.objects.filter(pk__in=[a.pk for a, _ in held]).update(quantity=0)



# --- Payment ------------------------------------------------------------------------------------


@transaction.atomic
def payment_received(order: Order | int, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """Money for the whole order arrived (a provider's success, staff's manual payment): a fact,
    never refused, decided under the lock.

    - Unpaid: the order is paid. If it was cancelled a moment earlier, it stays cancelled, the
      money is kept on it and a refund is due (``Order.refund_due``); staff are told.
    - Paid already: this is a second payment: the order is overpaid, a refund is due.
    """
    order = _lock(order)
    if order.payment_status == P.UNPAID:
        _apply(order, actor, note, payment=P.PAID)
        if order.status == S.CANCELLED:
            _event(order, OrderEvent.Kind.PAYMENT, actor,
                   "Payment received after the order was cancelled: the money is kept on the "
                   "order; refund it, or contact the customer.")
        return order
    if order.payment_status != P.OVERPAID:
        _apply(order, actor, note or "A second payment arrived.", payment=P.OVERPAID)
    _event(order, OrderEvent.Kind.PAYMENT, actor,
           "Paid twice: a payment came after the order was paid. Refund one of them.")
    return order


@transaction.atomic
def mark_paid(order: Order | int, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """Staff (or an integration) say the money was received in full. Refused for a cancelled
    order; an order paid already is left as it is. (``payments.record_manual_payment`` also
    records the payment; this is the order's side.)"""
    permissions.require(actor, permissions.MARK_ORDER_PAID)
    order = _lock(order)
    if order.payment_status != P.UNPAID and order.status != S.CANCELLED:
        return order
    _refuse(order, "mark_paid")
    order = payment_received(order, actor=actor, note=note)
    audit.record(actor, AuditAction.ORDER_MARKED_PAID, order,
                 f"Marked paid: {format_money(order.total, order.currency)}.",
                 data={"amount": str(order.total), "currency": order.currency})
    return order


@transaction.atomic
def overpayment_returned(order: Order | int, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """The extra payment of an overpaid order went back: its payment state is again what its
    refunds say."""
    order = _lock(order)
    if order.payment_status == P.OVERPAID:
        _apply(order, actor, note or "The second payment was given back.",
               payment=payment_after_refunds(total=order.total,
                                             refunded_total=order.refunded_total))
    return order


# --- Cancelling ---------------------------------------------------------------------------------


@transaction.atomic
def cancel_order(order: Order | int, *, actor: Actor = SYSTEM, note: str = "",
                 only_if_unpaid: bool = False) -> Order:
    """Cancel an order none of which has shipped: its allocated stock goes back on the shelf,
    and an unpaid order gives its coupon use back. Money already paid stays on the order, a
    refund due (``record_refund``). ``only_if_unpaid`` (a customer cancelling): refused unless
    the order is unpaid, as read under the lock, so a payment landing at the same moment wins
    or loses cleanly.

    Staff need ``orders.cancel_order``, or ``orders.cancel_unpaid_order`` for an order that is
    unpaid as read under the lock. A customer (or a guest) cancelling their own unpaid order,
    which the API checked is theirs, is not staff and needs neither."""
    from backoffice.promotions.services import give_back

    customer = only_if_unpaid and actor.scopes is None and not getattr(
        actor.user, "is_staff", False)
    if not customer:
        permissions.require_any(actor, permissions.CANCEL_ORDER, permissions.CANCEL_UNPAID_ORDER)
    order = _lock(order)
    _refuse(order, "cancel_unpaid" if only_if_unpaid else "cancel", code="not_cancellable")
    paid = order.payment_status != P.UNPAID
    if paid and not customer:
        # Money is held: cancelling leaves a refund due, which takes the full permission.
        permissions.require(actor, permissions.CANCEL_ORDER)
    _release_all(order, actor, note or "order cancelled")
    if order.payment_status == P.UNPAID:
        give_back(order)
    _apply(order, actor, note, cancel=True)
    if order.refund_due:
        _event(order, OrderEvent.Kind.PAYMENT, actor,
               f"Cancelled with {format_money(order.total - order.refunded_total, order.currency)}"
               " paid: refund it.")
    if not customer:
        audit.record(actor, AuditAction.ORDER_CANCELLED, order,
                     ("Cancelled with money paid: a refund is due." if paid else
                      "Cancelled (unpaid).") + (f" {note}" if note else ""),
                     data={"paid": paid})
    return order


def expire_unpaid_orders(now: datetime | None = None, limit: int = 500) -> int:
    """Cancel orders still unpaid after their payment window, releasing their stock (a job,
    every minute). Each order in its own transaction; returns how many were cancelled."""
    now = now or timezone.now()
    due = list(
        Order.objects.filter(status=S.OPEN, payment_status=P.UNPAID, pay_on_delivery=False,
                             payment_due_at__lte=now)
        .order_by("payment_due_at").values_list("pk", flat=True)[:limit]
    )
    done = 0
    for pk in due:
        try:
            with transaction.atomic():
                order = _lock(pk)
                # Paid, cancelled or shipped between the query and the lock: leave it.
                if (order.status != S.OPEN or order.payment_status != P.UNPAID
                        or order.fulfilment_status != FS.UNFULFILLED
                        or order.pay_on_delivery or order.payment_due_at is None
                        or order.payment_due_at > now):
                    continue
                cancel_order(order, actor=Actor(label="payment window expired"),
                             note="Not paid in time.")
                done += 1
        except Exception:
            # One order that cannot be cancelled must not hold back the others; it stays due
            # and is tried again next minute, with the error in the log.
            logger.exception("could not cancel expired order %s", pk)
    return done


# --- Shipping and delivery ----------------------------------------------------------------------


@dataclass(frozen=True)
class ShipmentRequest:
    carrier: str = ""
    tracking_number: str = ""
    tracking_url: str = ""
    # {order line id: quantity}; empty ships everything still to ship.
    lines: Mapping[int, int] | None = None
    shipped_at: datetime | None = None


@transaction.atomic
def create_shipment(
    order: Order | int, request: ShipmentRequest, *, actor: Actor = SYSTEM
) -> Shipment:
    """Ship some or all of what is left: allocated stock leaves the shelf (on hand and
    allocation go down together). The fulfilment state follows (partially shipped, shipped);
    the payment state never moves here.

    Units sold without stock: those of a variant whose stock is not tracked ship without any
    stock movement; backordered units of a tracked variant come off the shelf now, from what is
    available (``OrderError`` "backordered", nothing changed, when the shelf does not have them:
    receive the goods into stock first), and the rows they came from are remembered (an
    allocation of 0) so that a restocking refund puts them back there."""
    permissions.require(actor, permissions.SHIP_ORDER)
    order = _lock(order)
    _refuse(order, "ship", code="not_shippable")
    lines = {line.pk: line for line in OrderLine.objects.filter(order=order)}
    shippable = shippable_quantities(order, lines)
    wanted = dict(request.lines) if request.lines else {
        pk: quantity for pk, quantity in shippable.items() if quantity
    }
    wanted = {pk: qty for pk, qty in wanted.items() if qty}
    if not wanted:
        raise OrderError(NOTHING_TO_SHIP, "nothing_to_ship")
    for pk, quantity in wanted.items():
        if pk not in lines:
            raise OrderError(f"Line {pk} is not in this order.", "unknown_line")
        if quantity < 0 or quantity > shippable[pk]:
            raise OrderError(
                f"{lines[pk].sku}: {shippable[pk]} left to ship, not {quantity}"
                + (" (the rest waits for a pending refund)."
                   if shippable[pk] < lines[pk].quantity_to_ship else "."),
                "too_many",
            )
    taken, uncovered = _take_allocations(order, wanted)
    backordered = _backordered(lines, uncovered)
    shipment = Shipment.objects.create(
        order=order, carrier=request.carrier[:120], tracking_number=request.tracking_number[:120],
        tracking_url=request.tracking_url, shipped_at=request.shipped_at or timezone.now(),
    )
    ShipmentLine.objects.bulk_create(
        [ShipmentLine(shipment=shipment, line_id=pk, quantity=qty) for pk, qty in wanted.items()]
    )
    for pk, quantity in wanted.items():
        OrderLine.objects.filter(pk=pk).update(quantity_shipped=F("quantity_shipped") + quantity)
    if taken or backordered:
        try:
            from_shelf = inventory.take_shipped(taken, actor=actor, reference=_reference(order),
                                                note=f"shipment {shipment.pk}",
                                                backordered=backordered)
        except inventory.OutOfStock as exc:
            skus = ", ".join(
                f"{line.sku} ({backordered[line.variant_id]} backordered, "
                f"{exc.available[line.variant_id]} in stock)"
                for line in lines.values() if line.variant_id in exc.available
            )
            raise OrderError(f"Backordered units are not in stock yet: {skus}. Receive them "
                             "into stock, then ship.", "backordered") from exc
        lines_of = {}
        for pk in uncovered:
            lines_of.setdefault(lines[pk].variant_id, []).append(pk)
        Allocation.objects.bulk_create(
            [Allocation(line_id=pk, stock_id=p.stock_id, quantity=0)
             for p in from_shelf for pk in lines_of.get(p.variant_id, [])],
            ignore_conflicts=True,
        )
    _event(order, OrderEvent.Kind.SHIPMENT, actor,
           ngettext("Shipped %(count)d item", "Shipped %(count)d items",
                    sum(wanted.values())) % {"count": sum(wanted.values())}
           + (f" with {shipment.carrier}" if shipment.carrier else "")
           + (f", tracking {shipment.tracking_number}" if shipment.tracking_number else "") + ".")
    emit_event("shipment_created", shipment_id=shipment.pk, order_id=order.pk,
               carrier=shipment.carrier, tracking_number=shipment.tracking_number,
               tracking_url=shipment.tracking_url, order_number=order.number or "",
               customer=lambda: notifications.customer_of(order))
    notifications.shipment_created(order, shipment, wanted)
    _follow_the_goods(order, actor)
    items = sum(wanted.values())
    audit.record(actor, AuditAction.ORDER_SHIPPED, order,
                 ngettext("Shipment %(id)d: %(count)d item", "Shipment %(id)d: %(count)d items",
                          items) % {"id": shipment.pk, "count": items}
                 + (f" with {shipment.carrier}" if shipment.carrier else "")
                 + (f", tracking {shipment.tracking_number}" if shipment.tracking_number else "")
                 + ".",
                 data={"shipment_id": shipment.pk, "items": items})
    return shipment


def _follow_the_goods(order: Order, actor: Actor, note: str = "") -> list:
    """The fulfilment state the shipments and lines now say (never a payment move)."""
    known = facts(order)
    return _apply(order, actor, note, left_to_ship=known.left_to_ship,
                  fulfilment=fulfilment_of(shipments=known.shipments, delivered=known.delivered,
                                           left_to_ship=known.left_to_ship))


@transaction.atomic
def mark_delivered(order: Order | int, *, actor: Actor = SYSTEM, shipment_id: int | None = None,
                   note: str = "") -> Order:
    """Delivered: every shipment (or one, ``shipment_id``) gets its delivery time. The whole
    order is marked delivered only once everything in it has shipped; one shipment may arrive
    any time (partially delivered). Whatever its payment says: a refund never undoes where the
    goods are, and a delivery never moves the money."""
    permissions.require(actor, permissions.DELIVER_ORDER)
    order = _lock(order)
    shipments = Shipment.objects.filter(order=order, delivered_at__isnull=True)
    if shipment_id is None:
        _refuse(order, "deliver", code="not_deliverable")
    else:
        shipments = shipments.filter(pk=shipment_id)
        if not shipments.exists():
            raise OrderError(f"Shipment {shipment_id} is not an undelivered shipment of this "
                             "order.", "unknown_shipment")
    shipments.update(delivered_at=timezone.now())
    if not _follow_the_goods(order, actor, note):
        _event(order, OrderEvent.Kind.SHIPMENT, actor,
               note or (f"Shipment {shipment_id} arrived." if shipment_id else
                        "Shipments arrived."))
    audit.record(actor, AuditAction.ORDER_DELIVERED, order,
                 (f"Shipment {shipment_id} delivered." if shipment_id else "Delivered.")
                 + (f" {note}" if note else ""),
                 data={"shipment_id": shipment_id} if shipment_id else {})
    return order


@transaction.atomic
def add_note(order: Order | int, note: str, *, actor: Actor = SYSTEM) -> OrderEvent:
    permissions.require(actor, permissions.ADD_ORDER_NOTE)
    return _event(_lock(order), OrderEvent.Kind.NOTE, actor, note)


# --- Refunds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundRequest:
    amount: Decimal | None = None  # None: the value of ``lines`` (or everything left)
    lines: Mapping[int, int] | None = None  # {order line id: quantity}
    restock: bool = False
    reason: str = ""


def _line_value(line: OrderLine, quantity: int) -> Decimal:
    """What ``quantity`` of a line cost the customer, its coupon share included."""
    return quantize(line.total * quantity / line.quantity)


def shippable_quantities(order: Order, lines: Mapping[int, OrderLine]) -> dict[int, int]:
    """``{line id: units that may ship now}``: what is left to ship, less the units a pending
    refund covers (refunds take unshipped units first, so they wait for the provider)."""
    pending = _pending_line_quantities(order)
    return {pk: max(line.quantity_to_ship - pending.get(pk, 0), 0) for pk, line in lines.items()}


def refundable_quantities(order: Order, lines: Mapping[int, OrderLine]) -> dict[int, int]:
    """``{line id: units that may still be refunded}``, pending refunds counted."""
    pending = _pending_line_quantities(order)
    return {pk: line.quantity - line.quantity_refunded - pending.get(pk, 0)
            for pk, line in lines.items()}


def refundable_amount(order: Order) -> Decimal:
    """Money that may still be refunded: nothing for an order never paid; else the total, less
    what was refunded and what pending refunds hold."""
    if order.payment_status == P.UNPAID:
        return Decimal("0")
    pending = sum(
        (r.amount for r in Refund.objects.filter(order=order, status=Refund.Status.PENDING)),
        Decimal("0"),
    )
    return max(order.total - order.refunded_total - pending, Decimal("0"))


@transaction.atomic
def record_refund(order: Order | int, request: RefundRequest, *, actor: Actor = SYSTEM,
                  status: str = Refund.Status.SUCCEEDED, provider_refund_id: str = "",
                  payment_id: int | None = None) -> Refund:
    """Record money given back: an amount (at most what is left to refund), for lines or not,
    with their goods back on the shelf or not. The payment state becomes *refunded* when
    everything paid has been given back, else *partially refunded*; the fulfilment state never
    moves (a refunded parcel is still where it is). A full refund releases whatever stock the
    order still held.

    The payment provider is called by the payments service before this records its answer:
    ``succeeded`` takes effect now; ``pending`` (the provider settles later) is recorded, holds
    its amount against further refunds and takes effect with ``settle_refund``; ``failed`` is
    recorded for the timeline and changes nothing else.
    """
    permissions.require(actor, permissions.REFUND_ORDER)
    if status not in Refund.Status.values:
        raise OrderError(f"{status!r} is not a refund status (use one of "
                         f"{', '.join(Refund.Status.values)}).", "invalid_status")
    order = _lock(order)
    reason = refusal(order, "refund")
    if reason:
        raise OrderError(reason, "not_paid" if order.payment_status == P.UNPAID
                         else "not_refundable")
    lines = {line.pk: line for line in OrderLine.objects.filter(order=order)}
    wanted = {pk: qty for pk, qty in (request.lines or {}).items() if qty}
    refundable = refundable_quantities(order, lines)
    for pk, quantity in wanted.items():
        line = lines.get(pk)
        if line is None:
            raise OrderError(f"Line {pk} is not in this order.", "unknown_line")
        if quantity < 0 or quantity > refundable[pk]:
            raise OrderError(
                f"{line.sku}: {refundable[pk]} can be refunded, not {quantity}.", "too_many",
            )
    left = refundable_amount(order)
    if request.amount is not None:
        amount = quantize(request.amount)
    elif wanted:
        amount = sum((_line_value(lines[pk], q) for pk, q in wanted.items()), Decimal("0"))
    else:
        amount = left
    if amount <= 0:
        raise OrderError("A refund must be more than zero.", "invalid_amount")
    if amount > left:
        raise OrderError(f"At most {format_money(left, order.currency)} is left to refund.",
                         "too_much")
    if request.restock and not wanted:
        raise OrderError("Say which lines go back on the shelf.", "restock_needs_lines")
    refund = Refund.objects.create(
        order=order, amount=amount, reason=request.reason[:255], restock=request.restock,
        status=status, provider_refund_id=provider_refund_id, payment_id=payment_id,
        actor_id=actor.user_id,
        actor_label=actor.label[:120],
    )
    RefundLine.objects.bulk_create(
        [RefundLine(refund=refund, line_id=pk, quantity=q) for pk, q in wanted.items()]
    )
    if status == Refund.Status.FAILED:
        _event(order, OrderEvent.Kind.REFUND, actor,
               f"Refund of {format_money(amount, order.currency)} failed.")
    elif status == Refund.Status.PENDING:
        _event(order, OrderEvent.Kind.REFUND, actor,
               f"Refund of {format_money(amount, order.currency)} asked of the provider; "
               "waiting for it.")
    else:
        _apply_refund(order, refund, lines, actor)
    money = format_money(amount, order.currency)
    audit.record(actor, AuditAction.ORDER_REFUNDED, order,
                 {Refund.Status.SUCCEEDED: f"Refunded {money}",
                  Refund.Status.PENDING: f"Refund of {money} asked of the provider",
                  Refund.Status.FAILED: f"Refund of {money} failed"}[status]
                 + (" (restocked)" if request.restock else "")
                 + (f": {request.reason}" if request.reason else "."),
                 data={"refund_id": refund.pk, "amount": str(amount),
                       "currency": order.currency, "status": status,
                       "restock": request.restock})
    return refund


@transaction.atomic
def settle_refund(refund: Refund | int, *, succeeded: bool, actor: Actor = SYSTEM,
                  provider_refund_id: str = "") -> Refund:
    """The provider's final word on a pending refund: it takes effect, or it failed (and the
    amount it held can be refunded again). A refund already settled is left as it is."""
    pk = refund.pk if isinstance(refund, Refund) else refund
    order_id = Refund.objects.values_list("order_id", flat=True).get(pk=pk)
    order = _lock(order_id)
    refund = Refund.objects.select_for_update().get(pk=pk)
    if refund.status != Refund.Status.PENDING:
        return refund
    refund.status = Refund.Status.SUCCEEDED if succeeded else Refund.Status.FAILED
    refund.provider_refund_id = provider_refund_id or refund.provider_refund_id
    refund.save(update_fields=["status", "provider_refund_id"])
    if succeeded:
        lines = {line.pk: line for line in OrderLine.objects.filter(order=order)}
        _apply_refund(order, refund, lines, actor)
    else:
        _event(order, OrderEvent.Kind.REFUND, actor,
               f"Refund of {format_money(refund.amount, order.currency)} failed at the "
               "provider.")
    return refund


def _pending_line_quantities(order: Order) -> dict[int, int]:
    held: dict[int, int] = {}
    for line_id, quantity in RefundLine.objects.filter(
        refund__order=order, refund__status=Refund.Status.PENDING
    ).values_list("line_id", "quantity"):
        held[line_id] = held.get(line_id, 0) + quantity
    return held


def _apply_refund(order: Order, refund: Refund, lines: dict[int, OrderLine],
                  actor: Actor) -> None:
    """A succeeded refund's effects, on the locked order: lines counted, stock released or put
    back, the refunded total and the payment state (never the fulfilment state)."""
    wanted = dict(refund.lines.values_list("line_id", "quantity"))
    if wanted or order.refunded_total + refund.amount >= order.total:
        # Releasing, restocking and releasing the rest run in turn: lock every stock row they
        # may touch (all the order's allocations) first, once, in key order, as checkout does.
        inventory.lock_stock_rows(
            Allocation.objects.filter(line__order=order).values_list("stock_id", flat=True))
    for pk, quantity in wanted.items():
        OrderLine.objects.filter(pk=pk).update(quantity_refunded=F("quantity_refunded") + quantity)
    if wanted:
        _settle_refunded_lines(order, lines, wanted, refund.restock, actor)
    order.refunded_total = F("refunded_total") + refund.amount
    order.save(update_fields=["refunded_total", "updated_at"])
    order.refresh_from_db(fields=["refunded_total"])
    _event(order, OrderEvent.Kind.REFUND, actor,
           f"Refunded {format_money(refund.amount, order.currency)}"
           + (" (restocked)" if refund.restock else "")
           + (f": {refund.reason}" if refund.reason else "."))
    notifications.refund_succeeded(order, refund)
    emit_event("order_refunded", refund_id=refund.pk, order_id=order.pk,
               order_number=order.number or "", amount=str(refund.amount),
               currency=order.currency, reason=refund.reason,
               customer=lambda: notifications.customer_of(order))
    if order.refunded_total >= order.total:
        # Everything paid is back with the customer: nothing more will ship.
        _release_all(order, actor, "refunded in full")
    # An overpaid order stays overpaid until its extra payment goes back.
    payment = order.payment_status if order.payment_status == P.OVERPAID else (
        payment_after_refunds(total=order.total, refunded_total=order.refunded_total))
    _apply(order, actor, payment=payment)


def _settle_refunded_lines(order: Order, lines: dict[int, OrderLine], wanted: dict[int, int],
                           restock: bool, actor: Actor) -> None:
    """Refunded items not yet shipped give up their allocation; shipped ones come back on the
    shelf when restocked."""
    unshipped, returned = {}, []
    for pk, quantity in wanted.items():
        line = lines[pk]
        # ``line`` was read before this refund counted: what was left to ship then.
        to_ship = line.quantity - line.quantity_shipped - line.quantity_refunded
        unshipped[pk] = min(quantity, to_ship)
        shipped_back = quantity - unshipped[pk]
        if restock and shipped_back:
            returned.extend(_shipped_from(line, shipped_back))
    # A cancelled order gave its allocations back when it was cancelled. Units sold without
    # stock (unallocated) go first and hold nothing to release.
    release = [] if order.status == S.CANCELLED else _take_allocations(
        order, {pk: q for pk, q in unshipped.items() if q}, unallocated_first=lines,
    )[0]
    reference = _reference(order)
    if release:
        inventory.release(release, actor=actor, reference=reference, note="refunded")
    if returned:
        inventory.restock(returned, actor=actor, reference=reference, note="refunded, restocked")


def _shipped_from(line: OrderLine, quantity: int) -> list[Placement]:
    """Where ``quantity`` shipped items of ``line`` came from (the warehouses its allocations
    were in), to put them back there. Nothing for a line that never took stock (its variant's
    stock was not tracked): what never left counted stock does not come back into it."""
    places = []
    for allocation in Allocation.objects.filter(line=line).select_related("stock"):
        if quantity <= 0:
            break
        places.append(Placement(allocation.stock_id, allocation.stock.variant_id,
                                allocation.stock.warehouse_id, quantity))
        quantity = 0
    return places


def attach_guest_orders(user: AbstractBaseUser) -> int:
    """An account whose email is verified takes over the guest orders placed with it."""
    if not user.email:
        return 0
    guest = Order.objects.filter(user__isnull=True, email__iexact=user.email)
    order_ids = list(guest.values_list("pk", flat=True))
    attached = Order.objects.filter(pk__in=order_ids).update(user=user)
    if attached:
        _refresh_reviews(user.pk, order_ids)
    return attached


# What an integration (or a clerk) may ask an order to become, and the service that does it.
MOVES = ("paid", "shipped", "delivered", "cancelled")


def move_to(order: Order | int, status: str, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """``paid``, ``shipped`` (ships everything left), ``delivered`` or ``cancelled`` (releases
    the stock), through the service that does it with its side effects. Refunds are recorded
    with ``record_refund``."""
    if status == S.CANCELLED:
        return cancel_order(order, actor=actor, note=note)
    if status == P.PAID:
        return mark_paid(order, actor=actor, note=note)
    if status == FS.SHIPPED:
        return create_shipment(order, ShipmentRequest(), actor=actor).order
    if status == FS.DELIVERED:
        return mark_delivered(order, actor=actor, note=note)
    raise OrderError(f"An order cannot be moved to {status!r}: use one of {', '.join(MOVES)}"
                     + (" (record a refund to refund it)." if "refund" in status else "."),
                     "unknown_move")
