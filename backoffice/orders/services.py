"""What happens to an order after checkout: status moves, cancelling, shipping, refunds.

The admin actions, the API (customers and integration keys) and the jobs all call these. Each
locks the order row first, so two clerks (or a clerk and the expiry job) never both act on the
same order; an illegal status move raises ``IllegalTransition`` and changes nothing. Every move
writes an ``OrderEvent`` and queues the ``order_status_changed`` plugin event in the same
transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import ngettext

from backoffice.inventory import services as inventory
from backoffice.inventory.services import SYSTEM, Actor, Placement
from backoffice.money import format_money, quantize
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
    PURCHASED_STATUSES,
    REFUNDABLE_STATUSES,
    SHIPPABLE_STATUSES,
    IllegalTransition,
    OrderStatus,
    check_move,
)
from backoffice.plugin_host.events import emit_event

logger = logging.getLogger(__name__)

__all__ = [
    "IllegalTransition", "OrderError", "cancel_order", "create_shipment", "expire_unpaid_orders",
    "mark_delivered", "mark_paid", "record_late_payment", "record_refund", "settle_refund",
    "transition", "add_note", "attach_guest_orders", "move_to", "refundable_amount",
    "refundable_quantities", "shippable_quantities",
]


class OrderError(Exception):
    """An order operation that cannot be done; nothing was changed. ``code`` is for programs."""

    def __init__(self, message: str, code: str = "order_error") -> None:
        super().__init__(message)
        self.code = code


def _lock(order: Order | int) -> Order:
    pk = order.pk if isinstance(order, Order) else order
    return Order.objects.select_for_update(of=("self",)).get(pk=pk)


def _event(order: Order, kind: str, actor: Actor, note: str = "", **fields) -> OrderEvent:
    return OrderEvent.objects.create(
        order=order, kind=kind, actor_id=actor.user_id, actor_label=actor.label[:120],
        note=note, **fields,
    )


def _move(order: Order, status: str, actor: Actor, note: str = "") -> None:
    """On a locked order: check, save, record, tell plugins."""
    old = order.status
    check_move(old, status)
    order.status = status
    fields = ["status", "updated_at"]
    if status == OrderStatus.PAID and order.paid_at is None:
        order.paid_at = timezone.now()
        fields.append("paid_at")
    order.save(update_fields=fields)
    _event(order, OrderEvent.Kind.STATUS, actor, note, from_status=old, to_status=status)
    if order.user_id and (old in PURCHASED_STATUSES) != (status in PURCHASED_STATUSES):
        _refresh_reviews(order.user_id, [order.pk])
    emit_event(
        "order_status_changed", order_id=order.pk, order_number=order.number or "",
        old_status=old, new_status=status,
    )


def _refresh_reviews(user_id: int, order_ids: list[int]) -> None:
    """Bought or not any more: the customer's reviews of these orders' products say so."""
    from backoffice.reviews.services import refresh_verified_purchases

    product_ids = list(OrderLine.objects.filter(order_id__in=order_ids)
                       .values_list("product_id_snapshot", flat=True).distinct())
    if product_ids:
        refresh_verified_purchases(user_id=user_id, product_ids=product_ids)


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


@transaction.atomic
def transition(order: Order | int, status: str, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """Move an order to ``status`` (no stock or money side effects: use ``cancel_order``,
    ``create_shipment``, ``mark_delivered`` and ``record_refund`` for those)."""
    order = _lock(order)
    check_move(order.status, status)
    if status == OrderStatus.CANCELLED:
        raise OrderError("Cancel with cancel_order(), which releases the stock.", "use_cancel")
    if status == OrderStatus.SHIPPED:
        raise OrderError("Ship with create_shipment(), which takes the stock.", "use_shipment")
    if status == OrderStatus.DELIVERED:
        raise OrderError("Deliver with mark_delivered(), once everything has shipped.",
                         "use_delivered")
    if status in {OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED}:
        raise OrderError("Refund with record_refund().", "use_refund")
    _move(order, status, actor, note)
    return order


@transaction.atomic
def mark_paid(order: Order | int, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """Money received in full. A cash-on-delivery order already being fulfilled keeps its
    fulfilment status and gets its ``paid_at``."""
    order = _lock(order)
    if order.paid_at is not None:
        return order
    if order.status == OrderStatus.PENDING_PAYMENT:
        _move(order, OrderStatus.PAID, actor, note)
    elif order.status in {OrderStatus.PROCESSING, OrderStatus.SHIPPED, OrderStatus.DELIVERED}:
        order.paid_at = timezone.now()
        order.save(update_fields=["paid_at", "updated_at"])
        _event(order, OrderEvent.Kind.PAYMENT, actor, note or "Payment received.")
    else:
        raise IllegalTransition(order.status, OrderStatus.PAID)
    return order


@transaction.atomic
def record_late_payment(order: Order | int, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """Money arrived for an order already cancelled (its payment window ran out, its stock went
    back): the order stays cancelled, and is marked paid so that the money can be refunded."""
    order = _lock(order)
    if order.status != OrderStatus.CANCELLED:
        raise OrderError("Only a cancelled order takes a late payment.", "not_cancelled")
    if order.paid_at is None:
        order.paid_at = timezone.now()
        order.save(update_fields=["paid_at", "updated_at"])
    _event(order, OrderEvent.Kind.PAYMENT, actor,
           note or "Payment received after the order was cancelled: refund it, or contact the "
                   "customer.")
    return order


@transaction.atomic
def cancel_order(order: Order | int, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """Cancel an order that has not shipped: its allocated stock goes back on the shelf, and an
    unpaid order gives its coupon use back. Money already paid is refunded with
    ``record_refund`` (the order stays cancelled)."""
    from backoffice.promotions.services import give_back

    order = _lock(order)
    check_move(order.status, OrderStatus.CANCELLED)
    if OrderLine.objects.filter(order=order, quantity_shipped__gt=0).exists():
        raise OrderError("Part of this order has shipped; refund it instead.", "already_shipped")
    _release_all(order, actor, note or "order cancelled")
    if order.paid_at is None:
        give_back(order)
    _move(order, OrderStatus.CANCELLED, actor, note)
    return order


def expire_unpaid_orders(now: datetime | None = None, limit: int = 500) -> int:
    """Cancel orders still unpaid after their payment window, releasing their stock (a job,
    every minute). Each order in its own transaction; returns how many were cancelled."""
    now = now or timezone.now()
    due = list(
        Order.objects.filter(status=OrderStatus.PENDING_PAYMENT, payment_due_at__lte=now)
        .order_by("payment_due_at").values_list("pk", flat=True)[:limit]
    )
    done = 0
    for pk in due:
        try:
            with transaction.atomic():
                order = _lock(pk)
                # Paid (or cancelled) between the query and the lock: leave it.
                if order.status != OrderStatus.PENDING_PAYMENT or order.payment_due_at > now:
                    continue
                cancel_order(order, actor=Actor(label="payment window expired"),
                             note="Not paid in time.")
                done += 1
        except Exception:
            # One order that cannot be cancelled must not hold back the others; it stays due
            # and is tried again next minute, with the error in the log.
            logger.exception("could not cancel expired order %s", pk)
    return done


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
    allocation go down together). The order becomes *shipped* once nothing is left to ship.

    Units sold without stock: those of a variant whose stock is not tracked ship without any
    stock movement; backordered units of a tracked variant come off the shelf now, from what is
    available (``OrderError`` "backordered", nothing changed, when the shelf does not have them:
    receive the goods into stock first), and the rows they came from are remembered (an
    allocation of 0) so that a restocking refund puts them back there."""
    order = _lock(order)
    if order.status not in SHIPPABLE_STATUSES:
        raise IllegalTransition(order.status, OrderStatus.SHIPPED)
    lines = {line.pk: line for line in OrderLine.objects.filter(order=order)}
    shippable = shippable_quantities(order, lines)
    wanted = dict(request.lines) if request.lines else {
        pk: quantity for pk, quantity in shippable.items() if quantity
    }
    wanted = {pk: qty for pk, qty in wanted.items() if qty}
    if not wanted:
        raise OrderError("Nothing is left to ship.", "nothing_to_ship")
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
               carrier=shipment.carrier, tracking_number=shipment.tracking_number)
    left = sum(
        line.quantity_to_ship for line in OrderLine.objects.filter(order=order)
    )
    if order.status == OrderStatus.PAID:
        _move(order, OrderStatus.PROCESSING, actor)
    if left == 0:
        _move(order, OrderStatus.SHIPPED, actor)
    return shipment


@transaction.atomic
def mark_delivered(order: Order | int, *, actor: Actor = SYSTEM, shipment_id: int | None = None,
                   note: str = "") -> Order:
    """Delivered: every shipment (or one) gets its delivery time; the order moves to
    *delivered* once everything it ships has shipped and every shipment has arrived."""
    order = _lock(order)
    if order.status in {OrderStatus.DELIVERED, OrderStatus.REFUNDED}:
        # Nothing to move: still note when shipments arrive (a refunded order in transit).
        arrived = Shipment.objects.filter(order=order, delivered_at__isnull=True)
        if shipment_id is not None:
            arrived = arrived.filter(pk=shipment_id)
        if arrived.update(delivered_at=timezone.now()):
            _event(order, OrderEvent.Kind.SHIPMENT, actor, note or "Shipment arrived.")
        return order
    if shipment_id is None:
        check_move(order.status, OrderStatus.DELIVERED)
    shipments = Shipment.objects.filter(order=order, delivered_at__isnull=True)
    if shipment_id is not None:
        shipments = shipments.filter(pk=shipment_id)
        if not shipments.exists():
            raise OrderError(f"Shipment {shipment_id} is not an undelivered shipment of this "
                             "order.", "unknown_shipment")
    elif not Shipment.objects.filter(order=order).exists():
        raise OrderError("Nothing has shipped yet; create a shipment first.", "not_shipped")
    shipments.update(delivered_at=timezone.now())
    left = sum(line.quantity_to_ship for line in OrderLine.objects.filter(order=order))
    arrived = not Shipment.objects.filter(order=order, delivered_at__isnull=True).exists()
    if left == 0 and arrived and order.status != OrderStatus.DELIVERED:
        _move(order, OrderStatus.DELIVERED, actor, note)
    elif shipment_id is None and left:
        raise OrderError(ngettext("%(count)d item has not shipped yet.",
                                  "%(count)d items have not shipped yet.", left)
                         % {"count": left}, "not_shipped")
    else:
        _event(order, OrderEvent.Kind.SHIPMENT, actor, note or f"Shipment {shipment_id} arrived.")
    return order


@transaction.atomic
def add_note(order: Order | int, note: str, *, actor: Actor = SYSTEM) -> OrderEvent:
    return _event(_lock(order), OrderEvent.Kind.NOTE, actor, note)


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
    """Money that may still be refunded: the total, less what was refunded and what pending
    refunds hold."""
    pending = sum(
        (r.amount for r in Refund.objects.filter(order=order, status=Refund.Status.PENDING)),
        Decimal("0"),
    )
    return order.total - order.refunded_total - pending


@transaction.atomic
def record_refund(order: Order | int, request: RefundRequest, *, actor: Actor = SYSTEM,
                  status: str = Refund.Status.SUCCEEDED, provider_refund_id: str = "",
                  payment_id: int | None = None) -> Refund:
    """Record money given back: an amount (at most what is left to refund), for lines or not,
    with their goods back on the shelf or not. The order becomes *refunded* when everything
    paid has been given back, else *partially refunded* (a cancelled order stays cancelled);
    a full refund releases whatever stock the order still held.

    The payment provider is called by the payments service before this records its answer:
    ``succeeded`` takes effect now; ``pending`` (the provider settles later) is recorded, holds
    its amount against further refunds and takes effect with ``settle_refund``; ``failed`` is
    recorded for the timeline and changes nothing else.
    """
    if status not in Refund.Status.values:
        raise OrderError(f"{status!r} is not a refund status (use one of "
                         f"{', '.join(Refund.Status.values)}).", "invalid_status")
    order = _lock(order)
    if order.status not in REFUNDABLE_STATUSES:
        raise OrderError(
            f"An order that is {order.get_status_display().lower()} has nothing to refund.",
            "not_refundable",
        )
    if order.paid_at is None:
        raise OrderError("Nothing has been paid for this order, so nothing can be refunded.",
                         "not_paid")
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
    back, the refunded total and the status."""
    wanted = dict(refund.lines.values_list("line_id", "quantity"))
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
    full = order.refunded_total >= order.total
    if full:
        # Everything paid is back with the customer: nothing more will ship.
        _release_all(order, actor, "refunded in full")
    if order.status != OrderStatus.CANCELLED:
        _move(order, OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED, actor)


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
    release = [] if order.status == OrderStatus.CANCELLED else _take_allocations(
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


def move_to(order: Order | int, status: str, *, actor: Actor = SYSTEM, note: str = "") -> Order:
    """Whatever status a clerk or an integration asks for, through the service that does it
    with its side effects (cancel releases stock, shipped ships what is left, ...)."""
    if status == OrderStatus.CANCELLED:
        return cancel_order(order, actor=actor, note=note)
    if status == OrderStatus.PAID:
        return mark_paid(order, actor=actor, note=note)
    if status == OrderStatus.SHIPPED:
        shipment = create_shipment(order, ShipmentRequest(), actor=actor)
        return shipment.order
    if status == OrderStatus.DELIVERED:
        return mark_delivered(order, actor=actor, note=note)
    if status in {OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED}:
        raise OrderError("Record a refund to refund an order.", "use_refund")
    return transition(order, status, actor=actor, note=note)
