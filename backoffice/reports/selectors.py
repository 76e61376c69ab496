"""Reading sales: the rollup for the days it has counted, the orders (live) for the rest.

The rollup has counted every day up to its latest row (``DailySales``; the job writes a row for
every day it counts, zeros too). A day after that (today, and yesterday until the job has run
after midnight, or more if the job is behind) is computed live from the orders with the same
code the job uses (``rollup.compute``), so the two always agree. Every reader here costs a fixed
number of queries, whatever the number of orders: the dashboard five, a report three to five.

A breakdown (by product, category, provider, coupon) reads the whole months of its range from
``MonthlyBreakdown`` (kept for complete months: a month whose last day the rollup has counted)
and the days before and after them from ``DailyBreakdown``, as one ``UNION ALL``: a year by
product adds up about 200,000 rows at 200k orders a year instead of 335,000. A report page
ranks the keys on net sales and units alone and counts them in the same statement
(``COUNT(*) OVER ()``, no ``COUNT(DISTINCT)`` pass), then adds up every figure of the keys it
shows only, with the totals from ``MonthlyBreakdownTotal`` (``_stored``). A month's rows are
its days' rows added up, so the figures are the same to the cent (tests/test_reports.py checks
them against a live computation).

Money stays ``Decimal``; figures are in the store currency (``STORE_CURRENCY``). Orders in
another currency (from before the store changed its currency) are left out and counted apart
(``Series.other_currency_orders``), never added to the store currency's figures.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Context, Decimal

from django.conf import settings
from django.db import connection
from django.db.models import (
    CharField,
    F,
    IntegerField,
    Max,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.utils import timezone

from backoffice.admin_filters import start_of_day
from backoffice.reports.models import (
    DailyBreakdown,
    DailySales,
    Dimension,
    MonthlyBreakdown,
    MonthlyBreakdownTotal,
)
from backoffice.reports.rollup import (
    ZERO,
    Computed,
    Figures,
    aggregate,
    compute,
    local_day,
    month_end,
    month_start,
    read_rows,
)

SUMMED = ("orders", "items", "gross", "discounts", "shipping", "refunds", "refunded_items")
# Ranked by the stored net (gross - discounts + shipping - refunds, written with the row).
RANKED = (*SUMMED, "net")


def store_currency() -> str:
    return settings.STORE_CURRENCY


def _latest_day_q() -> Q:
    """The latest counted day, as a condition: brings the rollup's last row along with a
    range's rows, in the same query."""
    return Q(day=Subquery(DailySales.objects.order_by("-day").values("day")[:1]))


def counted_through() -> dt.date | None:
    """The last day the rollup has counted (None: it never ran)."""
    return DailySales.objects.aggregate(last=Max("day"))["last"]


def _live(first: dt.date, last: dt.date, through: dt.date | None, *, now: dt.datetime,
          categories: bool) -> tuple[Computed, dt.date | None]:
    """The days of [first, last] the rollup has not counted, computed from the orders (one
    query, two with ``categories``), and the first such day (None: none)."""
    start = first if through is None else max(first, through + dt.timedelta(days=1))
    if start > last:
        return {}, None
    return compute(start, last, until=now, categories=categories), start


# --- A series of days -----------------------------------------------------------------------


@dataclass
class Series:
    """Each day's figures in the store currency over [first, last] (days with no sales have
    zero figures), how far the rollup counted, and the orders in other currencies left out."""

    first: dt.date
    last: dt.date
    days: dict[dt.date, Figures]
    counted_through: dt.date | None
    live_from: dt.date | None
    other_currency_orders: int = 0
    other_currencies: list[str] = field(default_factory=list)

    def total(self, first: dt.date | None = None, last: dt.date | None = None) -> Figures:
        first, last = first or self.first, last or self.last
        total = Figures()
        for day, figures in self.days.items():
            if first <= day <= last:
                total.add(figures)
        return total


def daily_series(first: dt.date, last: dt.date, *, now: dt.datetime | None = None) -> Series:
    """Sales per day over [first, last]: two queries (the rollup's rows, then the orders of the
    days it has not counted), one when the rollup covers the whole range."""
    now = now or timezone.now()
    currency = store_currency()
    rows = list(
        DailySales.objects.filter(Q(day__gte=first, day__lte=last) | _latest_day_q())
        .order_by("day").values("day", "currency", *SUMMED, "refund_count")
    )
    through = max((row["day"] for row in rows), default=None)
    days = {first + dt.timedelta(days=n): Figures()
            for n in range((last - first).days + 1)}
    other_orders, others = 0, set()
    for row in rows:
        if not first <= row["day"] <= last:
            continue
        if row["currency"] != currency:
            other_orders += row["orders"]
            if row["orders"]:
                others.add(row["currency"])
            continue
        days[row["day"]] = Figures.of_row(row)
    live, live_from = _live(first, last, through, now=now, categories=False)
    for (day, day_currency), figures in live.items():
        if day_currency != currency:
            other_orders += figures.totals.orders
            if figures.totals.orders:
                others.add(day_currency)
            continue
        days[day] = Figures().add(figures.totals)
    return Series(first, last, days, through, live_from, other_orders, sorted(others))


# --- Breakdowns -------------------------------------------------------------------------------


@dataclass
class Breakdown:
    """The figures of one dimension over a period: ``rows`` ``[(key, Figures)]`` best first
    (by net sales), at most ``limit`` of them; ``total`` over every key and ``count`` of keys."""

    dimension: str
    rows: list[tuple[str, Figures]]
    total: Figures
    count: int
    counted_through: dt.date | None
    live_from: dt.date | None


def _figures_of(row: dict) -> Figures:
    return Figures.of_row(row)


def _summed(row: dict) -> Figures:
    """Figures from a grouped row's ``sum_<name>`` columns (and ``top_label``)."""
    return Figures.of_row({**{name: row.get(f"sum_{name}") for name in SUMMED},
                           "label": row.get("top_label", "")})


MONEY = frozenset({"gross", "discounts", "shipping", "refunds", "net"})
# SQLite sums decimals as floats with 15 significant digits, as Django's own converter reads them.
_FROM_FLOAT = Context(prec=15).create_decimal_from_float


def _value(name: str, value):
    """A summed column as Python has it: money as ``Decimal`` (PostgreSQL sums ``numeric`` to
    ``Decimal``; SQLite to ``float`` or ``int``), counts as ``int``."""
    if value is None or name not in MONEY or isinstance(value, Decimal):
        return value
    return _FROM_FLOAT(value) if isinstance(value, float) else Decimal(value)


def whole_months(first: dt.date, last: dt.date) -> tuple[dt.date, dt.date] | None:
    """The first days of the first and the last calendar month lying wholly in [first, last]
    (None: no whole month)."""
    first_month = first if first.day == 1 else month_end(first) + dt.timedelta(days=1)
    last_month = month_start(last) if last == month_end(last) else month_start(
        month_start(last) - dt.timedelta(days=1))
    return (first_month, last_month) if first_month <= last_month else None


@dataclass
class _Parts:
    """The rollup's rows of one dimension over a span of counted days, as querysets to
    ``UNION ALL``: ``keys`` per key (the whole months from ``MonthlyBreakdown``, the days
    before and after them from ``DailyBreakdown``), ``totals`` the same added up over every key
    (the whole months from ``MonthlyBreakdownTotal``, the days as they are)."""

    keys: list[QuerySet]
    totals: list[QuerySet]


def _stored_parts(dimension: str, currency: str, first: dt.date, stop: dt.date) -> _Parts:
    """The rollup's rows of ``dimension`` over [first, stop] (days it has counted, so every
    whole month in there is complete)."""
    daily = DailyBreakdown.objects.filter(dimension=dimension, currency=currency).order_by()
    months = whole_months(first, stop)
    if months is None:
        days = [daily.filter(day__gte=first, day__lte=stop)]
        return _Parts(keys=days, totals=days)
    first_month, last_month = months
    in_months = {"dimension": dimension, "currency": currency, "month__gte": first_month,
                 "month__lte": last_month}
    days = []
    if first < first_month:
        days.append(daily.filter(day__gte=first, day__lt=first_month))
    if month_end(last_month) < stop:
        days.append(daily.filter(day__gt=month_end(last_month), day__lte=stop))
    return _Parts(
        keys=[MonthlyBreakdown.objects.filter(**in_months).order_by(), *days],
        totals=[MonthlyBreakdownTotal.objects.filter(**in_months).order_by(), *days],
    )


def _union(parts: list[QuerySet]) -> tuple[str, list]:
    """The parts (``values_list`` querysets of the same columns) as one ``UNION ALL``, to
    select from: ``(sql, params)``."""
    sqls, params = [], []
    for part in parts:
        sql, part_params = part.query.sql_with_params()
        sqls.append(sql)
        params.extend(part_params)
    return f"({' UNION ALL '.join(sqls)}) {connection.ops.quote_name('parts')}", params


def _ranking_parts(parts: list[QuerySet]) -> list[QuerySet]:
    """What the ranking needs of each part, ``(key, r_items, r_net)``: the whole months
    already added up per key (on PostgreSQL an index-only scan of ``monthly_breakdown_by_key``
    in key order, no hashing), the days as they are."""
    return [
        part.values("key").annotate(r_items=Sum("items"), r_net=Sum("net"))
        .values_list("key", "r_items", "r_net")
        if part.model is MonthlyBreakdown else
        part.annotate(r_items=F("items"), r_net=F("net")).values_list("key", "r_items", "r_net")
        for part in parts
    ]


def _sql(columns: str, source: str, rest: str = "") -> str:
    """A ``SELECT`` of our own columns from ``_union``'s parts: every name in it is ours, quoted
    by the backend, and every value a parameter."""
    return f"SELECT {columns} FROM {source} {rest}"  # noqa: S608


def _select(sql: str, params: list) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [{name: _value(name.removeprefix("sum_"), value)
                 for name, value in zip(names, row, strict=True)} for row in cursor.fetchall()]


@dataclass
class _Stored:
    """The rollup's part of a breakdown: ``rows`` ``[(key, Figures)]``, ``total`` and
    ``count`` of keys (with a ``limit`` and ``totals``), and ``skipped``: keys sold live that
    have stored figures but were left out, being outside the top ``limit`` once their live
    figures are added (so not "sold live only" either)."""

    rows: list[tuple[str, Figures]] = field(default_factory=list)
    total: Figures = field(default_factory=Figures)
    count: int = 0
    skipped: set[str] = field(default_factory=set)


def _rank(pair: tuple[str, Figures]) -> tuple:
    """The page's order: net sales, then units, then key."""
    return (-pair[1].net, -pair[1].items, pair[0])


def _stored(parts: _Parts, *, limit: int | None, live: dict[str, Figures],
            totals: bool) -> _Stored:
    """The stored rows' figures per key (``live``: the figures of the live days per key).

    - Without a ``limit``: every key, in one statement (``total`` and ``count`` are left to the
      caller, who has every row).
    - With one, without ``totals`` (the dashboard's ten best of 30 days): one statement adds up
      every figure of the keys sold live (all of them) and of the best ``limit`` others.
    - With ``totals`` (a report page), two statements. The ranking adds up only net sales and
      units per key (adding up eight ``numeric`` columns for 70,000 products a year is most of
      the cost), for the keys sold live and the best ``limit`` others (net sales, then units,
      then key: the page's order), and counts the keys (``COUNT(*) OVER ()``). Merged with the
      live figures, they give the top ``limit`` exactly; the second statement adds up every
      figure of those keys only, and the totals (whole months from their totals rows).
    """
    qn = connection.ops.quote_name
    key = qn("key")
    sums = ", ".join(f"SUM({qn(name)}) AS {qn(f'sum_{name}')}" for name in RANKED)
    figures = f"MAX({qn('label')}) AS {qn('top_label')}, {sums}"
    if limit is None:
        source, params = _union([part.values_list("key", "label", *RANKED)
                                 for part in parts.keys])
        found = _select(_sql(f"{key}, {figures}", source, f"GROUP BY {key}"), params)
        return _Stored(rows=[(row["key"], _summed(row)) for row in found])
    live_keys = list(live)
    order, order_params = "", []
    if live_keys:
        order = f"CASE WHEN {key} IN ({', '.join(['%s'] * len(live_keys))}) THEN 0 ELSE 1 END, "
        order_params = list(live_keys)
    order += f"{qn('sum_net')} DESC, {qn('sum_items')} DESC, {key} LIMIT %s"
    order_params.append(limit + len(live_keys))
    if not totals:
        source, params = _union([part.values_list("key", "label", *RANKED)
                                 for part in parts.keys])
        found = _select(_sql(f"{key}, {figures}", source, f"GROUP BY {key} ORDER BY {order}"),
                        params + order_params)
        return _Stored(rows=[(row["key"], _summed(row)) for row in found])
    ranking, ranking_params = _union(_ranking_parts(parts.keys))
    ranked = _select(_sql(
        f"{key}, SUM({qn('r_net')}) AS {qn('sum_net')}, SUM({qn('r_items')}) AS "
        f"{qn('sum_items')}, COUNT(*) OVER () AS {qn('keys')}", ranking,
        f"GROUP BY {key} ORDER BY {order}",
    ), ranking_params + order_params)
    if not ranked:
        return _Stored()
    # The merged top ``limit``: the keys ranked, with their live figures if any, and the keys
    # sold live only.
    stored_rank = {row["key"]: (row["sum_net"], row["sum_items"]) for row in ranked}
    order_of = {}
    for each in stored_rank.keys() | live.keys():
        net, items = stored_rank.get(each, (ZERO, 0))
        if each in live:
            net, items = net + live[each].net, items + live[each].items
        order_of[each] = (-net, -items, each)
    best = set(sorted(order_of, key=order_of.__getitem__)[:limit])
    chosen = [each for each in stored_rank if each in best]
    # The chosen keys' figures, then one row of totals.
    total_source, params = _union([part.values_list(*RANKED) for part in parts.totals])
    sql = _sql(f"NULL AS {qn('chosen_key')}, NULL AS {qn('top_label')}, {sums}", total_source)
    if chosen:
        source, chosen_params = _union([part.filter(key__in=chosen).values_list(
            "key", "label", *RANKED) for part in parts.keys])
        sql = _sql(f"{key} AS {qn('chosen_key')}, {figures}", source,
                   f"GROUP BY {key} UNION ALL {sql}")
        params = chosen_params + params
    stored = _Stored(count=ranked[0]["keys"],
                     skipped=(stored_rank.keys() & live.keys()) - best)
    for row in _select(sql, params):
        if row["chosen_key"] is None:
            stored.total = _summed(row)
        else:
            stored.rows.append((row["chosen_key"], _summed(row)))
    return stored


def breakdown(dimension: str, first: dt.date, last: dt.date, *, limit: int | None = None,
              now: dt.datetime | None = None, through: dt.date | None | bool = False,
              live: Computed | None = None, totals: bool = True) -> Breakdown:
    """``dimension``'s figures over [first, last], best first. Queries: how far the rollup
    counted (unless ``through`` is given), the live days (unless ``live`` is given: figures
    already computed for the days after ``through``), the best ``limit`` keys, and with a
    ``limit`` the totals over all keys. Exact with a limit too: the keys sold on the live days
    are read from the rollup whatever their rank there, then merged, sorted and cut. Without
    ``totals``, the limited breakdown's ``total`` and ``count`` are left out. The rollup's
    part reads whole months from ``MonthlyBreakdown`` and the other days from
    ``DailyBreakdown`` (``_stored_parts``)."""
    now = now or timezone.now()
    currency = store_currency()
    if through is False:
        through = counted_through()
    if live is None:
        live, _ = _live(first, last, through, now=now,
                        categories=dimension == Dimension.CATEGORY)
    live_from = min((day for day, _ in live), default=None)
    merged: dict[str, Figures] = defaultdict(Figures)
    for (day, day_currency), figures in live.items():
        if day_currency == currency and first <= day <= last and (
                through is None or day > through):
            for key, item in figures.breakdowns[dimension].items():
                merged[key].add(item)
    rows: list[tuple[str, Figures]] = []
    total = Figures()
    count = 0
    if through is not None and first <= through:
        parts = _stored_parts(dimension, currency, first, min(last, through))
        stored = _stored(parts, limit=limit, live=merged, totals=totals)
        rows, total, count = stored.rows, stored.total, stored.count
        known = {key for key, _ in rows} | stored.skipped
    else:
        known = set()
    for key, figures in rows:
        if key in merged:
            figures.add(merged[key])
    # Sold on the live days only: keys the rollup never counted in the range.
    extra = [(key, figures) for key, figures in merged.items() if key not in known]
    rows.extend(extra)
    if limit is None:
        total = Figures()
        for _key, figures in rows:
            total.add(Figures(**{name: getattr(figures, name) for name in SUMMED}))
        count = len(rows)
    else:
        for figures in merged.values():
            total.add(Figures(**{name: getattr(figures, name) for name in SUMMED}))
        count += len(extra)
    rows.sort(key=_rank)
    if limit is not None:
        rows = rows[:limit]
    return Breakdown(dimension, rows, total, count, through, live_from)


# --- The dashboard ----------------------------------------------------------------------------


@dataclass
class Change:
    value: Decimal | int
    previous: Decimal | int

    @property
    def percent(self) -> Decimal | None:
        """The change in percent, one decimal; None when there is nothing to compare with."""
        if not self.previous:
            return None
        return ((Decimal(self.value) - Decimal(self.previous)) * 100
                / abs(Decimal(self.previous))).quantize(Decimal("0.1"))


@dataclass
class DashboardSales:
    today: dt.date
    now: dt.datetime
    today_figures: Figures
    yesterday_same_time: Figures
    periods: dict[int, tuple[Figures, Figures]]  # days: (last N whole days, the N before)
    chart: list[tuple[dt.date, Figures]]  # the last 30 days, today included
    top_products: list[tuple[str, Figures]]
    providers: list[tuple[str, Figures]]
    counted_through: dt.date | None
    other_currency_orders: int = 0


CHART_DAYS = 30
PERIODS = (7, 30)
TOP_PRODUCTS = 10


def dashboard_sales(now: dt.datetime | None = None) -> DashboardSales:
    """Everything the dashboard says about sales, in three queries whatever the store's size:

    1. the rollup's rows of the last 60 days and its latest row, with its payment-provider rows
       of the last 30 (one ``UNION ALL``);
    2. the orders and refunds of yesterday and today (and of any day the rollup has not
       counted): today's figures, yesterday's up to the same time of day;
    3. the best products of the last 30 whole days.
    """
    now = now or timezone.now()
    today = local_day(now)
    yesterday = today - dt.timedelta(days=1)
    currency = store_currency()
    longest = max(PERIODS)
    first = today - dt.timedelta(days=2 * longest)
    window_first = today - dt.timedelta(days=longest)
    columns = ("day", "currency", "dim", "key", *SUMMED, "refund_count")
    daily = DailySales.objects.filter(
        Q(day__gte=first, day__lt=today) | _latest_day_q(),
    ).annotate(
        dim=Value("", output_field=CharField()), key=Value("", output_field=CharField()),
    ).values_list(*columns).order_by()
    providers = DailyBreakdown.objects.filter(
        dimension=Dimension.PROVIDER, currency=currency, day__gte=window_first, day__lt=today,
    ).annotate(
        dim=Value(Dimension.PROVIDER.value, output_field=CharField()),
        refund_count=Value(0, output_field=IntegerField()),
    ).values_list(*columns).order_by()
    rows = list(daily.union(providers, all=True))
    through = max((row[0] for row in rows if row[2] == ""), default=None)
    days: dict[dt.date, Figures] = defaultdict(Figures)
    provider_sums: dict[str, Figures] = defaultdict(Figures)
    other_orders = 0
    for day, row_currency, dim, key, *numbers in rows:
        values = dict(zip((*SUMMED, "refund_count"), numbers, strict=True))
        if dim:
            provider_sums[key].add(_figures_of(values))
        elif row_currency != currency:
            other_orders += values["orders"] if window_first <= day < today else 0
        elif first <= day < today:
            days[day] = _figures_of(values)
    # Yesterday is always read live too: today is compared with yesterday up to this time.
    live_first = yesterday if through is None else min(yesterday, through + dt.timedelta(days=1))
    live_first = max(live_first, first)
    rows_live = list(read_rows(start_of_day(live_first), now))
    live = aggregate(rows_live, categories=False)
    cutoff = now - dt.timedelta(days=1)
    same_time = aggregate([row for row in rows_live
                           if row[2] < cutoff and local_day(row[2]) == yesterday],
                          categories=False)
    for (day, day_currency), figures in live.items():
        if day_currency != currency:
            continue
        if through is None or day > through:
            days[day] = Figures().add(figures.totals)
            if window_first <= day < today:
                for key, item in figures.breakdowns[Dimension.PROVIDER].items():
                    provider_sums[key].add(item)
    periods = {}
    for length in PERIODS:
        current = Figures()
        previous = Figures()
        for n in range(1, length + 1):
            current.add(days.get(today - dt.timedelta(days=n), Figures()))
            previous.add(days.get(today - dt.timedelta(days=n + length), Figures()))
        periods[length] = (current, previous)
    chart = [(today - dt.timedelta(days=n), days.get(today - dt.timedelta(days=n), Figures()))
             for n in range(CHART_DAYS - 1, -1, -1)]
    # The best products of the 30 whole days before today: the rollup's, with the live days'.
    live_window = {key: value for key, value in live.items()
                   if window_first <= key[0] < today}
    top = breakdown(Dimension.PRODUCT, window_first, yesterday, limit=TOP_PRODUCTS, now=now,
                    through=through, live=live_window, totals=False)
    return DashboardSales(
        today=today, now=now,
        today_figures=Figures().add(live[today, currency].totals)
        if (today, currency) in live else Figures(),
        yesterday_same_time=Figures().add(same_time[yesterday, currency].totals)
        if (yesterday, currency) in same_time else Figures(),
        periods=periods, chart=chart, top_products=top.rows,
        providers=sorted(provider_sums.items(), key=lambda pair: (-pair[1].net, pair[0])),
        counted_through=through, other_currency_orders=other_orders,
    )
