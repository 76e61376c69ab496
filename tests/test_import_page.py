"""The import page (issue 14): errors red, counted and first; refused rows; a run that asks first
and only starts on a POST; a preview that says it is cut."""

import html
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from backoffice.catalog.models import Product, Variant
from backoffice.imports.models import ImportJob, ImportStatus

pytestmark = pytest.mark.django_db
SHOPIFY = (Path(__file__).parent / "data" / "shopify_products.csv").read_bytes()
# Row 2 (LIN-SAND-M): a bad Status, a row the dry run still plans (it used to say "created");
# row 4 (LIN-OLV-M): a price that is no number, a row refused while reading.
TWO_ERRORS = SHOPIFY.replace(b",,,,,,,active\n", b",,,,,,,bogus\n", 1).replace(
    b",45.00,", b",4x,", 1)


def upload(client, content: bytes, capture, name="products.csv") -> ImportJob:
    with capture(execute=True):
        response = client.post(reverse("admin:imports_importjob_add"), {
            "file": SimpleUploadedFile(name, content), "file_format": "shopify",
        })
    assert response.status_code == 302, response.content[:2000]
    return ImportJob.objects.latest("id")


def page(client, job: ImportJob) -> str:
    response = client.get(reverse("admin:imports_importjob_change", args=[job.pk]))
    assert response.status_code == 200
    return response.content.decode()


def section(html: str, marker: str, end: str) -> str:
    start = html.index(marker)
    return html[start:html.index(end, start)]


def preview_row(html: str, text: str) -> str:
    preview = section(html, "import-preview", "</table>")
    [row] = [tr for tr in preview.split("<tr")[1:] if text in tr]
    return row


def cells(tr: str) -> list[str]:
    """The text of each cell of one table row."""
    return [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", td))).strip()
            for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]


def run_url(job: ImportJob) -> str:
    return reverse("admin:imports_importjob_run_import", args=[job.pk])


def test_a_dry_run_with_errors_shows_them_red_counted_first_and_refuses_the_rows(
    staff_client, django_capture_on_commit_callbacks
):
    job = upload(staff_client, TWO_ERRORS, django_capture_on_commit_callbacks)
    assert job.status == ImportStatus.VALIDATED and job.dry_run_result["error_count"] == 2
    warnings = job.dry_run_result["warning_count"]
    assert warnings >= 2
    html = page(staff_client, job)

    status = section(html, 'id="import-status"', "</div>\n    </div>")
    assert "Checked: the file has errors, nothing can be imported" in status
    assert "bg-red-600" in status and "2 errors" in status and "ready" not in status

    errors = section(html, "import-errors", "</table>")
    assert "border-red-600" in errors and "bg-red-100 px-3 py-2 text-red-700" in errors
    assert "<strong class=\"font-semibold\">2 errors</strong>" in errors
    error_rows = errors.split("<tbody>")[1].split("<tr")[1:]
    assert [cells(tr) for tr in error_rows] == [
        ["2", "Status", "'bogus' is not active, draft or archived."],
        ["4", "Variant Price", job.dry_run_result["errors"][1]["message"]],
    ]
    assert all("text-red-700" in tr for tr in error_rows)

    # Warnings stay amber and counted, after the errors and before the preview.
    warning_block = section(html, "import-warnings", "</table>")
    assert "bg-orange-100" in warning_block and "text-red-700" not in warning_block
    assert f"{warnings} warnings" in warning_block
    assert html.index("import-errors") < html.index("import-warnings") < html.index(
        "import-preview")

    # The row with an error is refused, not "created"; a clean row keeps its action.
    preview = section(html, "import-preview", "</table>")
    assert re.findall(r"<th[^>]*>(.*?)</th>", preview) == [
        "row", "handle", "product", "product action", "SKU", "variant", "price",
        "variant action", "problems"]
    lines = {tr_cells[0]: (tr, tr_cells) for tr in preview.split("<tr")[2:]
             for tr_cells in [cells(tr)]}
    row2, row2_cells = lines["2"]
    assert row2_cells[4] == "LIN-SAND-M" and "preview-refused" in row2
    assert row2_cells[3] == row2_cells[7] == "refused" and "bg-red-100 text-red-700" in row2
    assert "'bogus' is not active" in row2_cells[8] and "created" not in row2_cells
    row3, row3_cells = lines["3"]
    assert row3_cells[4] == "LIN-SAND-L" and row3_cells[7] == "created"
    assert "preview-refused" not in row3
    # Row 4 was refused while reading (no preview line of its own): it still shows, refused.
    row4, row4_cells = lines["4"]
    assert "preview-refused" in row4 and row4_cells[7] == "refused"
    assert row4_cells[8].startswith("Variant Price: ")
    assert "Rows marked refused have errors" in html

    # Nothing offers to run it: no detail action, no link, no form.
    assert run_url(job) not in html and "run-import-link" not in html
    assert "Run import" not in html


def test_running_a_file_with_an_error_is_refused_and_writes_nothing(
    staff_client, django_capture_on_commit_callbacks
):
    bad = SHOPIFY.replace(b",45.00,", b",4x,", 1)
    job = upload(staff_client, bad, django_capture_on_commit_callbacks)
    assert job.dry_run_result["error_count"] == 1
    html = page(staff_client, job)
    assert "<strong class=\"font-semibold\">1 error</strong>" in html and "1 errors" not in html

    with django_capture_on_commit_callbacks() as queued:
        response = staff_client.post(run_url(job), follow=True)
        asked = staff_client.get(run_url(job), follow=True)
    assert queued == []  # no import job was queued
    text = response.content.decode()
    assert "The dry run found 1 error: nothing is imported until the file is fixed" in text
    assert "Import now" not in asked.content.decode()  # no confirmation for a bad file
    job.refresh_from_db()
    assert job.status == ImportStatus.VALIDATED and job.result is None
    assert Product.objects.count() == 0 and Variant.objects.count() == 0


def test_a_clean_file_asks_first_with_the_counts_and_only_a_post_imports_it(
    django_user_model, django_capture_on_commit_callbacks
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_superuser("boss", "b@example.com", "x"))
    home = client.get(reverse("admin:imports_importjob_add"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home.content.decode())[1]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:imports_importjob_add"), {
            "file": SimpleUploadedFile("ok.csv", SHOPIFY), "file_format": "shopify",
            "csrfmiddlewaretoken": token,
        })
    job = ImportJob.objects.get()
    assert job.can_run
    html = page(client, job)
    assert run_url(job) in html and "Checked: no errors, ready to import" in html
    assert "import-errors" not in html

    # A GET asks, repeating what will be written; it starts nothing.
    with django_capture_on_commit_callbacks() as queued:
        confirm = client.get(run_url(job))
    assert confirm.status_code == 200 and queued == []
    asked = re.sub(r"\s+", " ", confirm.content.decode())
    stock = job.dry_run_result["counts"].get("stock levels", {}).get("set", 0)
    expected = ["6 categories created", "3 products created", "7 variants created",
                "8 rows read", "Import now"] + ([f"{stock} stock levels set"] if stock else [])
    for line in expected:
        assert line in asked, line
    assert re.search(r'<form method="post"[^>]*>\s*<input type="hidden" '
                     r'name="csrfmiddlewaretoken"', confirm.content.decode())
    job.refresh_from_db()
    assert job.status == ImportStatus.VALIDATED and Product.objects.count() == 0

    # A POST without the CSRF token is turned away; with it, the import runs.
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert client.post(run_url(job)).status_code == 403
    assert queued == [] and Product.objects.count() == 0
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                      confirm.content.decode())[1]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(run_url(job), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE and Product.objects.count() == 3
    done = page(client, job)
    assert "Import result" in done and "3 products created" in done

    # A second POST (a double click, another tab) imports nothing again.
    with django_capture_on_commit_callbacks(execute=True) as queued:
        again = client.post(run_url(job), {"csrfmiddlewaretoken": token}, follow=True)
    assert queued == [] and "This file has been imported already." in again.content.decode()


def test_the_preview_says_it_is_cut_and_how_many_rows_there_are(
    staff_client, django_capture_on_commit_callbacks
):
    header = b"Handle,Title,Option1 Name,Option1 Value,Variant SKU,Variant Price\n"
    lines = [b"tee,Tee,Size,S0,TEE-0,10.00"] + [
        f"tee,,,S{n},TEE-{n},10.00".encode() for n in range(1, 1234)]
    job = upload(staff_client, header + b"\n".join(lines) + b"\n",
                 django_capture_on_commit_callbacks)
    assert job.dry_run_result["rows"] == 1234 and len(job.dry_run_result["preview"]) == 20
    html = page(staff_client, job)
    assert "Showing the first 20 of 1,234 rows." in html
    assert html.count("TEE-") == 20
    assert "1,234 / 1,234 rows (100%)" in html and "1,234 variants created" in html


def test_the_report_and_the_confirmation_keep_the_import_pages_query_budget(
    staff_client, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    from cachalot.api import cachalot_disabled

    bad = upload(staff_client, TWO_ERRORS, django_capture_on_commit_callbacks, "bad.csv")
    good = upload(staff_client, SHOPIFY, django_capture_on_commit_callbacks, "good.csv")
    for url in [reverse("admin:imports_importjob_change", args=[bad.pk]),
                reverse("admin:imports_importjob_change", args=[good.pk]), run_url(good)]:
        with cachalot_disabled(), django_assert_max_num_queries(12):
            assert staff_client.get(url).status_code == 200, url
