"""Read a spreadsheet the way a merchant saved it: CSV (any delimiter, BOM or not) or XLSX.

Rows are streamed, never loaded whole. Every cell comes out as a ``str`` (XLSX numbers included, so
money never passes through ``float`` arithmetic). Row numbers are the spreadsheet's: the header is
row 1, the first data row is row 2.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime
import io
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import BinaryIO

CSV_DELIMITERS = (",", ";", "\t")
# csv's default limit (128 KiB) would fail the whole file on one huge cell; we accept it and let
# the row validation refuse it with a row error instead.
csv.field_size_limit(16 * 1024 * 1024)


class FileFormatError(ValueError):
    """The file as a whole cannot be read (encoding, empty, wrong columns); nothing was imported."""


@dataclass
class Table:
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]  # (spreadsheet row number, cells)


def is_xlsx(filename: str) -> bool:
    return filename.lower().endswith((".xlsx", ".xlsm"))


def open_table(stream: BinaryIO, *, filename: str) -> Table:
    """The header and a stream of data rows of a CSV or XLSX file (by its extension)."""
    if is_xlsx(filename):
        return _open_xlsx(stream)
    return _open_csv(stream)


def _first_line(sample: str) -> str:
    return sample.splitlines()[0] if sample else ""


def sniff_delimiter(sample: str) -> str:
    """The delimiter that splits the header line into the most columns (quotes respected)."""
    line = _first_line(sample)
    best, best_count = ",", 0
    for delimiter in CSV_DELIMITERS:
        count = len(next(csv.reader([line], delimiter=delimiter), []))
        if count > best_count:
            best, best_count = delimiter, count
    return best


def _decode_head(head: bytes) -> str:
    # The head may end inside a multi-byte character: decode incrementally, without the tail.
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        return decoder.decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise FileFormatError(_encoding_message(exc)) from None


def _encoding_message(exc: UnicodeDecodeError) -> str:
    return (
        f"The file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} cannot be read). "
        "Save it as 'CSV UTF-8' (Excel) or UTF-8 (other spreadsheets) and upload it again."
    )


def _open_csv(stream: BinaryIO) -> Table:
    head = stream.read(64 * 1024)
    stream.seek(0)
    text_head = _decode_head(head)
    if not text_head.strip():
        raise FileFormatError("The file is empty: it has no header row.")
    delimiter = sniff_delimiter(text_head)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = [cell.strip() for cell in next(reader)]
    except StopIteration:
        text.detach()
        raise FileFormatError("The file is empty: it has no header row.") from None
    return Table(header=header, rows=_csv_rows(reader, text))


def _csv_rows(reader, text: io.TextIOWrapper) -> Iterator[tuple[int, list[str]]]:
    number = 1
    try:
        for cells in reader:
            number += 1
            if cells and any(cells):
                yield number, cells
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"Near row {number + 1}: {_encoding_message(exc)}") from None
    except csv.Error as exc:
        raise FileFormatError(f"Row {number + 1} cannot be read as CSV: {exc}") from None
    finally:
        # The caller owns the stream and closes it: the wrapper lets go of it (collected while
        # the stream is still open, it would close it and warn of an unclosed file).
        with contextlib.suppress(ValueError):  # the stream was closed first: nothing to let go
            text.detach()


def xlsx_cell_text(value) -> str:
    """An XLSX cell as the text a merchant sees; floats via their shortest repr, never binary."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))  # 25.0 -> "25", 365275101829.0 -> a barcode, not "3.6E+11"
        return format(Decimal(repr(value)), "f")
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return str(value)


def _open_xlsx(stream: BinaryIO) -> Table:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(stream, read_only=True, data_only=True)
    except (InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise FileFormatError(f"The file is not a readable XLSX workbook: {exc}") from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise FileFormatError(f"The file is not a readable XLSX workbook: {exc}") from None
    sheet = workbook.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    try:
        header_values = next(rows)
    except StopIteration:
        raise FileFormatError("The file is empty: it has no header row.") from None
    header = [xlsx_cell_text(value).strip() for value in header_values]
    while header and not header[-1]:
        header.pop()
    if not header:
        raise FileFormatError("The file is empty: it has no header row.")

    def data_rows() -> Iterator[tuple[int, list[str]]]:
        for number, values in enumerate(rows, start=2):
            cells = [xlsx_cell_text(value) for value in values]
            if any(cells):
                yield number, cells
        workbook.close()

    return Table(header=header, rows=data_rows())
