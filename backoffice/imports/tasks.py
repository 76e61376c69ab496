"""Jobs (django-q2): the dry run, the import and the export of a job row, outside the request.

Progress is written to the job row with one cheap UPDATE every 1,000 rows, and to the cache: while
the import's own transaction is open, other connections cannot see the row's UPDATEs, but the
admin page can read the cache.
"""

from __future__ import annotations

import logging
import tempfile

from django.core.cache import cache
from django.core.files import File
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from backoffice.imports.exports import export_catalog
from backoffice.imports.models import ExportJob, ExportStatus, ImportJob, ImportStatus
from backoffice.imports.services import import_catalog
from backoffice.inventory.services import Actor
from backoffice.notifications import services as notifications
from backoffice.plugin_host.events import emit_event

logger = logging.getLogger(__name__)
PROGRESS_KEY = "imports:job:{}:progress"


def progress_key(job_id: int) -> str:
    return PROGRESS_KEY.format(job_id)


def enqueue_dry_run(job: ImportJob) -> None:
    """Queue the dry run once the job row is committed (the worker must see it)."""
    transaction.on_commit(lambda: async_task(dry_run_import_job, job.pk, group="imports"))


def enqueue_import(job: ImportJob) -> None:
    transaction.on_commit(lambda: async_task(run_import_job, job.pk, group="imports"))


def enqueue_export(job: ExportJob) -> None:
    transaction.on_commit(lambda: async_task(run_export_job, job.pk, group="exports"))


def _progress_writer(job_id: int):
    def write(phase: str, done: int, total: int | None) -> None:
        cache.set(progress_key(job_id), {"phase": phase, "done": done, "total": total}, 3600)
        ImportJob.objects.filter(pk=job_id).update(processed_rows=done)

    return write


def _run(job: ImportJob, *, dry_run: bool):
    actor = Actor(user=job.created_by, label=f"import #{job.pk}")
    with job.file.open("rb") as stream:
        return import_catalog(
            stream=stream,
            filename=job.file.name,
            file_format=job.file_format,
            dry_run=dry_run,
            warehouse_code=job.warehouse_code or None,
            actor=actor,
            reference=f"import #{job.pk}",
            progress=_progress_writer(job.pk),
        )


def _fail(job_id: int, exc: Exception, *, tell_plugins: bool = False) -> None:
    logger.exception("import job %s failed", job_id)
    error = f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportStatus.FAILED, error=error, finished_at=timezone.now()
        )
        kind = ImportJob.objects.values_list("kind", flat=True).get(pk=job_id)
        if tell_plugins:
            emit_event("import_finished", job_id=job_id, kind=kind or "",
                       summary={"ok": False, "error": error})
        _tell_staff(job_id, kind or "", error)


def _tell_staff(job_id: int, kind: str, error: str) -> None:
    name = ImportJob.objects.values_list("file", flat=True).get(pk=job_id) or ""
    notifications.import_failed(job_id=job_id, kind=kind, file_name=name.rpartition("/")[2],
                                error=error)


def dry_run_import_job(job_id: int) -> dict:
    """Check the whole file and store the summary, row errors and preview on the job."""
    job = ImportJob.objects.select_related("created_by").get(pk=job_id)
    ImportJob.objects.filter(pk=job_id).update(status=ImportStatus.VALIDATING, processed_rows=0)
    try:
        result = _run(job, dry_run=True)
    except Exception as exc:
        _fail(job_id, exc)
        raise
    summary = result.as_dict()
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportStatus.VALIDATED,
        kind=result.kind,
        dry_run_result=summary,
        processed_rows=result.rows,
        total_rows=result.rows,
    )
    cache.delete(progress_key(job_id))
    return summary


def run_import_job(job_id: int) -> dict:
    """Import the file for real; only a job whose dry run found no errors gets here."""
    job = ImportJob.objects.select_related("created_by").get(pk=job_id)
    if not job.dry_run_passed or job.status not in {
        ImportStatus.VALIDATED, ImportStatus.IMPORTING,
    }:
        raise ValueError(f"Import #{job_id} has not passed its dry run; not importing.")
    ImportJob.objects.filter(pk=job_id).update(status=ImportStatus.IMPORTING, processed_rows=0)
    try:
        result = _run(job, dry_run=False)
    except Exception as exc:
        _fail(job_id, exc, tell_plugins=True)
        raise
    summary = result.as_dict()
    # The job's end and the plugins' event in one transaction: both or neither.
    with transaction.atomic():
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportStatus.DONE if result.ok else ImportStatus.FAILED,
            result=summary,
            error="" if result.ok else "; ".join(
                f"row {e.row} {e.column}: {e.message}" for e in result.errors[:20]
            ),
            processed_rows=result.rows,
            total_rows=result.rows,
            finished_at=timezone.now(),
        )
        if not result.ok:
            _tell_staff(job_id, result.kind, "; ".join(
                f"row {e.row} {e.column}: {e.message}" for e in result.errors[:20]))
        emit_event("import_finished", job_id=job_id, kind=result.kind, summary={
            "ok": result.ok, **{key: summary[key] for key in (
                "format", "rows", "skipped_rows", "counts", "error_count", "warning_count",
                "seconds",
            )},
        })
    cache.delete(progress_key(job_id))
    return summary


def run_export_job(job_id: int) -> int:
    """Write the export into a file attached to the job."""
    job = ExportJob.objects.get(pk=job_id)
    ExportJob.objects.filter(pk=job_id).update(status=ExportStatus.RUNNING)
    try:
        filename = f"{job.kind}-{timezone.now():%Y%m%d-%H%M%S}.{job.file_type}"
        # A temporary file, not memory: a 100k-variant export is tens of megabytes.
        with tempfile.TemporaryFile() as buffer:
            rows = export_catalog(stream=buffer, filename=filename, kind=job.kind)
            buffer.seek(0)
            job.file.save(filename, File(buffer), save=False)
    except Exception as exc:
        logger.exception("export job %s failed", job_id)
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        raise
    ExportJob.objects.filter(pk=job_id).update(
        status=ExportStatus.DONE, file=job.file.name, rows=rows, finished_at=timezone.now()
    )
    return rows
