"""Imports and exports in the admin: upload, check (dry run), look at the preview, then import.

Nothing heavy runs in a request: saving an upload queues the dry run, "Run import" queues the
import, and an export is a job that leaves a file to download. The change page shows progress
and refreshes itself while a job runs.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.cache import cache
from django.http import FileResponse, HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from backoffice.imports.models import ExportJob, ExportStatus, ImportJob, ImportStatus
from backoffice.imports.tasks import enqueue_dry_run, enqueue_export, enqueue_import, progress_key

RUNNING = {ImportStatus.UPLOADED, ImportStatus.VALIDATING, ImportStatus.IMPORTING}
MAX_ROWS_SHOWN = 200


def _problem_table(problems: list[dict], title: str) -> str:
    if not problems:
        return ""
    rows = format_html_join(
        "",
        "<tr><td class='px-3 py-1'>{}</td><td class='px-3 py-1'>{}</td>"
        "<td class='px-3 py-1'>{}</td></tr>",
        ((p["row"] or "file", p["column"], p["message"]) for p in problems[:MAX_ROWS_SHOWN]),
    )
    return format_html(
        "<h3 class='font-semibold mt-2'>{}</h3><table class='text-sm'><thead><tr>"
        "<th class='px-3 text-left'>row</th><th class='px-3 text-left'>column</th>"
        "<th class='px-3 text-left'>message</th></tr></thead><tbody>{}</tbody></table>",
        title, rows,
    )


def _summary(result: dict | None) -> str:
    if not result:
        return "-"
    counts = format_html_join(
        "",
        "<li><strong>{}</strong>: {}</li>",
        (
            (entity, ", ".join(f"{n} {what}" for what, n in actions.items()))
            for entity, actions in result.get("counts", {}).items()
        ),
    )
    return format_html(
        "<p>{} rows, {} skipped, {} warnings, <strong>{} errors</strong></p><ul>{}</ul>{}{}",
        result.get("rows", 0), result.get("skipped_rows", 0), result.get("warning_count", 0),
        result.get("error_count", 0), counts,
        _problem_table(result.get("errors", []), _("Errors (nothing is imported until fixed)")),
        _problem_table(result.get("warnings", []), _("Warnings")),
    )


@admin.register(ImportJob)
class ImportJobAdmin(ModelAdmin):
    list_display = ["__str__", "file_format", "status", "progress", "created_by", "created_at"]
    list_filter = ["status", "file_format"]
    list_select_related = ["created_by"]
    date_hierarchy = None
    actions_detail = ["run_import"]
    change_form_before_template = "imports/importjob_progress.html"
    add_fields = ["file", "file_format", "warehouse_code"]
    readonly_after_upload = [
        "file", "file_format", "warehouse_code", "kind", "status", "progress", "dry_run_summary",
        "preview", "import_summary", "error", "created_by", "created_at", "finished_at",
    ]

    def get_fields(self, request: HttpRequest, obj: ImportJob | None = None):
        return self.add_fields if obj is None else self.readonly_after_upload

    def get_readonly_fields(self, request: HttpRequest, obj: ImportJob | None = None):
        return [] if obj is None else self.readonly_after_upload

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
            return f"{done} / {total} rows ({min(100, round(100 * done / total))}%)"
        return f"{done} rows" if done else "-"

    @display(description=_("dry run"))
    def dry_run_summary(self, obj: ImportJob) -> str:
        return _summary(obj.dry_run_result)

    @display(description=_("import result"))
    def import_summary(self, obj: ImportJob) -> str:
        return _summary(obj.result)

    @display(description=_("preview"))
    def preview(self, obj: ImportJob) -> str:
        rows = (obj.dry_run_result or {}).get("preview") or []
        if not rows:
            return "-"
        columns = list(rows[0].keys())
        head = format_html_join("", "<th class='px-3 text-left'>{}</th>", ((c,) for c in columns))
        body = format_html_join(
            "",
            "<tr>{}</tr>",
            (
                (
                    format_html_join(
                        "", "<td class='px-3 py-1'>{}</td>", ((r.get(c, ""),) for c in columns)
                    ),
                )
                for r in rows
            ),
        )
        return format_html(
            "<table class='text-sm'><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = extra_context or {}
        if object_id:
            obj = self.get_object(request, object_id)
            if obj is not None:
                done, total = self._live_progress(obj)
                extra_context["import_job"] = {
                    "running": obj.status in RUNNING,
                    "status": obj.get_status_display(),
                    "percent": min(100, round(100 * done / total)) if total else 0,
                    "done": done,
                    "total": total,
                    "can_run": obj.can_run,
                }
        return super().changeform_view(request, object_id, form_url, extra_context)

    @action(description=_("Run import"), url_path="run-import", permissions=["change"])
    def run_import(self, request: HttpRequest, object_id: int):
        job = get_object_or_404(ImportJob, pk=object_id)
        if not job.can_run:
            messages.error(
                request, _("Only a checked file without errors can be imported."),
            )
        else:
            ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.IMPORTING)
            job.status = ImportStatus.IMPORTING
            enqueue_import(job)
            messages.success(request, _("The import is running; this page shows its progress."))
        return HttpResponseRedirect(reverse("admin:imports_importjob_change", args=[object_id]))


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

    def save_model(self, request, obj: ExportJob, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            enqueue_export(obj)

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
