"""``manage.py import_catalog PATH --format FORMAT [--dry-run] [--warehouse CODE]``."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backoffice.imports.services import FORMAT_CHOICES, ImportResult, import_catalog
from backoffice.inventory.services import Actor

MAX_ERRORS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Import a catalog file (CSV or XLSX; Google taxonomy as text). Checks every row first: a "
        "file with any error imports nothing. Exits 1 when there are errors."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--format", dest="file_format", choices=FORMAT_CHOICES, required=True)
        parser.add_argument(
            "--dry-run", action="store_true", help="Check and report; write nothing."
        )
        parser.add_argument(
            "--warehouse", default=None,
            help="Warehouse code for stock quantities (default: the default warehouse).",
        )

    def handle(self, *args, path: str, file_format: str, dry_run: bool, warehouse, **options):
        file_path = Path(path)
        if not file_path.is_file():
            raise CommandError(f"No such file: {path}")
        with file_path.open("rb") as stream:
            result = import_catalog(
                stream=stream,
                filename=file_path.name,
                file_format=file_format,
                dry_run=dry_run,
                warehouse_code=warehouse,
                actor=Actor(label=f"import_catalog {file_path.name}"[:120]),
                reference=f"import_catalog {file_path.name}"[:120],
            )
        self._report(result)
        if result.errors:
            raise CommandError(
                f"{len(result.errors)} error(s): nothing was imported.", returncode=1
            )

    def _report(self, result: ImportResult) -> None:
        heading = "Dry run (nothing written)" if result.dry_run else "Import"
        if not result.dry_run and result.errors:
            heading = "Import refused (nothing written)"
        self.stdout.write(f"{heading}: {result.seconds:.1f}s")
        for line in result.summary_lines():
            self.stdout.write(f"  {line}")
        for problem in result.warnings[:MAX_ERRORS_SHOWN]:
            self.stdout.write(f"  warning row {problem.row} [{problem.column}]: {problem.message}")
        for problem in result.errors[:MAX_ERRORS_SHOWN]:
            where = f"row {problem.row} [{problem.column}]" if problem.row else "file"
            self.stderr.write(f"  error {where}: {problem.message}")
        if len(result.errors) > MAX_ERRORS_SHOWN:
            self.stderr.write(f"  ... and {len(result.errors) - MAX_ERRORS_SHOWN} more errors")
