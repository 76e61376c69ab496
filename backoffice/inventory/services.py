"""Every change of stock goes through here, locks its rows and writes a movement.

Rows are locked in primary-key order (``select_for_update``) so two transactions touching the
same rows never deadlock. Nothing here calls out to a provider: callers must not hold these
locks while talking to the network.

Adjusting and counting stock (``adjust_stock``, ``set_stock_level``, ``set_counted_levels``)
needs ``inventory.adjust_stock`` (``backoffice.permissions.require``) and is written to the
audit trail when staff or a key does it. The order primitives (allocate, release, ship,
restock) and ``bulk_set_stock_levels`` (imports) are checked by the order services and the
import's start, which call them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from backoffice import permissions
from backoffice.bulk import insert_rows, key_chunks, update_rows
from backoffice.catalog import documents
from backoffice.inventory.models import MovementReason, Stock, StockMovement, Warehouse
from backoffice.inventory.selectors import StockStatus
from backoffice.inventory.signals import stock_changed


class StockError(Exception):
    """A stock change that would break an invariant; nothing was changed."""


def stock_place(stock: Stock) -> str:
    """A stock row as people read it in a message: ``SKU (product) in warehouse``. Two small
    queries: it is for error paths, where the row was locked without its variant."""
    from backoffice.catalog.models import Variant

    sku, product = (
        Variant.objects.filter(pk=stock.variant_id).values_list("sku", "product__name").first()
        or (f"#{stock.variant_id}", "")
    )
    warehouse = (
        Warehouse.objects.filter(pk=stock.warehouse_id).values_list("name", flat=True).first()
        or f"#{stock.warehouse_id}"
    )
    return f"{sku} ({product}) in {warehouse}" if product else f"{sku} in {warehouse}"


class InsufficientStock(StockError):
    """On hand would fall below what is allocated to orders. The message names the SKU, the
    product and the warehouse; ``stock`` and ``requested_quantity`` are for programs."""

    def __init__(self, stock: Stock, requested_quantity: int) -> None:
        self.stock = stock
        self.requested_quantity = requested_quantity
        allocated = stock.quantity_allocated
        super().__init__(
            f"{stock_place(stock)}: on hand cannot go to {requested_quantity}, "
            f"{allocated} {'is' if allocated == 1 else 'are'} allocated to orders "
            f"(on hand now {stock.quantity}, at least {allocated} must stay)."
        )


@dataclass(frozen=True)
class Actor:
    """Who made a change: a staff user, or a label for a job, an import or an API key.

    ``scopes`` is set for an API key (its ``integrations.Scope`` values, see
    ``integrations.services.key_actor``) and None otherwise: ``backoffice.permissions`` checks a
    user's permissions, a key's scopes, and lets an actor with neither (the system) through."""

    user: AbstractBaseUser | None = None
    label: str = ""
    scopes: frozenset[str] | None = None

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None and self.user.is_authenticated else None


SYSTEM = Actor(label="system")


def default_warehouse() -> Warehouse:
    """The warehouse imports and adjustments use unless told otherwise."""
    warehouse = Warehouse.objects.filter(is_default=True).first()
    if warehouse is None:
        raise StockError("No default warehouse: mark one warehouse as the default.")
    return warehouse


def _locked_stock(variant_id: int, warehouse_id: int) -> Stock:
    Stock.objects.get_or_create(variant_id=variant_id, warehouse_id=warehouse_id)
    return Stock.objects.select_for_update().get(variant_id=variant_id, warehouse_id=warehouse_id)


def _refresh_listings(variant_ids: set[int]) -> None:
    """Products whose stock changed may have come in or gone out of stock; and cached
    responses showing availability must go (the stock stamp changes after the commit)."""
    if not variant_ids:
        return
    stock_changed()
    from backoffice.catalog.models import Variant
    from backoffice.catalog.services import refresh_listings

    ids = sorted(variant_ids)
    product_ids = set()
    for start in range(0, len(ids), 2000):
        product_ids.update(Variant.objects.filter(pk__in=ids[start:start + 2000])
                           .values_list("product_id", flat=True))
    refresh_listings(product_ids)


def _report_if_low(stock: Stock, available_before: int) -> None:
    """Tell plugins (``stock_low``, after commit) when a change takes a row down to its
    threshold: once per fall, not again while it stays low. Not for a variant whose stock is not
    tracked (its rows are not what it sells from)."""
    available = stock.quantity - stock.quantity_allocated
    if not available_before > stock.low_stock_threshold >= available:
        return
    from backoffice.catalog.models import Variant
    from backoffice.notifications import services as notifications
    from backoffice.plugin_host.events import emit_event

    found = Variant.objects.filter(
        pk=stock.variant_id, is_active=True, track_inventory=True
    ).values_list("sku", "product__name").first()
    if found is not None:
        sku, product_name = found
        emit_event(
            "stock_low", variant_id=stock.variant_id, sku=sku, warehouse_id=stock.warehouse_id,
            available=available, threshold=stock.low_stock_threshold,
        )
        warehouse = Warehouse.objects.filter(pk=stock.warehouse_id).values_list(
            "name", flat=True).first() or ""
        notifications.stock_low(stock_id=stock.pk, sku=sku, product_name=product_name,
                                warehouse=warehouse, available=available,
                                threshold=stock.low_stock_threshold)


def _movement(
    stock: Stock,
    *,
    reason: str,
    quantity_change: int,
    actor: Actor,
    reference: str,
    note: str,
    allocated_change: int = 0,
) -> StockMovement:
    return StockMovement(
        stock=stock,
        reason=reason,
        quantity_change=quantity_change,
        allocated_change=allocated_change,
        quantity_after=stock.quantity,
        allocated_after=stock.quantity_allocated,
        actor_id=actor.user_id,
        actor_label=actor.label[:120],
        reference=reference[:120],
        note=note[:255],
    )


@transaction.atomic
def adjust_stock(
    *,
    variant_id: int,
    quantity_change: int,
    reason: str = MovementReason.ADJUSTMENT,
    warehouse_id: int | None = None,
    actor: Actor = SYSTEM,
    reference: str = "",
    note: str = "",
) -> Stock:
    """Add (or, negative, remove) on-hand stock. It may not drop below what is allocated."""
    permissions.require(actor, permissions.ADJUST_STOCK)
    warehouse_id = warehouse_id or default_warehouse().pk
    stock = _locked_stock(variant_id, warehouse_id)
    new_quantity = stock.quantity + quantity_change
    if new_quantity < stock.quantity_allocated:
        raise InsufficientStock(stock, new_quantity)
    available_before = stock.quantity - stock.quantity_allocated
    stock.quantity = new_quantity
    stock.save(update_fields=["quantity", "updated_at"])
    movement = _movement(
        stock, reason=reason, quantity_change=quantity_change, actor=actor,
        reference=reference, note=note,
    )
    movement.save()
    _report_if_low(stock, available_before)
    _refresh_listings({stock.variant_id})
    if not permissions.is_system(actor):
        from backoffice.audit.models import AuditAction
        from backoffice.audit.services import record

        record(actor, AuditAction.STOCK_ADJUSTED, stock,
               f"{quantity_change:+d} ({movement.get_reason_display()}): on hand now "
               f"{stock.quantity}." + (f" Reference {reference}." if reference else ""),
               object_repr=stock_place(stock),
               data={"change": quantity_change, "on_hand": stock.quantity, "reason": reason,
                     "movement_id": movement.pk})
    return stock


@transaction.atomic
def set_stock_level(
    *,
    variant_id: int,
    quantity: int,
    reason: str = MovementReason.COUNT,
    warehouse_id: int | None = None,
    actor: Actor = SYSTEM,
    reference: str = "",
    note: str = "",
) -> Stock:
    """Set on-hand stock to a counted ``quantity``; the movement records the difference."""
    permissions.require(actor, permissions.ADJUST_STOCK)
    if quantity < 0:
        raise StockError("A stock level cannot be negative.")
    warehouse_id = warehouse_id or default_warehouse().pk
    stock = _locked_stock(variant_id, warehouse_id)
    return adjust_stock(
        variant_id=variant_id, warehouse_id=warehouse_id, quantity_change=quantity - stock.quantity,
        reason=reason, actor=actor, reference=reference, note=note,
    )


@dataclass(frozen=True)
class StockLevel:
    variant_id: int
    warehouse_id: int
    quantity: int


@transaction.atomic
def bulk_set_stock_levels(
    levels: Iterable[StockLevel],
    *,
    reason: str = MovementReason.IMPORT,
    actor: Actor = SYSTEM,
    reference: str = "",
    refresh_listings: bool = True,
) -> int:
    """Set many stock levels in a few queries (imports); returns how many rows changed.

    Existing rows are locked in primary-key order; a level below what is allocated refuses the
    whole batch. Unchanged levels write no movement. A caller writing many batches can pass
    ``refresh_listings=False`` and refresh the products' listing columns once at the end.
    """
    wanted = {(level.variant_id, level.warehouse_id): level.quantity for level in levels}
    if not wanted:
        return 0
    if any(quantity < 0 for quantity in wanted.values()):
        raise StockError("A stock level cannot be negative.")
    # Sorted: where the lookup falls back to chunks, rows are still locked in key order.
    variant_ids = sorted({variant_id for variant_id, _ in wanted})
    existing = {
        (stock.variant_id, stock.warehouse_id): stock
        for queryset in key_chunks(Stock.objects.select_for_update(), "variant", variant_ids)
        for stock in queryset.order_by("pk")
    }
    # New rows stay plain tuples: 100k model instances would cost seconds of an import.
    to_create = [
        (variant_id, warehouse_id, quantity)
        for (variant_id, warehouse_id), quantity in wanted.items()
        if (variant_id, warehouse_id) not in existing
    ]
    to_update = []
    changes: list[tuple[int, int, int, int]] = []  # stock id, change, on hand, allocated after
    falling: list[tuple[Stock, int]] = []
    for key, stock in existing.items():
        if key not in wanted or wanted[key] == stock.quantity:
            continue
        if wanted[key] < stock.quantity_allocated:
            raise InsufficientStock(stock, wanted[key])
        changes.append((stock.pk, wanted[key] - stock.quantity, wanted[key],
                        stock.quantity_allocated))
        falling.append((stock, stock.quantity - stock.quantity_allocated))
        stock.quantity = wanted[key]
        stock.updated_at = timezone.now()  # update_rows does not apply auto_now
        to_update.append(stock)
    update_rows(to_update, ["quantity", "updated_at"])
    # New rows and the ledger go in the fastest way the backend has (an import writes 100k).
    # PostgreSQL: after the updated rows' movements, in one statement (``_insert_with_ledger``).
    set_based = connection.vendor == "postgresql"
    to_create_here = [] if set_based else to_create
    insert_rows(Stock, [
        {"variant_id": variant_id, "warehouse_id": warehouse_id, "quantity": quantity}
        for variant_id, warehouse_id, quantity in to_create_here
    ])
    if to_create_here:
        created_ids = {
            (variant_id, warehouse_id): pk
            for queryset in key_chunks(
                Stock.objects.all(), "variant", list({row[0] for row in to_create})
            )
            for pk, variant_id, warehouse_id in queryset.values_list(
                "pk", "variant_id", "warehouse_id"
            )
        }
        changes += [
            (created_ids[(variant_id, warehouse_id)], quantity, quantity, 0)
            for variant_id, warehouse_id, quantity in to_create_here if quantity
        ]
    insert_rows(StockMovement, [
        {
            "stock_id": stock_id, "reason": reason, "quantity_change": change,
            "allocated_change": 0, "quantity_after": on_hand, "allocated_after": allocated,
            "actor_id": actor.user_id, "actor_label": actor.label[:120],
            "reference": reference[:120], "note": "",
        }
        for stock_id, change, on_hand, allocated in changes
    ])
    created = 0
    if set_based and to_create:
        created = _insert_with_ledger(to_create, reason=reason, actor=actor, reference=reference)
    for stock, available_before in falling:
        _report_if_low(stock, available_before)
    if changes or created:
        stock_changed()  # also when the caller refreshes the listing columns itself, later
    if refresh_listings:
        _refresh_listings({stock.variant_id for stock in to_update}
                          | {variant_id for variant_id, _, quantity in to_create if quantity})
    else:
        # The caller refreshes the listing columns (and so the kept answers) of the products
        # it wrote, later; the answers kept of products whose existing rows changed go now, so
        # that no reader meanwhile gets the old stock status from them.
        documents.forget_variants(stock.variant_id for stock in to_update)
    return len(changes) + created


# New stock rows and their ledger entries in one statement (PostgreSQL): the rows from three
# arrays, and each one's "set to N" movement from the ids the insert returns; no ids read back,
# no row built in Python. The columns not given take the model's defaults, passed here.
_INSERT_WITH_LEDGER = """
WITH new AS (
    INSERT INTO inventory_stock
        (variant_id, warehouse_id, quantity, quantity_allocated, low_stock_threshold, updated_at)
    SELECT v, w, q, 0, %(threshold)s, %(now)s
    FROM unnest(%(variants)s::bigint[], %(warehouses)s::bigint[], %(quantities)s::integer[])
        AS t(v, w, q)
    RETURNING id, quantity
)
INSERT INTO inventory_stockmovement
    (stock_id, reason, quantity_change, allocated_change, quantity_after, allocated_after,
     actor_id, actor_label, reference, note, created_at)
SELECT id, %(reason)s, quantity, 0, quantity, 0, %(actor_id)s, %(actor_label)s, %(reference)s,
       '', %(now)s
FROM new WHERE quantity <> 0
"""


def _insert_with_ledger(rows: list[tuple[int, int, int]], *, reason: str, actor: Actor,
                        reference: str) -> int:
    """Insert ``(variant id, warehouse id, quantity)`` stock rows with a movement for each
    non-zero one; returns the movements written."""
    variants, warehouses, quantities = (list(column) for column in zip(*rows, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_WITH_LEDGER, {
            "variants": variants, "warehouses": warehouses, "quantities": quantities,
            "threshold": Stock._meta.get_field("low_stock_threshold").get_default(),
            "now": timezone.now(), "reason": reason, "actor_id": actor.user_id,
            "actor_label": actor.label[:120], "reference": reference[:120],
        })
        return cursor.rowcount


@dataclass(frozen=True)
class CountedLevel:
    """A counted level as an outside system names it: by SKU and warehouse code."""

    sku: str
    quantity: int
    warehouse_code: str = ""  # the default warehouse when empty


class UnknownStockPlaces(StockError):
    """Some levels name a SKU or a warehouse that does not exist; ``errors`` lists
    ``(index, field, message)`` for each, and nothing was changed."""

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        self.errors = errors
        super().__init__("Some levels name things that do not exist.")


@transaction.atomic
def set_counted_levels(
    levels: list[CountedLevel], *, actor: Actor, reference: str = ""
) -> int:
    """Set stock levels counted elsewhere (an ERP, a warehouse system): all or nothing.

    Unknown SKUs or warehouses refuse the whole batch (``UnknownStockPlaces``), as does a level
    below what is allocated (``InsufficientStock``). Returns how many levels changed.
    """
    from backoffice.catalog.models import Variant

    permissions.require(actor, permissions.ADJUST_STOCK)

    variants = dict(
        Variant.objects.filter(sku__in={lv.sku for lv in levels}).values_list("sku", "pk")
    )
    codes = {lv.warehouse_code for lv in levels if lv.warehouse_code}
    warehouses = dict(Warehouse.objects.filter(code__in=codes).values_list("code", "pk"))
    errors = []
    for index, level in enumerate(levels):
        if level.sku not in variants:
            errors.append((index, "sku", f"unknown SKU {level.sku!r}"))
        if level.warehouse_code and level.warehouse_code not in warehouses:
            errors.append((index, "warehouse", f"unknown warehouse {level.warehouse_code!r}"))
    if errors:
        raise UnknownStockPlaces(errors)
    default_id = default_warehouse().pk if any(not lv.warehouse_code for lv in levels) else None
    changed = bulk_set_stock_levels(
        [StockLevel(variants[lv.sku], warehouses.get(lv.warehouse_code, default_id), lv.quantity)
         for lv in levels],
        reason=MovementReason.COUNT, actor=actor, reference=reference,
    )
    if changed:
        from backoffice.audit.models import AuditAction
        from backoffice.audit.services import record

        record(actor, AuditAction.STOCK_LEVELS_SET, None,
               f"{changed} of {len(levels)} counted stock levels changed"
               + (f" (reference {reference})." if reference else "."),
               object_type=Stock._meta.label_lower,
               data={"received": len(levels), "changed": changed, "reference": reference})
    return changed


# --- Orders: allocate, release, ship, restock --------------------------------------------------
# Checkout promises stock to order lines (``quantity_allocated``); cancelling releases it;
# shipping takes it off the shelf (on hand and allocated together); a refund with restock puts
# it back. Each locks the rows it changes in primary-key order, in the caller's transaction.


class OutOfStock(StockError):
    """Some variants lack the stock asked for; ``available`` maps each to what is left."""

    def __init__(self, available: dict[int, int]) -> None:
        self.available = available
        super().__init__(f"Not enough stock for {len(available)} variant(s).")


@dataclass(frozen=True)
class Placement:
    """``quantity`` of a variant promised from (or taken out of) one stock row."""

    stock_id: int
    variant_id: int
    warehouse_id: int
    quantity: int


def _locked_rows(*conditions: Q, **lookup) -> list[Stock]:
    """The rows, locked in primary-key order, each with ``in_default_warehouse`` (read in the
    same query, for ``_pick``). of=("self",): the stock rows only are locked, not the joined
    warehouse."""
    return list(
        Stock.objects.select_for_update(of=("self",)).filter(*conditions, **lookup)
        .annotate(in_default_warehouse=F("warehouse__is_default")).order_by("pk")
    )


def lock_stock_rows(stock_ids) -> None:
    """Lock these stock rows now, in primary-key order: for a transaction that will change them
    in several steps (each step locks its own rows in key order, but steps in turn would not
    be in key order as a whole, and could deadlock with a checkout)."""
    _locked_rows(pk__in=sorted(set(stock_ids)))


def _statuses(rows: list[Stock]) -> dict[int, str]:
    """Each variant's stock status over ``rows`` (all its rows), as
    ``selectors.with_variant_stock`` says it for a variant sold from stock."""
    totals: dict[int, list[int]] = {}
    for stock in rows:
        total = totals.setdefault(stock.variant_id, [0, 0])
        total[0] += stock.quantity - stock.quantity_allocated
        total[1] += stock.low_stock_threshold
    return {
        variant_id: (StockStatus.OUT if available <= 0
                     else StockStatus.LOW if available <= threshold else StockStatus.IN_STOCK)
        for variant_id, (available, threshold) in totals.items()
    }


def _write_changes(
    changes: list[tuple[Stock, int, int]], *, reason: str, actor: Actor, reference: str,
    note: str = "", every_row: list[Stock] | None = None,
) -> None:
    """Save ``(stock, on-hand change, allocated change)`` on locked rows, with their ledger.
    ``every_row``: all the stock rows of the variants changed (locked), when the caller has
    them: the storefront's kept answers are then made stale only where a variant's status (in
    stock, low, out) moved, rather than wherever stock changed."""
    if not changes:
        return
    statuses = None if every_row is None else _statuses(every_row)
    before = {}
    now = timezone.now()
    for stock, quantity_change, allocated_change in changes:
        before.setdefault(stock.pk, stock.quantity - stock.quantity_allocated)
        stock.quantity += quantity_change
        stock.quantity_allocated += allocated_change
        stock.updated_at = now
    rows = list({stock.pk: stock for stock, _, _ in changes}.values())
    update_rows(rows, ["quantity", "quantity_allocated", "updated_at"])
    StockMovement.objects.bulk_create([
        _movement(stock, reason=reason, quantity_change=quantity_change,
                  allocated_change=allocated_change, actor=actor, reference=reference, note=note)
        for stock, quantity_change, allocated_change in changes
    ])
    for stock in rows:
        _report_if_low(stock, before[stock.pk])
    stock_changed()
    # A product's listing columns read its stock only as "some row has quantity > allocated":
    # they can change only where a row crossed zero (most changes do not, a sale of the last
    # unit or a delivery to an empty shelf does). Price columns do not read stock at all.
    crossed = {stock.variant_id for stock in rows
               if (before[stock.pk] > 0) != (stock.quantity > stock.quantity_allocated)}
    _refresh_listings(crossed)  # which makes their kept answers stale too
    if statuses is None:
        moved = {stock.variant_id for stock in rows}
    else:
        moved = {variant_id for variant_id, status in _statuses(every_row).items()
                 if status != statuses[variant_id]}
    documents.forget_variants(moved - crossed)


def _pick(rows: list[Stock], variant_id: int, quantity: int) -> list[tuple[Stock, int]]:
    """Where ``quantity`` of a variant comes from, among its locked ``rows``: the default
    warehouse first, then the one with most available; as much as they have, at most all."""
    picked = []
    places = sorted(
        (s for s in rows if s.variant_id == variant_id),
        key=lambda s: (not s.in_default_warehouse, -(s.quantity - s.quantity_allocated), s.pk),
    )
    for stock in places:
        take = min(quantity, stock.quantity - stock.quantity_allocated)
        if take <= 0:
            continue
        picked.append((stock, take))
        quantity -= take
        if quantity == 0:
            break
    return picked


def _available(rows: list[Stock]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for stock in rows:
        totals[stock.variant_id] = (totals.get(stock.variant_id, 0)
                                    + stock.quantity - stock.quantity_allocated)
    return totals


def allocate(
    wanted: dict[int, int], *, actor: Actor = SYSTEM, reference: str = "",
    backorder: set[int] | frozenset[int] = frozenset(),
) -> list[Placement]:
    """Promise ``{variant_id: quantity}`` from the warehouses that have it: the default
    warehouse first, then the one with most available. All or nothing: raises ``OutOfStock``
    naming every short variant (and what it has) and changes nothing.

    Variants in ``backorder`` (tracked, sold on backorder) are never short: they take what is
    available and the rest stays unallocated, to be taken from the shelf when it ships (see
    ``take_shipped``). Variants whose stock is not tracked are not for this function: callers
    leave them out, so nothing is allocated or locked for them.

    Every row of the variants is locked in primary-key order first, so concurrent checkouts
    queue on the rows they share and never oversell or deadlock.
    """
    if not wanted:
        return []
    rows = _locked_rows(variant_id__in=list(wanted))
    available = _available(rows)
    short = {
        variant_id: max(available.get(variant_id, 0), 0)
        for variant_id, quantity in wanted.items()
        if variant_id not in backorder and available.get(variant_id, 0) < quantity
    }
    if short:
        raise OutOfStock(short)
    placements, changes = [], []
    for variant_id, quantity in sorted(wanted.items()):
        for stock, take in _pick(rows, variant_id, quantity):
            placements.append(Placement(stock.pk, variant_id, stock.warehouse_id, take))
            changes.append((stock, 0, take))
    _write_changes(changes, reason=MovementReason.ALLOCATION, actor=actor, reference=reference,
                   every_row=rows)
    return placements


def _apply_to_placements(
    placements: list[Placement], *, on_hand: int, allocated: int, reason: str, actor: Actor,
    reference: str, note: str = "",
) -> None:
    """Add ``on_hand`` x and ``allocated`` x each placement's quantity to its row (signs say
    which way); the database refuses anything that would go negative or over on hand."""
    rows = {s.pk: s for s in _locked_rows(pk__in={p.stock_id for p in placements})}
    changes = [
        (rows[p.stock_id], on_hand * p.quantity, allocated * p.quantity)
        for p in placements if p.quantity
    ]
    for stock, quantity_change, allocated_change in changes:
        if (stock.quantity_allocated + allocated_change < 0
                or stock.quantity + quantity_change < stock.quantity_allocated + allocated_change):
            raise StockError(f"{stock_place(stock)} does not hold what is being taken from it.")
    _write_changes(changes, reason=reason, actor=actor, reference=reference, note=note)


def release(placements: list[Placement], *, actor: Actor = SYSTEM, reference: str = "",
            note: str = "") -> None:
    """Give allocated stock back to the shelf (an order cancelled or expired)."""
    _apply_to_placements(placements, on_hand=0, allocated=-1, reason=MovementReason.RELEASE,
                         actor=actor, reference=reference, note=note)


def take_shipped(placements: list[Placement], *, actor: Actor = SYSTEM, reference: str = "",
                 note: str = "", backordered: dict[int, int] | None = None) -> list[Placement]:
    """Allocated stock left the warehouse: on hand and allocated both go down.

    ``backordered`` (``{variant_id: quantity}``) are units sold on backorder, never allocated,
    leaving now: they come off the shelf from what is available (default warehouse first), never
    from stock promised to other orders, so stock stays exact; ``OutOfStock`` (nothing changed)
    when the shelf does not have them yet. The rows of both are locked together, in primary-key
    order. Returns where the backordered units were taken from.
    """
    backordered = {v: q for v, q in (backordered or {}).items() if q > 0}
    if not backordered:
        _apply_to_placements(placements, on_hand=-1, allocated=-1,
                             reason=MovementReason.SHIPMENT, actor=actor, reference=reference,
                             note=note)
        return []
    rows = _locked_rows(Q(pk__in={p.stock_id for p in placements})
                        | Q(variant_id__in=list(backordered)))
    by_pk = {stock.pk: stock for stock in rows}
    merged: dict[int, list[int]] = {}  # stock id -> [on-hand change, allocated change]
    for p in placements:
        if p.quantity:
            change = merged.setdefault(p.stock_id, [0, 0])
            change[0] -= p.quantity
            change[1] -= p.quantity
    available = _available(rows)
    short = {v: max(available.get(v, 0), 0) for v, q in backordered.items()
             if available.get(v, 0) < q}
    if short:
        raise OutOfStock(short)
    taken = []
    for variant_id, quantity in sorted(backordered.items()):
        for stock, take in _pick(rows, variant_id, quantity):
            taken.append(Placement(stock.pk, variant_id, stock.warehouse_id, take))
            merged.setdefault(stock.pk, [0, 0])[0] -= take
    for stock_id, (on_hand, allocated) in merged.items():
        stock = by_pk[stock_id]
        if (stock.quantity_allocated + allocated < 0
                or stock.quantity + on_hand < stock.quantity_allocated + allocated):
            raise StockError(f"{stock_place(stock)} does not hold what is being taken from it.")
    _write_changes([(by_pk[pk], on_hand, allocated) for pk, (on_hand, allocated)
                    in sorted(merged.items())],
                   reason=MovementReason.SHIPMENT, actor=actor, reference=reference, note=note)
    return taken


def restock(placements: list[Placement], *, actor: Actor = SYSTEM, reference: str = "",
            note: str = "") -> None:
    """Returned goods back on the shelf of the warehouse they left from."""
    _apply_to_placements(placements, on_hand=1, allocated=0, reason=MovementReason.RETURN,
                         actor=actor, reference=reference, note=note)
