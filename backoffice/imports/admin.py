"""Imports and exports in the admin: upload, check (dry run), look at the report, then import.

Nothing heavy runs in a request: saving an upload queues the dry run, and "Run import" (a GET
shows what will be written and asks; only the POST of that form starts anything) queues the
import. An export is a job that leaves a file to download. The change page shows progress and
refreshes itself while a job runs, then the report: errors first (in red; while there is one the
import is neither offered nor accepted), warnings (amber), what the import writes, and the
preview, where rows with errors are marked refused.

Uploading (and checking) a file needs "add import"; running it, ``imports.run_import``; an
export, ``imports.run_export``. The services check them again.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.cache import cache
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.formats import number_format
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from backoffice import permissions
from backoffice.admin_access import permission_check, staff_actor
from backoffice.imports.models import ExportJob, ExportStatus, ImportJob, ImportStatus
from backoffice.imports.services import PREVIEW_ROWS, start_export_job, start_import_job
from backoffice.imports.tasks import enqueue_dry_run, progress_key

RUNNING = {ImportStatus.UPLOADED, ImportStatus.VALIDATING, ImportStatus.IMPORTING}
MAX_PROBLEMS_SHOWN = 200

# What an import counts (ImportResult.count): an entity, then what happened to how many.
ENTITY_NOUNS: dict[str, Callable[[int], str]] = {
    "categories": lambda n: ngettext("%(count)s category", "%(count)s categories", n),
    "products": lambda n: ngettext("%(count)s product", "%(count)s products", n),
    "variants": lambda n: ngettext("%(count)s variant", "%(count)s variants", n),
    "stock levels": lambda n: ngettext("%(count)s stock level", "%(count)s stock levels", n),
    "images": lambda n: ngettext("%(count)s image", "%(count)s images", n),
    "prices": lambda n: ngettext("%(count)s price", "%(count)s prices", n),
}
ACTION_WORDS = {
    "created": _("created"), "updated": _("updated"), "set": _("set"), "written": _("written"),
    "unchanged": _("unchanged"),
}
ACTION_LABELS = {"created": "success", "updated": "info", "set": "info", "written": "info"}
PREVIEW_HEADERS = {
    "row": _("row"), "handle": _("handle"), "product": _("product"),
    "product_action": _("product action"), "sku": _("SKU"), "variant": _("variant"),
    "price": _("price"), "variant_action": _("variant action"),
}


def grouped(n: int) -> str:
    """1234 -> "1,234" (the locale's separator), whatever USE_THOUSAND_SEPARATOR says."""
    return number_format(n, force_grouping=True)


def _things(entity: str, n: int) -> str:
    noun = ENTITY_NOUNS.get(entity)
    if noun is None:  # an entity this page does not know yet: no plural to get wrong
        return gettext("%(entity)s: %(count)s") % {"entity": entity, "count": grouped(n)}
    return noun(n) % {"count": grouped(n)}


def count_lines(counts: dict[str, dict[str, int]]) -> dict:
    """What an import writes ("3 products created") and what it leaves as it is."""
    writes, unchanged = [], []
    for entity, actions in counts.items():
        for what, n in actions.items():
            if not n:
                continue
            if what == "unchanged":
                unchanged.append(_things(entity, n))
            else:
                writes.append(gettext("%(things)s %(action)s") % {
                    "things": _things(entity, n), "action": ACTION_WORDS.get(what, what),
                })
    return {"writes": writes, "unchanged": ", ".join(unchanged)}


def _problems(result: dict, kind: str) -> dict | None:
    """The errors or warnings of a result: counted, and the first ones as row/column/message."""
    problems = result.get(kind) or []
    total = result.get(f"{kind[:-1]}_count", len(problems))
    if not total:
        return None
    # By row (the checks find them in passes, not in row order); a row's own order kept.
    shown = sorted(problems, key=lambda p: p.get("row") or 0)[:MAX_PROBLEMS_SHOWN]
    if kind == "errors":
        label = ngettext("%(count)s error", "%(count)s errors", total)
        cut = ngettext("Showing the first %(shown)s of %(count)s error.",
                       "Showing the first %(shown)s of %(count)s errors.", total)
    else:
        label = ngettext("%(count)s warning", "%(count)s warnings", total)
        cut = ngettext("Showing the first %(shown)s of %(count)s warning.",
                       "Showing the first %(shown)s of %(count)s warnings.", total)
    numbers = {"count": grouped(total), "shown": grouped(len(shown))}
    return {
        "count": total,
        "label": label % numbers,
        "rows": [
            {"row": grouped(p["row"]) if p.get("row") else gettext("file"),
             "column": p.get("column") or "", "message": p.get("message", "")}
            for p in shown
        ],
        "cut": cut % numbers if len(shown) < total else "",
    }


def _by_row(problems: list[dict]) -> dict[int, list[dict]]:
    rows: dict[int, list[dict]] = {}
    for problem in problems:
        if problem.get("row"):
            rows.setdefault(problem["row"], []).append(problem)
    return rows


def _preview(result: dict) -> dict | None:
    """The first rows as the import would take them; a row with an error is refused."""
    rows = list(result.get("preview") or [])
    if not rows:
        return None
    errors = _by_row(result.get("errors") or [])
    warnings = _by_row(result.get("warnings") or [])
    total = result.get("rows") or 0
    is_cut = len(rows) >= PREVIEW_ROWS and total > len(rows)
    # In the order the page names them: PostgreSQL's jsonb does not keep the keys' order.
    columns = [c for c in PREVIEW_HEADERS if c in rows[0]]
    columns += [c for c in rows[0] if c not in PREVIEW_HEADERS]
    # A row refused before it got a preview line (a bad price) still shows, as refused; the
    # preview stays the first rows of the file, no longer than it was.
    seen = {row.get("row") for row in rows}
    last = max((row.get("row") or 0) for row in rows)
    rows += [{"row": number} for number in errors
             if number not in seen and (not is_cut or number < last)]
    rows.sort(key=lambda row: row.get("row") or 0)
    if len(rows) > PREVIEW_ROWS:
        rows, is_cut = rows[:PREVIEW_ROWS], True
    lines = []
    for row in rows:
        number = row.get("row")
        refused = number in errors
        cells = []
        for column in columns:
            value = row.get(column, "")
            if column.endswith("_action"):
                if refused:
                    cells.append({"label": gettext("refused"), "variant": "danger"})
                elif value:
                    cells.append({"label": ACTION_WORDS.get(value, value),
                                  "variant": ACTION_LABELS.get(value, "")})
                else:
                    cells.append({"text": ""})
            elif column == "row" and value:
                cells.append({"text": grouped(value)})
            else:
                cells.append({"text": value})
        lines.append({
            "refused": refused,
            "cells": cells,
            "errors": [_problem_text(p) for p in errors.get(number, [])],
            "warnings": [_problem_text(p) for p in warnings.get(number, [])],
        })
    return {
        "headers": [PREVIEW_HEADERS.get(c, c.replace("_", " ")) for c in columns],
        "rows": lines,
        "refused": sum(1 for line in lines if line["refused"]),
        "cut": ngettext("Showing the first %(shown)s of %(count)s row.",
                        "Showing the first %(shown)s of %(count)s rows.", total)
        % {"shown": grouped(len(rows)), "count": grouped(total)} if is_cut else "",
    }


def _problem_text(problem: dict) -> str:
    column = problem.get("column")
    return f"{column}: {problem['message']}" if column else problem["message"]


def report(result: dict | None, *, with_preview: bool = False) -> dict | None:
    """A dry run's or an import's result, ready for the templates."""
    if not result:
        return None
    rows = result.get("rows") or 0
    skipped = result.get("skipped_rows") or 0
    read = ngettext("%(count)s row read", "%(count)s rows read", rows) % {"count": grouped(rows)}
    if skipped:
        read = gettext("%(read)s, %(skipped)s") % {"read": read, "skipped": ngettext(
            "%(count)s skipped", "%(count)s skipped", skipped) % {"count": grouped(skipped)}}
    return {
        "rows": read,
        "errors": _problems(result, "errors"),
        "warnings": _problems(result, "warnings"),
        "counts": count_lines(result.get("counts") or {}),
        "preview": _preview(result) if with_preview else None,
    }


def refusal(job: ImportJob) -> str:
    """Why "Run import" is refused for this job ("" when it may run)."""
    if job.can_run:
        return ""
    if job.status in {ImportStatus.UPLOADED, ImportStatus.VALIDATING}:
        return gettext("The file is still being checked; it can be imported once the check is "
                       "done.")
    if job.status == ImportStatus.IMPORTING:
        return gettext("This file is being imported already.")
    if job.status == ImportStatus.DONE:
        return gettext("This file has been imported already.")
    if job.status == ImportStatus.FAILED:
        return gettext("This import failed; upload the file again.")
    errors = (job.dry_run_result or {}).get("error_count") or 0
    if errors:
        return ngettext(
            "The dry run found %(count)s error: nothing is imported until the file is fixed "
            "and uploaded again.",
            "The dry run found %(count)s errors: nothing is imported until the file is fixed "
            "and uploaded again.", errors) % {"count": grouped(errors)}
    return gettext("Only a checked file without errors can be imported.")


@admin.register(ImportJob)
class ImportJobAdmin(ModelAdmin):
    list_display = ["__str__", "file_format", "status", "progress", "created_by", "created_at"]
    list_filter = ["status", "file_format"]
    list_select_related = ["created_by"]
    date_hierarchy = None
    actions_detail = ["run_import"]
    change_form_before_template = "imports/importjob_progress.html"
    add_fields = ["file", "file_format", "warehouse_code"]
    # The dry run's and the import's reports are drawn above the fields (the template).
    readonly_after_upload = [
        "file", "file_format", "warehouse_code", "kind", "status", "progress", "error",
        "created_by", "created_at", "finished_at",
    ]

    def get_fields(self, request: HttpRequest, obj: ImportJob | None = None):
        return self.add_fields if obj is None else self.readonly_after_upload

    def get_readonly_fields(self, request: HttpRequest, obj: ImportJob | None = None):
        return [] if obj is None else self.readonly_after_upload

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("created_by")

    def get_object(self, request: HttpRequest, object_id, from_field=None):
        """Once per request: the change page, its report and its actions all need the job."""
        memo = request.__dict__.setdefault("_import_jobs", {})
        key = (str(object_id), from_field)
        if key not in memo:
            memo[key] = super().get_object(request, object_id, from_field)
        return memo[key]

    has_run_permission = permission_check(permissions.RUN_IMPORT)

    def get_actions_detail(self, request: HttpRequest, object_id):
        found = super().get_actions_detail(request, object_id)
        job = self.get_object(request, unquote(str(object_id)))
        if job is None or not job.can_run:  # not offered; the view refuses it too
            found = [a for a in found if not a.action_name.endswith("_run_import")]
        return found

    def save_model(self, request, obj: ImportJob, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            enqueue_dry_run(obj)
            messages.info(request, _("The file is being checked; this page shows the result."))

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(
            reverse("admin:imports_importjob_change", args=[obj.pk])
        )

    def _live_progress(self, obj: ImportJob) -> tuple[int, int | None]:
        live = cache.get(progress_key(obj.pk)) if obj.status in RUNNING else None
        if live:
            return live["done"], live["total"] or obj.total_rows
        return obj.processed_rows, obj.total_rows

    @display(description=_("progress"))
    def progress(self, obj: ImportJob) -> str:
        done, total = self._live_progress(obj)
        if total:
            return ngettext(
                "%(done)s / %(total)s row (%(percent)s%%)",
                "%(done)s / %(total)s rows (%(percent)s%%)", total,
            ) % {"done": grouped(done), "total": grouped(total),
                 "percent": min(100, round(100 * done / total))}
        if done:
            return ngettext("%(count)s row", "%(count)s rows", done) % {"count": grouped(done)}
        return "-"

    def _status(self, obj: ImportJob) -> dict:
        """The bar at the top: how far the job is, and whether the file is good."""
        done, total = self._live_progress(obj)
        percent = min(100, round(100 * done / total)) if total else 0
        errors = (obj.dry_run_result or {}).get("error_count") or 0
        status = {"title": obj.get_status_display(), "percent": percent, "tone": "primary",
                  "badge": f"{percent}%", "badge_variant": ""}
        if obj.status in RUNNING:
            status["note"] = ngettext(
                "%(count)s row so far; this page refreshes every 3 seconds.",
                "%(count)s rows so far; this page refreshes every 3 seconds.", done,
            ) % {"count": grouped(done)}
        elif obj.status == ImportStatus.VALIDATED and errors:
            status.update(
                title=gettext("Checked: the file has errors, nothing can be imported"),
                percent=100, tone="danger", badge_variant="danger",
                badge=ngettext("%(count)s error", "%(count)s errors", errors)
                % {"count": grouped(errors)},
            )
        elif obj.status == ImportStatus.VALIDATED:
            status.update(title=gettext("Checked: no errors, ready to import"), percent=100,
                          badge=gettext("ready"), badge_variant="success")
        elif obj.status == ImportStatus.DONE:
            status.update(percent=100, badge=gettext("imported"), badge_variant="success")
        elif obj.status == ImportStatus.FAILED:
            status.update(percent=100, tone="danger", badge=gettext("failed"),
                          badge_variant="danger", error=obj.error)
        return status

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = extra_context or {}
        if object_id:
            obj = self.get_object(request, unquote(object_id))
            if obj is not None:
                extra_context["import_job"] = {
                    "running": obj.status in RUNNING,
                    "status": self._status(obj),
                    "can_run": obj.can_run and self.has_run_permission(request),
                    "run_url": reverse("admin:imports_importjob_run_import", args=[obj.pk]),
                    "dry_run": report(obj.dry_run_result, with_preview=True),
                    "result": report(obj.result),
                    # What jobs said about this import later (the sold-out job's skips).
                    "notes": [
                        {**note, "at": parse_datetime(note["at"]) if note.get("at") else None}
                        for note in obj.notes
                    ],
                }
        return super().changeform_view(request, object_id, form_url, extra_context)

    @action(description=_("Run import"), url_path="run-import", permissions=["run"],
            icon="upload")
    def run_import(self, request: HttpRequest, object_id) -> HttpResponse:
        """A GET shows what the import will write and asks; only its form's POST starts it."""
        job = get_object_or_404(ImportJob, pk=unquote(str(object_id)))
        back = HttpResponseRedirect(reverse("admin:imports_importjob_change", args=[job.pk]))
        refused = refusal(job)
        if refused:
            messages.error(request, refused)
            return back
        if request.method != "POST":
            return TemplateResponse(request, "imports/importjob_run_confirm.html", {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": job,
                "title": gettext("Run import"),
                "job": job,
                "job_url": back.url,
                "report": report(job.dry_run_result),
            })
        # Only one POST gets the job from "checked" to "importing" (a double click, two tabs).
        if not start_import_job(job, actor=staff_actor(request)):
            messages.error(request, gettext("This file is being imported already."))
            return back
        messages.success(request, _("The import is running; this page shows its progress."))
        return back


@admin.register(ExportJob)
class ExportJobAdmin(ModelAdmin):
    list_display = ["__str__", "kind", "file_type", "status", "rows", "created_by", "created_at"]
    list_select_related = ["created_by"]
    actions_detail = ["download"]
    add_fields = ["kind", "file_type"]
    readonly_after = ["kind", "file_type", "status", "rows", "error", "created_by", "created_at",
                      "finished_at"]

    def get_fields(self, request, obj=None):
        return self.add_fields if obj is None else self.readonly_after

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_after

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.RUN_EXPORT)

    def save_model(self, request, obj: ExportJob, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.created_by = request.user
        start_export_job(obj, actor=staff_actor(request))

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(reverse("admin:imports_exportjob_change", args=[obj.pk]))

    @action(description=_("Download"), url_path="download", permissions=["view"])
    def download(self, request: HttpRequest, object_id: int):
        job = get_object_or_404(ExportJob, pk=object_id)
        if job.status != ExportStatus.DONE or not job.file:
            messages.error(request, _("The export is not ready yet."))
            return HttpResponseRedirect(reverse("admin:imports_exportjob_change", args=[object_id]))
        name = job.file.name.rsplit("/", 1)[-1]
        return FileResponse(job.file.open("rb"), as_attachment=True, filename=name)
