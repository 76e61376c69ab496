"""The reports: sales by day, week or month, by category, product, payment provider and coupon,
and refunds, over a range of the store's days. Each is built once as data (``Report``) and shown
as a page or written as CSV or XLSX (``exports``): the file has the page's columns, every row
(a page lists the best ``PAGE_ROWS``), and no total row, so that each column sums to the page's
total.

Figures follow ``backoffice.reports.models``: an order counts on the day it was paid, a refund
on the day it was made; net = gross - discounts + shipping - refunds. Products and categories
carry the goods' figures only (no shipping), and refunds of items (a refund given as an amount
alone is in the totals, against no product).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from backoffice.reports.models import Dimension
from backoffice.reports.rollup import Figures
from backoffice.reports.selectors import Breakdown, Series, breakdown, daily_series

PAGE_ROWS = 100
MAX_DAYS = 3 * 366  # the longest range a report covers
DEFAULT_DAYS = 30
GROUPS = {"day": _("Day"), "week": _("Week"), "month": _("Month")}


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    kind: str = "count"  # count | money | text | day | percent


MONEY_COLUMNS = [
    Column("gross", _("gross sales"), "money"),
    Column("discounts", _("discounts"), "money"),
    Column("shipping", _("shipping"), "money"),
    Column("refunds", _("refunds"), "money"),
    Column("net", _("net sales"), "money"),
]


@dataclass
class Row:
    values: dict
    links: dict[str, str] = field(default_factory=dict)
    key: str = ""


@dataclass
class Report:
    kind: str
    title: str
    first: dt.date
    last: dt.date
    columns: list[Column]
    rows: list[Row]  # every row (the page shows the first ``PAGE_ROWS``)
    totals: Figures
    count: int  # rows in all (a breakdown's page may hold fewer)
    group: str = ""
    counted_through: dt.date | None = None
    live_from: dt.date | None = None
    other_currency_orders: int = 0
    notes: list[str] = field(default_factory=list)
    chart: list[tuple[str, Decimal]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.rows) >= self.count


def _values(figures: Figures) -> dict:
    return {"orders": figures.orders, "items": figures.items, "gross": figures.gross,
            "discounts": figures.discounts, "shipping": figures.shipping,
            "refunds": figures.refunds, "refunded_items": figures.refunded_items,
            "refund_count": figures.refund_count, "net": figures.net}


# --- Periods ----------------------------------------------------------------------------------


def periods(first: dt.date, last: dt.date, group: str) -> list[tuple[dt.date, dt.date]]:
    """[first, last] cut into days, ISO weeks (Monday to Sunday) or calendar months; the first
    and last periods are cut at the range's ends."""
    out = []
    start = first
    while start <= last:
        if group == "week":
            end = start + dt.timedelta(days=6 - start.weekday())
        elif group == "month":
            following = (start.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
            end = following - dt.timedelta(days=1)
        else:
            end = start
        end = min(end, last)
        out.append((start, end))
        start = end + dt.timedelta(days=1)
    return out


def period_label(start: dt.date, end: dt.date, group: str) -> str:
    if group == "week":
        year, week, _weekday = start.isocalendar()
        return f"{year}-W{week:02d} ({date_format(start, 'M j')} – {date_format(end, 'M j')})"
    if group == "month":
        return date_format(start, "F Y")
    return date_format(start, "D, M j, Y")


# --- The reports ------------------------------------------------------------------------------


def _by_period(kind: str, series: Series, group: str, links) -> tuple[list[Row], Figures]:
    rows = []
    totals = Figures()
    for start, end in periods(series.first, series.last, group):
        figures = series.total(start, end)
        totals.add(figures)
        values = {"period": period_label(start, end, group), "from": start, "to": end,
                  **_values(figures)}
        rows.append(Row(values, links(start, end), key=start.isoformat()))
    return rows, totals


def sales_report(first: dt.date, last: dt.date, group: str = "day", *, links) -> Report:
    series = daily_series(first, last)
    rows, totals = _by_period("sales", series, group, links)
    return Report(
        kind="sales", title=str(_("Sales")), first=first, last=last, group=group,
        columns=[Column("period", GROUPS[group], "text"), Column("orders", _("orders")),
                 Column("items", _("items")), *MONEY_COLUMNS],
        rows=rows, totals=totals, count=len(rows),
        counted_through=series.counted_through, live_from=series.live_from,
        other_currency_orders=series.other_currency_orders,
        chart=[(row.values["period"], row.values["net"]) for row in rows],
    )


def refunds_report(first: dt.date, last: dt.date, group: str = "day", *, links) -> Report:
    series = daily_series(first, last)
    rows, totals = _by_period("refunds", series, group, links)
    for row in rows:
        # Refunds as a share of the period's sales (gross - discounts + shipping).
        sold = row.values["gross"] - row.values["discounts"] + row.values["shipping"]
        row.values["rate"] = (row.values["refunds"] * 100 / sold).quantize(Decimal("0.1")) \
            if sold > 0 else None
    sold = totals.gross - totals.discounts + totals.shipping
    return Report(
        kind="refunds", title=str(_("Refunds")), first=first, last=last, group=group,
        columns=[Column("period", GROUPS[group], "text"),
                 Column("refund_count", _("refunds made")),
                 Column("refunded_items", _("items refunded")),
                 Column("refunds", _("refunded"), "money"),
                 Column("rate", _("share of sales"), "percent"),
                 Column("net", _("net sales"), "money")],
        rows=rows, totals=totals, count=len(rows),
        counted_through=series.counted_through, live_from=series.live_from,
        other_currency_orders=series.other_currency_orders,
        notes=[str(_("Share of sales: refunds made in the period against the period's sales "
                     "(gross - discounts + shipping): %(rate)s%% in all.") % {
            "rate": (totals.refunds * 100 / sold).quantize(Decimal("0.1")) if sold > 0 else 0})],
        chart=[(row.values["period"], row.values["refunds"]) for row in rows],
    )


GOODS_COLUMNS = [
    Column("orders", _("orders")), Column("items", _("units sold")),
    Column("gross", _("gross sales"), "money"), Column("discounts", _("discounts"), "money"),
    Column("refunded_items", _("units refunded")), Column("refunds", _("refunds"), "money"),
    Column("net", _("net sales"), "money"),
]
ORDER_COLUMNS = [Column("orders", _("orders")), Column("items", _("items")), *MONEY_COLUMNS]

BREAKDOWNS = {
    # kind: (dimension, title, name column, columns, note)
    "products": (Dimension.PRODUCT, _("Sales by product"), _("product"), GOODS_COLUMNS,
                 _("Goods only: shipping is not a product's, and a refund given as an amount "
                   "without items counts in the sales report but against no product.")),
    "categories": (Dimension.CATEGORY, _("Sales by category"), _("category"), GOODS_COLUMNS,
                   _("By each product's primary category when the day was counted; goods "
                     "only, as by product.")),
    "providers": (Dimension.PROVIDER, _("Sales by payment provider"), _("provider"),
                  ORDER_COLUMNS, _("By the payment method the order was paid with; refunds "
                                   "by the method of the order refunded.")),
    "coupons": (Dimension.COUPON, _("Sales by coupon"), _("coupon"), ORDER_COLUMNS,
                _("Orders placed with a coupon; orders without one are not listed.")),
}


def breakdown_report(kind: str, first: dt.date, last: dt.date, *, links, names=None,
                     limit: int | None = PAGE_ROWS) -> Report:
    dimension, title, name_label, columns, note = BREAKDOWNS[kind]
    found: Breakdown = breakdown(dimension, first, last, limit=limit)
    names = names or {}
    rows = []
    for key, figures in found.rows:
        name = names.get(key) or figures.label or key or str(_("(none)"))
        rows.append(Row({"name": name, "key": key, **_values(figures)},
                        links(key, figures), key=key))
    return Report(
        kind=kind, title=str(title), first=first, last=last,
        columns=[Column("name", name_label, "text"), *columns], rows=rows,
        totals=found.total, count=found.count, counted_through=found.counted_through,
        live_from=found.live_from, notes=[str(note)],
    )


REPORT_TITLES = {
    "sales": _("Sales"), "categories": _("By category"), "products": _("By product"),
    "providers": _("By payment provider"), "coupons": _("By coupon"), "refunds": _("Refunds"),
}
