"""``manage.py export_catalog PATH [--kind products|categories|stock|prices] [--format native]``."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from backoffice.imports.exports import EXPORT_KINDS, export_catalog


class Command(BaseCommand):
    help = (
        "Export the catalog to PATH: CSV, or XLSX when PATH ends in .xlsx. The products export "
        "is the native import format, so importing it back changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--kind", choices=EXPORT_KINDS, default="products")
        parser.add_argument(
            "--format", dest="file_format", choices=["native"], default="native",
            help="Only the native format is written (it is what import --format native reads).",
        )

    def handle(self, *args, path: str, kind: str, file_format: str, **options) -> None:
        file_path = Path(path)
        with file_path.open("wb") as stream:
            rows = export_catalog(stream=stream, filename=file_path.name, kind=kind)
        self.stdout.write(f"Exported {rows} {kind} rows to {file_path}")
