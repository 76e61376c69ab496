"""Counting sales: a window of days computed from the orders, and the rollup kept from it.

``compute`` reads everything a window's figures need in **one query** (a ``UNION ALL`` of the
lines of the orders paid in the window and the refunds recorded in it, each refund with its
lines) and adds it up in Python, with ``Decimal``: the day's totals and its cut by product,
category, payment provider and coupon. The rollup job stores those figures per past day
(``rebuild_days``); readers compute today's, and any day the job has not counted yet, the same
way, live (``backoffice.reports.selectors``). One function for both, so the rollup equals a
live computation by construction (and a test checks it against the orders).

The job (``refresh_rollup``, scheduled hourly in ``backoffice.schedules``) recomputes:

- every day after the last one counted, through yesterday (the first run counts every day
  since the first sale; a missed run is caught up);
- every past day touched since the last run: the day an order changed since then was paid, and
  the days its refunds were recorded (a refund settled by the provider later, a payment
  recorded late, orders imported with old dates).

Recomputing a day deletes its rows and writes them again in one transaction: running it twice
changes nothing.

Whole months are kept too (``MonthlyBreakdown``, and their totals per dimension in
``MonthlyBreakdownTotal``), so that a report over a year adds up at most twelve rows a product
instead of 365: a complete month's rows (its last day counted) are its days'
``DailyBreakdown`` rows added up, in SQL (``rebuild_months``), in the same transaction as the
days that change them: the days recomputed in a month that is complete, and a month whose last
day this run counts for the first time. Days are recomputed a month at a time, so a
month's rows are written once a run. Readers take whole months from them and the days around
from the daily rows (``backoffice.reports.selectors``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import (
    CharField,
    DecimalField,
    F,
    Max,
    Min,
    PositiveBigIntegerField,
    QuerySet,
    Value,
)
from django.utils import timezone

from backoffice.admin_filters import start_of_day
from backoffice.money import MONEY_FIELD_KWARGS, quantize
from backoffice.orders.models import Order, OrderLine, Refund
from backoffice.reports.models import (
    DailyBreakdown,
    DailySales,
    Dimension,
    MonthlyBreakdown,
    MonthlyBreakdownTotal,
)

logger = logging.getLogger(__name__)

ZERO = Decimal("0")
# Days recomputed in one read of the orders and one transaction: at most a calendar month (a
# backfill of a year reads a month at a time, and writes each month's rows once).
CHUNK_DAYS = 31
# An order saved in a transaction that committed after the last run started may carry an
# ``updated_at`` a little before it: look back this much further.
TOUCHED_MARGIN = dt.timedelta(minutes=15)


def local_day(moment: dt.datetime) -> dt.date:
    """The store's day (``settings.TIME_ZONE``) of an aware moment."""
    return timezone.localdate(moment)


def today() -> dt.date:
    return timezone.localdate()


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_end(day: dt.date) -> dt.date:
    """The last day of ``day``'s month."""
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


# --- Figures ------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Sales figures of a day, a period, or one product (or category, provider, coupon) in
    it. ``net`` = gross - discounts + shipping - refunds."""

    orders: int = 0
    items: int = 0
    gross: Decimal = ZERO
    discounts: Decimal = ZERO
    shipping: Decimal = ZERO
    refunds: Decimal = ZERO
    refunded_items: int = 0
    refund_count: int = 0
    label: str = ""

    @property
    def net(self) -> Decimal:
        return self.gross - self.discounts + self.shipping - self.refunds

    def add(self, other: Figures) -> Figures:
        self.orders += other.orders
        self.items += other.items
        self.gross += other.gross
        self.discounts += other.discounts
        self.shipping += other.shipping
        self.refunds += other.refunds
        self.refunded_items += other.refunded_items
        self.refund_count += other.refund_count
        self.label = self.label or other.label
        return self

    @classmethod
    def of_row(cls, row: DailySales | DailyBreakdown | dict) -> Figures:
        get = row.get if isinstance(row, dict) else (lambda name, default=None: getattr(
            row, name, default))
        return cls(
            orders=get("orders") or 0, items=get("items") or 0, gross=get("gross") or ZERO,
            discounts=get("discounts") or ZERO, shipping=get("shipping") or ZERO,
            refunds=get("refunds") or ZERO, refunded_items=get("refunded_items") or 0,
            refund_count=get("refund_count", 0) or 0, label=get("label", "") or "",
        )


@dataclass
class DayFigures:
    """One day's figures in one currency: the totals and the four breakdowns, each
    ``{key: Figures}``."""

    totals: Figures = field(default_factory=Figures)
    breakdowns: dict[str, dict[str, Figures]] = field(
        default_factory=lambda: {dimension: defaultdict(Figures) for dimension in Dimension.values}
    )


Computed = dict[tuple[dt.date, str], DayFigures]  # (day, currency): figures


# --- Reading the orders: one query ------------------------------------------------------------

# The columns both halves of the union select, in order.
COLUMNS = (
    "r_kind", "r_order", "r_at", "r_currency", "r_method", "r_coupon", "r_subtotal",
    "r_discount", "r_shipping", "r_product", "r_name", "r_quantity", "r_line_total",
    "r_line_discount", "r_line_quantity", "r_refund", "r_amount",
)
_MONEY = DecimalField(**MONEY_FIELD_KWARGS)


def _null(output_field) -> Value:
    return Value(None, output_field=output_field)


def _sales_rows(start: dt.datetime, end: dt.datetime) -> QuerySet:
    """The lines of the orders paid in [start, end), with their order's figures."""
    return OrderLine.objects.filter(
        order__paid_at__gte=start, order__paid_at__lt=end,
    ).annotate(
        r_kind=Value("sale", output_field=CharField()),
        r_order=F("order_id"),
        r_at=F("order__paid_at"),
        r_currency=F("order__currency"),
        r_method=F("order__payment_method"),
        r_coupon=F("order__coupon_code"),
        r_subtotal=F("order__subtotal"),
        r_discount=F("order__discount_total"),
        r_shipping=F("order__shipping_total"),
        r_product=F("product_id_snapshot"),
        r_name=F("product_name"),
        r_quantity=F("quantity"),
        r_line_total=F("total"),
        r_line_discount=F("discount_amount"),
        r_line_quantity=F("quantity"),
        r_refund=_null(PositiveBigIntegerField()),
        r_amount=_null(_MONEY),
    ).values_list(*COLUMNS).order_by()


def _refund_rows(start: dt.datetime, end: dt.datetime) -> QuerySet:
    """The succeeded refunds recorded in [start, end), one row per refunded line (one row with
    no line for a refund given as an amount), with their order's currency, provider and
    coupon."""
    return Refund.objects.filter(
        status=Refund.Status.SUCCEEDED, created_at__gte=start, created_at__lt=end,
    ).annotate(
        r_kind=Value("refund", output_field=CharField()),
        r_order=F("order_id"),
        r_at=F("created_at"),
        r_currency=F("order__currency"),
        r_method=F("order__payment_method"),
        r_coupon=F("order__coupon_code"),
        r_subtotal=_null(_MONEY),
        r_discount=_null(_MONEY),
        r_shipping=_null(_MONEY),
        r_product=F("lines__line__product_id_snapshot"),
        r_name=F("lines__line__product_name"),
        r_quantity=F("lines__quantity"),
        r_line_total=F("lines__line__total"),
        r_line_discount=_null(_MONEY),
        r_line_quantity=F("lines__line__quantity"),
        r_refund=F("pk"),
        r_amount=F("amount"),
    ).values_list(*COLUMNS).order_by()


def read_rows(start: dt.datetime, end: dt.datetime) -> Iterator[tuple]:
    """Every row ``compute`` needs for [start, end), in one query."""
    yield from _sales_rows(start, end).union(_refund_rows(start, end), all=True)


# --- Adding up ------------------------------------------------------------------------------


def _category_names(product_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """``{product id: (category key, category name)}`` for the products given (one query)."""
    from backoffice.catalog.models import Product

    ids = [pk for pk in set(product_ids) if pk is not None]
    if not ids:
        return {}
    return {
        pk: (str(category_id) if category_id else "", name or "")
        for pk, category_id, name in Product.objects.filter(pk__in=ids).values_list(
            "pk", "category_id", "category__name")
    }


def aggregate(rows: Iterable[tuple], *, categories: bool = True) -> Computed:
    """Add up ``read_rows`` rows into per-(day, currency) figures. With ``categories``, one
    more query maps the products sold to their (current) category."""
    days: Computed = defaultdict(DayFigures)
    # Orders counted once per (day, currency, dimension, key); refunds once per refund.
    seen_orders: set[tuple] = set()
    seen_refunds: set[int] = set()
    product_orders: dict[tuple, set[int]] = defaultdict(set)
    lines_by_product: list[tuple[dt.date, str, int | None, int, Figures]] = []
    for row in rows:
        (kind, order_id, at, currency, method, coupon, subtotal, discount, shipping, product,
         name, quantity, line_total, line_discount, line_quantity, refund_id, amount) = row
        day = local_day(at)
        figures = days[day, currency]
        providers = figures.breakdowns[Dimension.PROVIDER]
        coupons = figures.breakdowns[Dimension.COUPON]
        coupon_key = (coupon or "").upper()
        method = method or ""
        if kind == "sale":
            if order_id not in seen_orders:
                seen_orders.add(order_id)
                order = Figures(orders=1, gross=subtotal, discounts=discount, shipping=shipping)
                figures.totals.add(order)
                providers[method].add(order)
                providers[method].label = method
                if coupon_key:
                    coupons[coupon_key].add(order)
                    coupons[coupon_key].label = coupon
            figures.totals.items += quantity
            providers[method].items += quantity
            if coupon_key:
                coupons[coupon_key].items += quantity
            line = Figures(items=quantity, gross=line_total + line_discount,
                           discounts=line_discount, label=name)
            product_orders[day, currency, product].add(order_id)
            lines_by_product.append((day, currency, product, order_id, line))
            continue
        # A refund: its amount once, then each refunded line's value.
        if refund_id not in seen_refunds:
            seen_refunds.add(refund_id)
            refund = Figures(refunds=amount, refund_count=1)
            figures.totals.add(refund)
            providers[method].add(refund)
            providers[method].label = providers[method].label or method
            if coupon_key:
                coupons[coupon_key].add(refund)
                coupons[coupon_key].label = coupons[coupon_key].label or coupon
        if quantity:
            # What the items cost the customer, their coupon share included: as the order
            # service values a refund of lines.
            value = quantize(line_total * quantity / line_quantity)
            figures.totals.refunded_items += quantity
            providers[method].refunded_items += quantity
            if coupon_key:
                coupons[coupon_key].refunded_items += quantity
            lines_by_product.append(
                (day, currency, product, 0,
                 Figures(refunds=value, refunded_items=quantity, label=name or "")))
    names = _category_names(p for _, _, p, _, _ in lines_by_product) if categories else {}
    category_orders: dict[tuple, set[int]] = defaultdict(set)
    for day, currency, product, order_id, line in lines_by_product:
        breakdowns = days[day, currency].breakdowns
        product_key = "" if product is None else str(product)
        breakdowns[Dimension.PRODUCT][product_key].add(line)
        if categories:
            category_key, category_name = names.get(product, ("", ""))
            category = breakdowns[Dimension.CATEGORY][category_key]
            category.add(Figures(items=line.items, gross=line.gross, discounts=line.discounts,
                                 refunds=line.refunds, refunded_items=line.refunded_items))
            category.label = category.label or category_name
            if order_id:
                category_orders[day, currency, category_key].add(order_id)
    for (day, currency, product), orders in product_orders.items():
        key = "" if product is None else str(product)
        days[day, currency].breakdowns[Dimension.PRODUCT][key].orders = len(orders)
    for (day, currency, key), orders in category_orders.items():
        days[day, currency].breakdowns[Dimension.CATEGORY][key].orders = len(orders)
    return dict(days)


def compute(first: dt.date, last: dt.date, *, until: dt.datetime | None = None,
            categories: bool = True) -> Computed:
    """The figures of the days ``first`` through ``last`` (the store's days), from the orders;
    with ``until``, only what happened before that moment (today so far)."""
    end = start_of_day(last + dt.timedelta(days=1))
    if until is not None:
        end = min(end, until)
    return aggregate(read_rows(start_of_day(first), end), categories=categories)


# --- The rollup -------------------------------------------------------------------------------


def _rows_of(day: dt.date, currency: str, figures: DayFigures, now: dt.datetime):
    totals = figures.totals
    sales = DailySales(
        day=day, currency=currency, orders=totals.orders, items=totals.items,
        gross=totals.gross, discounts=totals.discounts, shipping=totals.shipping,
        refunds=totals.refunds, refunded_items=totals.refunded_items,
        refund_count=totals.refund_count, net=totals.net, computed_at=now,
    )
    breakdowns = [
        DailyBreakdown(
            day=day, currency=currency, dimension=dimension, key=key[:64],
            label=(item.label or "")[:255], orders=item.orders, items=item.items,
            gross=item.gross, discounts=item.discounts, shipping=item.shipping,
            refunds=item.refunds, refunded_items=item.refunded_items, net=item.net,
        )
        for dimension, items in figures.breakdowns.items()
        for key, item in items.items()
    ]
    return sales, breakdowns


def _chunks(days: Iterable[dt.date]) -> Iterator[list[dt.date]]:
    """Runs of consecutive days within one calendar month (so at most ``CHUNK_DAYS`` long)."""
    run: list[dt.date] = []
    for day in sorted(set(days)):
        if run and (day != run[-1] + dt.timedelta(days=1) or day.day == 1
                    or len(run) >= CHUNK_DAYS):
            yield run
            run = []
        run.append(day)
    if run:
        yield run


# The figures a month adds up from its days, in ``MonthlyBreakdown``'s columns.
MONTH_SUMS = ("orders", "items", "gross", "discounts", "shipping", "refunds", "refunded_items",
              "net")


def rebuild_months(months: Iterable[dt.date]) -> int:
    """Write the ``MonthlyBreakdown`` rows of ``months`` (any day of each) again from their
    days' ``DailyBreakdown`` rows, and their ``MonthlyBreakdownTotal`` rows from those: two
    ``INSERT ... SELECT`` a month, in the caller's transaction. Returns the number of months
    written. The caller decides which months are complete (``rebuild_days``); a month with no
    daily rows gets no rows."""
    qn = connection.ops.quote_name
    sums = ", ".join(f"SUM({qn(name)})" for name in MONTH_SUMS)
    figures = ", ".join(qn(name) for name in MONTH_SUMS)
    by_key = f"{qn('currency')}, {qn('dimension')}, {qn('key')}"
    by_dimension = f"{qn('currency')}, {qn('dimension')}"
    monthly, totals, daily = (qn(model._meta.db_table) for model in (
        MonthlyBreakdown, MonthlyBreakdownTotal, DailyBreakdown))
    month, day = qn("month"), qn("day")
    # Our tables' and columns' names, quoted; the values are parameters.
    write_keys = (f"INSERT INTO {monthly} ({month}, {by_key}, {qn('label')}, {figures}) "  # noqa: S608
                  f"SELECT %s, {by_key}, MAX({qn('label')}), {sums} FROM {daily} "
                  f"WHERE {day} >= %s AND {day} <= %s GROUP BY {by_key}")
    write_totals = (f"INSERT INTO {totals} ({month}, {by_dimension}, {figures}) "  # noqa: S608
                    f"SELECT {month}, {by_dimension}, {sums} FROM {monthly} "
                    f"WHERE {month} = %s GROUP BY {month}, {by_dimension}")
    adapt = connection.ops.adapt_datefield_value
    written = 0
    for first in sorted({month_start(day) for day in months}):
        MonthlyBreakdownTotal.objects.filter(month=first).delete()
        MonthlyBreakdown.objects.filter(month=first).delete()
        with connection.cursor() as cursor:
            cursor.execute(write_keys, [adapt(first), adapt(first), adapt(month_end(first))])
            cursor.execute(write_totals, [adapt(first)])
        written += 1
    return written


def _months_to_write(run: list[dt.date], before: dt.date | None,
                     through: dt.date) -> list[dt.date]:
    """The complete months whose rows must be written after counting ``run`` (days of one
    month), the latest counted day having gone from ``before`` to ``through``: the run's month
    if it is complete, and every month whose last day was passed for the first time (one
    counted in part before and never finished, when days were skipped)."""
    months = set()
    if month_end(run[0]) <= through:
        months.add(month_start(run[0]))
    if before is not None and before < through:
        month = month_start(before)
        while month_end(month) <= through:
            if month_end(month) > before:
                months.add(month)
            month = month_end(month) + dt.timedelta(days=1)
    return sorted(months)


def rebuild_days(days: Iterable[dt.date], *, now: dt.datetime | None = None) -> int:
    """Recompute ``days`` (past days) from the orders and replace their rows, then the rows of
    the complete months they change (``rebuild_months``), a month at a time, each in one
    transaction; returns how many days were written. Each day gets at least its row of zeros in
    the store currency. Idempotent."""
    from django.conf import settings

    now = now or timezone.now()
    current = today()
    wanted = [day for day in days if day < current]
    written = 0
    through = DailySales.objects.aggregate(last=Max("day"))["last"] if wanted else None
    for run in _chunks(wanted):
        computed = compute(run[0], run[-1])
        with transaction.atomic():
            DailyBreakdown.objects.filter(day__gte=run[0], day__lte=run[-1]).delete()
            DailySales.objects.filter(day__gte=run[0], day__lte=run[-1]).delete()
            sales, breakdowns = [], []
            for day in run:
                found = {currency: figures for (d, currency), figures in computed.items()
                         if d == day}
                found.setdefault(settings.STORE_CURRENCY, DayFigures())
                for currency, figures in found.items():
                    row, parts = _rows_of(day, currency, figures, now)
                    sales.append(row)
                    breakdowns.extend(parts)
            DailySales.objects.bulk_create(sales, batch_size=1000)
            DailyBreakdown.objects.bulk_create(breakdowns, batch_size=2000)
            before, through = through, max(through or run[-1], run[-1])
            rebuild_months(_months_to_write(run, before, through))
        written += len(run)
    return written


def days_to_refresh(now: dt.datetime | None = None) -> list[dt.date]:
    """The past days the job must (re)compute now (see the module's docstring)."""
    now = now or timezone.now()
    yesterday = local_day(now) - dt.timedelta(days=1)
    state = DailySales.objects.aggregate(last_day=Max("day"), last_run=Max("computed_at"))
    days: set[dt.date] = set()
    if state["last_day"] is None:
        # Never counted: every day since the first sale or refund.
        first = [moment for moment in (
            Order.objects.filter(paid_at__isnull=False).aggregate(first=Min("paid_at"))["first"],
            Refund.objects.aggregate(first=Min("created_at"))["first"],
        ) if moment is not None]
        start = min(local_day(moment) for moment in first) if first else yesterday
    else:
        start = state["last_day"] + dt.timedelta(days=1)
        since = state["last_run"] - TOUCHED_MARGIN
        touched = Order.objects.filter(updated_at__gte=since)
        for moment in touched.filter(paid_at__isnull=False).values_list("paid_at", flat=True):
            days.add(local_day(moment))
        for moment in Refund.objects.filter(order__in=touched.values("pk")).values_list(
                "created_at", flat=True):
            days.add(local_day(moment))
    day = start
    while day <= yesterday:
        days.add(day)
        day += dt.timedelta(days=1)
    return sorted(day for day in days if day <= yesterday)


def refresh_rollup() -> str:
    """The scheduled job: count the days not counted yet and those touched since the last
    run."""
    days = days_to_refresh()
    written = rebuild_days(days)
    if days:
        logger.info("sales rollup: %d days recomputed (%s to %s)", written, days[0], days[-1])
    return f"{written} days recomputed"
