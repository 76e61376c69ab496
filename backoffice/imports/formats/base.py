"""What every product format adapter shares: header checks and cell access by column name."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from backoffice.imports.readers import FileFormatError
from backoffice.imports.records import Problems, ProductRecord, parse_money
from backoffice.money import currency_exponent


class ProductFormat:
    """Turns the rows of one file format into ``ProductRecord``s (and row problems)."""

    code = ""
    label = ""
    required_columns: tuple[str, ...] = ()
    # The file's column for a product or variant field, where its name differs, so that a
    # problem found after reading (a value too long) names the column the merchant sees.
    product_columns: dict[str, str] = {}
    variant_columns: dict[str, str] = {}

    def __init__(self, header: list[str], problems: Problems, *, warehouse_code: str) -> None:
        self.header = header
        self.problems = problems
        self.warehouse_code = warehouse_code
        self.money_places = currency_exponent()
        self._money: dict[str, Decimal] = {}
        self.index = {}
        for position, name in enumerate(header):
            self.index.setdefault(name, position)
        self.check_header()

    def check_header(self) -> None:
        missing = [name for name in self.required_columns if name not in self.index]
        if missing:
            expected = ", ".join(self.required_columns)
            found = ", ".join(self.header[:8]) + ("..." if len(self.header) > 8 else "")
            raise FileFormatError(
                f"This is not a {self.label} file, or its delimiter is not a comma, semicolon or "
                f"tab: the header lacks {', '.join(missing)}. Expected columns include {expected}; "
                f"found {found or 'nothing'}."
            )

    def has(self, column: str) -> bool:
        return column in self.index

    def getter(self, cells: list[str]) -> Callable[[str], str]:
        """``get(column)``: the stripped cell, "" for a missing column or a short row.

        A C-level ``__getitem__`` rather than a Python closure: it runs ~30 times per row.
        """
        # Short rows leave the last columns out, long rows' extra cells are ignored.
        row = defaultdict(str, zip(self.header, [cell.strip() for cell in cells], strict=False))
        return row.__getitem__

    def parse_cell(self, row: int, column: str, parser: Callable[..., Any], text: str, **kw):
        """``parser(text)``, or None with a row error naming the column."""
        try:
            return parser(text, **kw)
        except ValueError as exc:
            self.problems.error(row, column, str(exc))
            return None

    def money(self, text: str) -> Decimal:
        """``parse_money`` once per distinct text: a file repeats its prices (a size run, a range
        at one price), and a Decimal can be shared. A text refused raises each time."""
        value = self._money.get(text)
        if value is None:
            value = self._money[text] = parse_money(text, self.money_places)
        return value

    def read(self, rows: Iterator[tuple[int, list[str]]]) -> list[ProductRecord]:
        raise NotImplementedError
