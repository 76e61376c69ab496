"""Import and export jobs: the file, what was asked, and what happened, shown in the admin.

An import goes uploaded -> validating -> validated (the dry run's summary, errors and preview are
kept in ``dry_run_result``) -> importing -> done, or failed at any step. Exports are jobs too:
a large catalog is written by a worker into a file the admin then offers for download.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

FORMAT_CHOICES = [
    ("native", _("Native (our export)")),
    ("shopify", _("Shopify product CSV")),
    ("woocommerce", _("WooCommerce product CSV")),
    ("google-taxonomy", _("Google product taxonomy (taxonomy-with-ids)")),
]


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", _("Uploaded")
    VALIDATING = "validating", _("Checking (dry run)")
    VALIDATED = "validated", _("Checked")
    IMPORTING = "importing", _("Importing")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class ImportJob(models.Model):
    file = models.FileField(_("file"), upload_to="imports/%Y/%m/")
    file_format = models.CharField(_("format"), max_length=20, choices=FORMAT_CHOICES)
    kind = models.CharField(_("kind"), max_length=20, blank=True, editable=False)
    warehouse_code = models.CharField(
        _("warehouse code"), max_length=32, blank=True,
        help_text=_("Where stock quantities go (Shopify, WooCommerce); the default if empty."),
    )
    status = models.CharField(
        _("status"), max_length=20, choices=ImportStatus.choices, default=ImportStatus.UPLOADED,
        db_index=True,
    )
    processed_rows = models.PositiveIntegerField(_("rows processed"), default=0)
    total_rows = models.PositiveIntegerField(_("rows"), null=True, blank=True)
    dry_run_result = models.JSONField(_("dry run result"), null=True, blank=True)
    result = models.JSONField(_("import result"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    notes = models.JSONField(
        _("notes"), default=list, blank=True, editable=False,
        help_text=_("What other jobs said about this import afterwards, e.g. sold-out products "
                    "the sold-out job left published because they were just imported."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+", verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        ordering = ["-created_at", "-id"]
        permissions = [("run_import", _("Can run imports"))]

    def __str__(self) -> str:
        return f"{self.get_file_format_display()} import #{self.pk}"

    @property
    def dry_run_passed(self) -> bool:
        return bool(self.dry_run_result) and not self.dry_run_result.get("error_count")

    @property
    def can_run(self) -> bool:
        """The "Run import" button: a checked file with no errors, not imported yet."""
        return self.status == ImportStatus.VALIDATED and self.dry_run_passed


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class ExportJob(models.Model):
    KIND_CHOICES = [
        ("products", _("Products with variants (native import format)")),
        ("categories", _("Categories")),
        ("stock", _("Stock levels")),
        ("prices", _("Prices")),
    ]
    FILE_TYPE_CHOICES = [("csv", "CSV"), ("xlsx", "XLSX")]

    kind = models.CharField(_("what"), max_length=20, choices=KIND_CHOICES, default="products")
    file_type = models.CharField(
        _("file type"), max_length=4, choices=FILE_TYPE_CHOICES, default="csv"
    )
    status = models.CharField(
        _("status"), max_length=20, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    file = models.FileField(_("file"), upload_to="exports/%Y/%m/", blank=True)
    rows = models.PositiveIntegerField(_("rows"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+", verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("export")
        verbose_name_plural = _("exports")
        ordering = ["-created_at", "-id"]
        permissions = [("run_export", _("Can export the catalog, prices and stock"))]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} export #{self.pk}"
