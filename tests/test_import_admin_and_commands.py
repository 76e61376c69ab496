"""The admin flow (upload, dry run, import, export) and the command lines."""

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from backoffice.catalog.models import Category, Product, Variant
from backoffice.hookspecs import hookimpl
from backoffice.imports.models import ExportJob, ExportStatus, ImportJob, ImportStatus
from backoffice.imports.tasks import run_import_job

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data"


def upload(staff_client, name: str, file_format: str, captured):
    with captured(execute=True):
        response = staff_client.post(
            reverse("admin:imports_importjob_add"),
            {
                "file": SimpleUploadedFile(name, (DATA / name).read_bytes()),
                "file_format": file_format,
                "warehouse_code": "",
            },
        )
    assert response.status_code == 302, response.content[:2000]
    return ImportJob.objects.get()


class ImportListener:
    hookspec_version = ">=1.0,<2"

    def __init__(self):
        self.heard = []

    @hookimpl
    def import_finished(self, job_id, kind, summary):
        self.heard.append((job_id, kind, summary))


def test_upload_runs_the_dry_run_then_run_import_imports(
    staff_client, django_capture_on_commit_callbacks, register_plugin
):
    listener = ImportListener()
    register_plugin(listener, "import_listener")
    job = upload(
        staff_client, "shopify_products.csv", "shopify", django_capture_on_commit_callbacks
    )
    assert job.status == ImportStatus.VALIDATED and job.can_run
    assert job.dry_run_result["counts"]["variants"] == {"created": 7}
    assert job.total_rows == 8 and Product.objects.count() == 0
    assert job.created_by.username == "boss"

    page = staff_client.get(reverse("admin:imports_importjob_change", args=[job.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "LIN-SAND-M" in html  # the preview table
    assert "Run import" in html and "Variant Compare At Price" in html  # a warning row

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:imports_importjob_run_import", args=[job.pk])
        )
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE and job.finished_at is not None
    assert job.result["counts"]["products"] == {"created": 3}
    assert Variant.objects.count() == 7
    assert staff_client.get(reverse("admin:imports_importjob_changelist")).status_code == 200
    # Plugins hear of the finished import (not of the dry run), once.
    [(job_id, kind, summary)] = listener.heard
    assert (job_id, kind, summary["ok"], summary["counts"]["products"]) == (
        job.pk, "products", True, {"created": 3})


def test_a_file_with_errors_cannot_be_imported(staff_client, django_capture_on_commit_callbacks):
    bad = (DATA / "shopify_products.csv").read_bytes().replace(b",49.00,", b",4x,", 1)
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            reverse("admin:imports_importjob_add"),
            {"file": SimpleUploadedFile("bad.csv", bad), "file_format": "shopify"},
        )
    job = ImportJob.objects.get()
    assert job.status == ImportStatus.VALIDATED and not job.can_run
    assert job.dry_run_result["errors"] == [
        {"row": 2, "column": "Variant Price", "message": job.dry_run_result["errors"][0]["message"]}
    ]
    page = staff_client.get(reverse("admin:imports_importjob_change", args=[job.pk]))
    assert "Variant Price" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(reverse("admin:imports_importjob_run_import", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == ImportStatus.VALIDATED
    with pytest.raises(ValueError, match="dry run"):
        run_import_job(job.pk)
    assert Product.objects.count() == 0


def test_an_export_job_leaves_a_file_to_download(
    staff_client, django_capture_on_commit_callbacks
):
    call_command("import_catalog", str(DATA / "shopify_products.csv"), "--format", "shopify",
                 stdout=io.StringIO())
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:imports_exportjob_add"), {"kind": "products", "file_type": "xlsx"}
        )
    assert response.status_code == 302
    job = ExportJob.objects.get()
    assert job.status == ExportStatus.DONE and job.rows == 7
    download = staff_client.get(reverse("admin:imports_exportjob_download", args=[job.pk]))
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    assert b"".join(download.streaming_content)[:2] == b"PK"


def test_import_catalog_prints_a_summary_and_fails_on_errors(tmp_path):
    out = io.StringIO()
    call_command("import_catalog", str(DATA / "google_taxonomy.txt"),
                 "--format", "google-taxonomy", stdout=out)
    assert "categories: 10 created" in out.getvalue() and "errors: 0" in out.getvalue()
    assert Category.objects.count() == 10

    dry = io.StringIO()
    call_command("import_catalog", str(DATA / "shopify_products.csv"), "--format", "shopify",
                 "--dry-run", stdout=dry)
    assert "Dry run" in dry.getvalue() and "products: 3 created" in dry.getvalue()
    assert Product.objects.count() == 0

    bad = tmp_path / "bad.csv"
    bad.write_bytes((DATA / "shopify_products.csv").read_bytes().replace(b",TOTE-1,", b",,"))
    err = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("import_catalog", str(bad), "--format", "shopify", stdout=io.StringIO(),
                     stderr=err)
    assert failure.value.returncode == 1
    assert "error row 6 [Variant SKU]" in err.getvalue()
    assert Product.objects.count() == 0


def test_export_catalog_writes_csv_and_xlsx(tmp_path):
    call_command("import_catalog", str(DATA / "shopify_products.csv"), "--format", "shopify",
                 stdout=io.StringIO())
    out = io.StringIO()
    call_command("export_catalog", str(tmp_path / "products.csv"), stdout=out)
    assert "Exported 7 products rows" in out.getvalue()
    call_command("export_catalog", str(tmp_path / "stock.xlsx"), "--kind", "stock",
                 stdout=io.StringIO())
    assert (tmp_path / "stock.xlsx").read_bytes()[:2] == b"PK"
    again = io.StringIO()
    call_command("import_catalog", str(tmp_path / "products.csv"), "--format", "native",
                 stdout=again)
    assert "products: 3 unchanged" in again.getvalue()


def test_the_commands_exit_non_zero_from_a_shell(tmp_path):
    import subprocess
    import sys

    missing = subprocess.run(
        [sys.executable, "manage.py", "import_catalog", str(tmp_path / "nope.csv"),
         "--format", "native"],
        cwd=Path(__file__).parent.parent, capture_output=True, text=True,
        env={"DEBUG": "1", "PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path)},
    )
    assert missing.returncode != 0 and "No such file" in missing.stderr


def test_import_and_export_pages_keep_a_bounded_query_count(
    staff_client, django_user_model, django_assert_max_num_queries
):
    from cachalot.api import cachalot_disabled

    user = django_user_model.objects.get(username="boss")
    for n in range(30):
        job = ImportJob.objects.create(
            file=f"imports/f{n}.csv", file_format="shopify", created_by=user,
            status=ImportStatus.VALIDATED,
            dry_run_result={"rows": 1, "error_count": 0, "counts": {}, "preview": [
                {"row": 2, "sku": f"S{n}"}
            ]},
        )
        export = ExportJob.objects.create(kind="stock", created_by=user)
    pages = [
        reverse("admin:imports_importjob_changelist"),
        reverse("admin:imports_importjob_change", args=[job.pk]),
        reverse("admin:imports_importjob_add"),
        reverse("admin:imports_exportjob_changelist"),
        reverse("admin:imports_exportjob_change", args=[export.pk]),
        reverse("admin:imports_exportjob_add"),
    ]
    for url in pages:
        with cachalot_disabled(), django_assert_max_num_queries(12):
            assert staff_client.get(url).status_code == 200, url


def test_a_job_that_crashes_is_marked_failed_with_its_error(django_user_model, monkeypatch):
    from backoffice.imports import tasks

    job = ImportJob.objects.create(
        file=SimpleUploadedFile("x.csv", b"Handle\n"), file_format="shopify",
    )

    def explode(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tasks, "import_catalog", explode)
    with pytest.raises(RuntimeError):
        tasks.dry_run_import_job(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED and "disk on fire" in job.error


def test_progress_is_visible_while_a_job_runs(staff_client):
    from django.core.cache import cache

    from backoffice.imports.tasks import progress_key

    job = ImportJob.objects.create(
        file="imports/big.csv", file_format="shopify", status=ImportStatus.IMPORTING,
        total_rows=4000,
    )
    cache.set(progress_key(job.pk), {"phase": "writing", "done": 1000, "total": 4000})
    html = staff_client.get(reverse("admin:imports_importjob_change", args=[job.pk])).content
    assert b"1,000 / 4,000 rows (25%)" in html
    assert b"window.location.reload" in html  # the page refreshes itself while running


def test_an_xlsx_export_holds_a_formula_lookalike_as_text_and_imports_it_back(tmp_path):
    from openpyxl import load_workbook

    call_command("import_catalog", str(DATA / "shopify_products.csv"), "--format", "shopify",
                 stdout=io.StringIO())
    product = Product.objects.order_by("id").first()
    Product.objects.filter(pk=product.pk).update(name='=HYPERLINK("http://evil.example","x")')
    path = tmp_path / "products.xlsx"
    call_command("export_catalog", str(path), stdout=io.StringIO())
    cells = [c for row in load_workbook(path).active.iter_rows() for c in row
             if str(c.value).startswith("=HYPERLINK")]
    assert cells and all(c.data_type == "s" for c in cells), "text, never a live formula"
    again = io.StringIO()
    call_command("import_catalog", str(path), "--format", "native", stdout=again)
    assert "products: 3 unchanged" in again.getvalue()
