"""The reports in the admin: one page per report over a range of the store's days (the last 30
by default), with CSV and XLSX exports of the same rows.

The pages live under the ``DailySales`` admin (``/admin/reports/dailysales/`` is the sales
report, ``.../<report>/`` the others) and need ``reports.view_reports``: anyone else gets 403.
Nothing here is edited: the rollup is written by its job only.

Exports go through django-import-export's formats, as the orders export does: CSV, and XLSX
whose numbers and dates stay numbers and dates (``SpreadsheetXLSX``); cells starting with "="
are escaped. They are made in the request (a report's rows are a few thousand at most).
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import tablib
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from import_export.formats.base_formats import CSV
from unfold.admin import ModelAdmin

from backoffice.admin_filters import parse_day
from backoffice.dashboard import orders_url, provider_names
from backoffice.money import format_money, store_currency
from backoffice.orders.admin import SpreadsheetXLSX
from backoffice.reports import reports
from backoffice.reports.models import DailySales
from backoffice.reports.rollup import today

PERMISSION = "reports.view_reports"
FORMATS = {"csv": CSV, "xlsx": SpreadsheetXLSX}


def _period(request: HttpRequest) -> tuple[dt.date, dt.date, list[str]]:
    """The range asked for (``from``, ``to``: the store's days, both included), the last 30
    days by default, at most ``MAX_DAYS`` long, never past today; and what was wrong with it."""
    current = today()
    errors = []
    last = current
    first = current - dt.timedelta(days=reports.DEFAULT_DAYS - 1)
    if request.GET.get("to"):
        day = parse_day(request.GET["to"])
        if day is None:
            errors.append(_("“%(value)s” is not a day; showing up to today.")
                          % {"value": request.GET["to"]})
        else:
            last = min(day, current)
    if request.GET.get("from"):
        day = parse_day(request.GET["from"])
        if day is None:
            errors.append(_("“%(value)s” is not a day; showing 30 days.")
                          % {"value": request.GET["from"]})
            first = last - dt.timedelta(days=reports.DEFAULT_DAYS - 1)
        else:
            first = day
    else:
        first = last - dt.timedelta(days=reports.DEFAULT_DAYS - 1)
    if first > last:
        first, last = last, first
    if (last - first).days + 1 > reports.MAX_DAYS:
        first = last - dt.timedelta(days=reports.MAX_DAYS - 1)
        errors.append(_("A report covers at most %(days)d days: from %(first)s.")
                      % {"days": reports.MAX_DAYS, "first": first})
    return first, last, errors


def _link(url: str, text) -> str:
    return format_html('<a href="{}" class="text-primary-600">{}</a>', url, text)


class _Links:
    """The admin lists behind a report's numbers."""

    def __init__(self, kind: str, first: dt.date, last: dt.date) -> None:
        self.kind, self.first, self.last = kind, first, last

    def period(self, start: dt.date, end: dt.date) -> dict[str, str]:
        return {"orders": orders_url(paid=(start, end)),
                "period": orders_url(paid=(start, end)),
                "refund_count": orders_url(refunded=f"{start}:{end}")}

    def key(self, key: str, figures) -> dict[str, str]:
        paid = (self.first, self.last)
        filters = {
            "products": {"product": key or None},
            "categories": {"category": key or "none"},
            "providers": {"payment_method": key or None},
            "coupons": {"coupon": key or None},
        }[self.kind]
        url = orders_url(paid=paid, **filters)
        return {"name": url, "orders": url}


def build(kind: str, first: dt.date, last: dt.date, group: str, *,
          limit: int | None = reports.PAGE_ROWS) -> reports.Report:
    links = _Links(kind, first, last)
    if kind == "sales":
        return reports.sales_report(first, last, group, links=links.period)
    if kind == "refunds":
        return reports.refunds_report(first, last, group, links=links.period)
    names = provider_names() if kind == "providers" else None
    return reports.breakdown_report(kind, first, last, links=links.key, names=names,
                                    limit=limit)


# --- Export -----------------------------------------------------------------------------------


def dataset(report: reports.Report) -> tablib.Dataset:
    """The report's rows with native values (dates, Decimals, integers): the page's columns,
    money columns named with the currency; periods as their first and last day; breakdowns
    with their key (product or category id, provider or coupon code)."""
    currency = store_currency()
    columns = []
    for column in report.columns:
        if column.name == "period":
            columns += ([("from", _("day"))] if report.group == "day"
                        else [("from", _("from")), ("to", _("to"))])
        elif column.name == "name":
            columns += [("name", str(column.label)), ("key", _("id or code"))]
        elif column.kind == "money":
            columns.append((column.name, f"{column.label} ({currency})"))
        elif column.kind == "percent":
            columns.append((column.name, f"{column.label} (%)"))
        else:
            columns.append((column.name, str(column.label)))
    data = tablib.Dataset(headers=[label for _name, label in columns])
    for row in report.rows:
        data.append([
            "" if row.values.get(name) is None else row.values[name] for name, _label in columns
        ])
    return data


def export(report: reports.Report, file_format: str) -> HttpResponse:
    fmt = FORMATS[file_format]()
    content = fmt.export_data(dataset(report))
    response = HttpResponse(content, content_type=fmt.get_content_type())
    group = f"-by-{report.group}" if report.group else ""
    name = f"{report.kind}{group}-{report.first}-to-{report.last}.{fmt.get_extension()}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --- The page ---------------------------------------------------------------------------------


def _cell(row: reports.Row, column: reports.Column):
    value = row.values.get(column.name)
    if column.kind == "money":
        text = format_money(value)
    elif column.kind == "percent":
        text = "" if value is None else f"{value}%"
    else:
        text = value
    link = row.links.get(column.name)
    return _link(link, text) if link and text not in ("", None) else text


def _table(report: reports.Report) -> dict:
    rows = report.rows[:reports.PAGE_ROWS]
    totals = reports._values(report.totals)
    total_cells = []
    for column in report.columns:
        if column.kind in ("text", "day"):
            total_cells.append(format_html("<strong>{}</strong>", _("Total")))
        elif column.kind == "money":
            total_cells.append(format_html("<strong>{}</strong>",
                                           format_money(totals.get(column.name))))
        elif column.kind == "percent":
            total_cells.append("")
        else:
            total_cells.append(format_html("<strong>{}</strong>", totals.get(column.name, "")))
    return {
        "headers": [str(column.label) for column in report.columns],
        "rows": [[_cell(row, column) for column in report.columns] for row in rows]
        + [total_cells],
    }


def _chart(report: reports.Report) -> str:
    import json

    if not report.chart:
        return ""
    return json.dumps({
        "labels": [label for label, _value in report.chart],
        # Floats only at the JSON edge, for the chart's bars; the table shows the Decimals.
        "datasets": [{"label": str(report.columns[-1].label if report.kind == "sales"
                                   else _("refunded")),
                      "data": [float(value) for _label, value in report.chart]}],
    })


@admin.register(DailySales)
class ReportsAdmin(ModelAdmin):
    """Not a list of rows: the reports. Read-only, for ``reports.view_reports``."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERMISSION)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm(PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view(self.report_view)
        return [
            path("", view, {"kind": "sales"}, name="reports_dailysales_changelist"),
            path("<slug:kind>/", view, name="reports_dailysales_report"),
        ]

    def report_view(self, request: HttpRequest, kind: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if kind not in reports.REPORT_TITLES:
            raise Http404
        first, last, errors = _period(request)
        group = request.GET.get("group", "day")
        if kind not in ("sales", "refunds"):
            group = ""
        elif group not in reports.GROUPS:
            group = "day"
        file_format = request.GET.get("format", "")
        if file_format:
            if file_format not in FORMATS:
                raise Http404
            return export(build(kind, first, last, group, limit=None), file_format)
        report = build(kind, first, last, group)
        return TemplateResponse(request, "admin/reports/report.html",
                                self._context(request, report, errors))

    def _url(self, kind: str, **params) -> str:
        name = "admin:reports_dailysales_changelist" if kind == "sales" else \
            "admin:reports_dailysales_report"
        url = reverse(name) if kind == "sales" else reverse(name, args=[kind])
        query = urlencode({k: v for k, v in params.items() if v})
        return f"{url}?{query}" if query else url

    def _context(self, request: HttpRequest, report: reports.Report, errors: list[str]) -> dict:
        params = {"from": report.first.isoformat(), "to": report.last.isoformat()}
        current = today()
        presets = [
            (_("Today"), current, current),
            (_("Last 7 days"), current - dt.timedelta(days=6), current),
            (_("Last 30 days"), current - dt.timedelta(days=29), current),
            (_("This month"), current.replace(day=1), current),
            (_("Last 12 months"), current - dt.timedelta(days=364), current),
        ]
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{report.title}: {report.first} – {report.last}",
            "report": report,
            "table": _table(report),
            "chart": _chart(report),
            "errors": errors,
            "currency": store_currency(),
            "time_zone": settings.TIME_ZONE,
            "tabs": [(str(title), self._url(kind, **params, group=report.group
                                            if kind in ("sales", "refunds") else ""),
                      kind == report.kind) for kind, title in reports.REPORT_TITLES.items()],
            "groups": [(key, str(label)) for key, label in reports.GROUPS.items()]
            if report.kind in ("sales", "refunds") else [],
            "presets": [(label, self._url(report.kind, group=report.group, **{
                "from": start.isoformat(), "to": end.isoformat()})) for label, start, end in
                presets],
            "exports": [(name.upper(), self._url(report.kind, **params, group=report.group,
                                                 format=name)) for name in FORMATS],
            "shown": min(len(report.rows), reports.PAGE_ROWS),
            "action_url": self._url(report.kind),
        }
