"""Bad rows are reported by row and column, and a file with any error writes nothing."""

import csv
import io
from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import Workbook

from backoffice.catalog.models import Category, Product, ProductImage, Variant
from backoffice.imports.formats.native import native_header
from backoffice.imports.services import import_catalog
from backoffice.inventory.models import Stock, StockMovement

pytestmark = pytest.mark.django_db
HEADER = native_header(["main"])


def native_row(**values) -> dict:
    row = {
        "handle": "tee", "name": "Tee", "category": "Clothing > Tops", "published": "true",
        "featured": "false", "sku": "TEE-S", "variant_name": "S", "option1_name": "Size",
        "option1_value": "S", "price": "10.00", "stock:main": "4",
        "image_urls": "https://cdn.example.test/tee.jpg", "image_alt_texts": "A tee",
    }
    row.update(values)
    return row


def native_csv(rows: list[dict], *, delimiter=",", bom=False, crlf=False) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=HEADER, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    data = out.getvalue().encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def run(data: bytes, *, filename="products.csv", file_format="native", dry_run=False):
    return import_catalog(
        stream=io.BytesIO(data), filename=filename, file_format=file_format, dry_run=dry_run
    )


def counts() -> tuple[int, ...]:
    return (
        Category.objects.count(), Product.objects.count(), Variant.objects.count(),
        ProductImage.objects.count(), Stock.objects.count(), StockMovement.objects.count(),
    )


def errors(result) -> list[tuple[int, str]]:
    return [(e.row, e.column) for e in result.errors]


TWO_GOOD = [native_row(), native_row(sku="TEE-M", variant_name="M", option1_value="M")]


def test_a_native_file_imports_with_a_bom_crlf_and_semicolons():
    data = native_csv(TWO_GOOD, delimiter=";", bom=True, crlf=True)
    result = run(data)
    assert result.errors == []
    tee = Product.objects.get(slug="tee")
    assert tee.category.path == "clothing/tops"
    assert sorted(tee.variants.values_list("sku", flat=True)) == ["TEE-M", "TEE-S"]
    assert Stock.objects.get(variant__sku="TEE-M").quantity == 4


def test_a_tab_separated_file_imports():
    assert run(native_csv(TWO_GOOD, delimiter="\t")).errors == []
    assert Variant.objects.count() == 2


def test_the_dry_run_reports_a_preview_and_writes_nothing():
    before = counts()
    result = run(native_csv(TWO_GOOD), dry_run=True)
    assert result.errors == [] and not result.written
    assert result.counts["products"] == {"created": 1}
    assert result.counts["variants"] == {"created": 2}
    assert result.counts["categories"] == {"created": 2}
    assert result.preview[0]["sku"] == "TEE-S" and result.preview[0]["variant_action"] == "created"
    assert counts() == before


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"sku": ""}, (3, "sku")),
        ({"price": "abc"}, (3, "price")),
        ({"price": "-1.00"}, (3, "price")),
        ({"price": "1.005"}, (3, "price")),
        ({"price": ""}, (3, "price")),
        ({"compare_at_price": "5.00"}, (3, "compare_at_price")),
        ({"sku": "TEE-S"}, (3, "sku")),  # the same SKU twice in one file
        ({"stock:main": "-3"}, (3, "stock:main")),
        ({"stock:main": "lots"}, (3, "stock:main")),
        ({"published": "maybe"}, (2, "published")),
        ({"attributes": "{not json"}, (2, "attributes")),
        ({"description": "x" * 100_001}, (2, "description")),
        ({"name": "n" * 300}, (2, "name")),
        ({"variant_name": "v" * 300}, (3, "name")),
        ({"handle": "///"}, (2, "handle")),
        ({"category": "Clothing > > Tops"}, (2, "category")),
    ],
)
def test_one_bad_row_is_reported_and_nothing_is_written(bad, expected):
    second = native_row(sku="TEE-M", variant_name="M", option1_value="M")
    # Product-level problems go on the product's first row, variant ones on the second.
    rows = [native_row(**bad), second] if expected[0] == 2 else [native_row(), {**second, **bad}]
    before = counts()
    result = run(native_csv(rows))
    assert expected in errors(result), result.errors
    assert not result.written
    assert counts() == before


def test_prices_with_trailing_zeros_are_fine_and_money_stays_decimal():
    result = run(native_csv([native_row(price="10.500", compare_at_price="12")]))
    assert result.errors == []
    variant = Variant.objects.get()
    assert str(variant.price) == "10.50" and str(variant.compare_at_price) == "12.00"


def test_a_price_repeated_on_many_rows_is_checked_on_each():
    """Each distinct money text is parsed once a file: a bad one is still an error on every row
    that has it, and the good ones are the same price on every row."""
    rows = [native_row(sku=f"TEE-{n}", variant_name=str(n), option1_value=str(n),
                       price="12,50" if n in (1, 3) else "9.90")
            for n in range(4)]
    assert errors(run(native_csv(rows))) == [(3, "price"), (5, "price")]
    for row in rows:
        row["price"] = "9.90"
    assert run(native_csv(rows)).errors == []
    assert {str(price) for price in Variant.objects.values_list("price", flat=True)} == {"9.90"}
    assert Variant.objects.count() == 4


def test_a_sku_that_belongs_to_another_product_is_refused():
    run(native_csv(TWO_GOOD))
    other = native_row(handle="other-tee", name="Other", sku="TEE-M")
    result = run(native_csv([other]))
    assert errors(result) == [(2, "sku")]
    assert "belongs to another product ('tee')" in result.errors[0].message
    assert not Product.objects.filter(slug="other-tee").exists()


def test_an_unknown_warehouse_column_is_an_error():
    data = native_csv(TWO_GOOD).replace(b"stock:main", b"stock:mars")
    assert (2, "stock:mars") in errors(run(data))


def test_a_wrong_header_is_a_file_error_naming_the_expected_columns():
    result = run(b"name|sku|price\nTee|T1|10\n")
    assert errors(result) == [(0, "")]
    assert "handle" in result.errors[0].message and "Expected columns" in result.errors[0].message
    shopify = run(native_csv(TWO_GOOD), file_format="shopify")
    assert errors(shopify) == [(0, "")] and "Handle" in shopify.errors[0].message


def test_an_empty_file_is_a_file_error():
    for data in (b"", b"\xef\xbb\xbf", b"\n\n"):
        result = run(data)
        assert errors(result) == [(0, "")] and "empty" in result.errors[0].message


def test_a_file_that_is_not_utf8_is_a_clear_error():
    data = native_csv([native_row(name="Café")]).decode().encode("latin-1")
    result = run(data)
    assert errors(result) == [(0, "")] and "UTF-8" in result.errors[0].message
    assert Product.objects.count() == 0


def test_a_huge_cell_is_a_row_error_not_a_crash():
    result = run(native_csv([native_row(description="é" * 300_000)]))
    assert errors(result) == [(2, "description")]


def test_xlsx_files_import_with_numbers_as_cells():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    row = native_row(price=None, compare_at_price=None, barcode=None, weight_grams=None)
    cells = [row.get(name, "") for name in HEADER]
    cells[HEADER.index("price")] = 19.99  # a float cell
    cells[HEADER.index("compare_at_price")] = 25
    cells[HEADER.index("barcode")] = 4006381333931.0
    cells[HEADER.index("weight_grams")] = 250
    cells[HEADER.index("stock:main")] = 6
    sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    result = run(buffer.getvalue(), filename="products.xlsx")
    assert result.errors == []
    variant = Variant.objects.get()
    assert str(variant.price) == "19.99" and str(variant.compare_at_price) == "25.00"
    assert variant.barcode == "4006381333931" and variant.weight_grams == 250
    assert Stock.objects.get().quantity == 6


def test_a_broken_xlsx_is_a_file_error():
    result = run(b"PK\x03\x04 not really a zip", filename="products.xlsx")
    assert errors(result) == [(0, "")] and "XLSX" in result.errors[0].message


def test_native_category_and_stock_files():
    run(native_csv(TWO_GOOD))
    categories = b"category,slug,description,active,position,google_category_id\n" \
                 b"Clothing > Tops,tops,Everything on top,true,2,1604\nClothing > Hats,,,true,0,\n"
    result = run(categories, filename="categories.csv")
    assert result.kind == "categories" and result.errors == []
    assert result.counts["categories"] == {"updated": 1, "created": 1}
    tops = Category.objects.get(path="clothing/tops")
    assert tops.description == "Everything on top" and tops.google_category_id == 1604
    assert Category.objects.filter(path="clothing/hats").exists()

    stock = b"sku,warehouse,quantity\nTEE-S,main,9\nTEE-M,main,4\nNOPE,main,1\n"
    refused = run(stock, filename="stock.csv")
    assert refused.kind == "stock" and errors(refused) == [(4, "sku")]
    assert Stock.objects.get(variant__sku="TEE-S").quantity == 4
    result = run(stock.replace(b"NOPE,main,1\n", b""), filename="stock.csv")
    assert result.counts["stock levels"] == {"set": 1, "unchanged": 1}
    assert Stock.objects.get(variant__sku="TEE-S").quantity == 9


def test_a_prices_file_sets_prices_and_exports_back_unchanged():
    from backoffice.imports.exports import export_catalog

    run(native_csv(TWO_GOOD))
    prices = (b"sku,price,compare_at_price,cost_price\n"
              b"TEE-S,12.50,15.00,6.00\nTEE-M,10.00,,\n")
    dry = run(prices, filename="prices.csv", dry_run=True)
    assert (dry.kind, dry.errors, dry.counts["prices"]) == (
        "prices", [], {"updated": 1, "unchanged": 1})
    assert Variant.objects.get(sku="TEE-S").price == Decimal("10.00"), "a dry run"
    result = run(prices, filename="prices.csv")
    small = Variant.objects.get(sku="TEE-S")
    assert (small.price, small.compare_at_price, small.cost_price) == (
        Decimal("12.50"), Decimal("15.00"), Decimal("6.00"))
    assert result.written and Product.objects.get().price_min == Decimal("10.00")

    out = io.BytesIO()
    assert export_catalog(stream=out, filename="prices.csv", kind="prices") == 2
    again = run(out.getvalue(), filename="prices.csv")
    assert again.counts["prices"] == {"unchanged": 2}

    # Only a price column: compare-at and cost stay as they are.
    run(b"sku,price\nTEE-S,13.00\n", filename="prices.csv")
    small.refresh_from_db()
    assert (small.price, small.compare_at_price, small.cost_price) == (
        Decimal("13.00"), Decimal("15.00"), Decimal("6.00"))


@pytest.mark.parametrize(("bad", "expected"), [
    (b"sku,price\nTEE-S,12.999\n", [(2, "price")]),
    (b"sku,price\nTEE-S,-1\n", [(2, "price")]),
    (b"sku,price\nTEE-S,\n", [(2, "price")]),
    (b"sku,price\nNOPE,5.00\n", [(2, "sku")]),
    (b"sku,price\nTEE-S,5.00\nTEE-S,6.00\n", [(3, "sku")]),
    (b"sku,price,compare_at_price\nTEE-S,9.00,8.00\n", [(2, "compare_at_price")]),
    (b"sku,price\nTEE-S,20.00\nTEE-M,5.00\n", [(2, "price")]),  # above its kept compare-at
])
def test_a_bad_prices_row_is_named_and_no_price_changes(bad, expected):
    run(native_csv([native_row(compare_at_price="18.00"),
                    native_row(sku="TEE-M", variant_name="M", option1_value="M")]))
    result = run(bad, filename="prices.csv")
    assert errors(result) == expected, [e.as_dict() for e in result.errors]
    assert sorted(Variant.objects.values_list("price", flat=True)) == [
        Decimal("10.00"), Decimal("10.00")]


def _many_rows(n: int) -> bytes:
    rows = []
    for i in range(n):
        rows.append(native_row(
            handle=f"p{i // 2}", name=f"P{i // 2}", sku=f"SKU-{i}", option1_value=str(i),
            category=f"Cat {i % 3} > Sub {i % 2}", extra_categories="Sale",
        ))
    return native_csv(rows)


@pytest.mark.parametrize("n", [10, 200])
def test_an_import_takes_a_bounded_number_of_queries(n, django_assert_max_num_queries):
    data = _many_rows(n)
    with cachalot_disabled(), django_assert_max_num_queries(40):
        result = run(data)
    assert result.errors == [] and Variant.objects.count() == n
    with cachalot_disabled(), django_assert_max_num_queries(15):
        again = run(data)
    assert again.total("created") == again.total("updated") == 0


def test_the_query_count_does_not_grow_with_the_rows():
    counts = []
    for n, prefix in ((10, "a"), (200, "b")):
        data = _many_rows(n).replace(b"SKU-", f"{prefix}-SKU-".encode())
        data = data.replace(b"\np", f"\n{prefix}p".encode())
        with cachalot_disabled(), CaptureQueriesContext(connection) as queries:
            assert run(data).errors == []
        counts.append(len(queries))
    # PostgreSQL inserts 1,000 rows per statement; SQLite caps a statement at 999 parameters,
    # so it needs a few more INSERTs (about one per 60 rows), never one per row.
    allowance = 0 if connection.vendor == "postgresql" else 10
    assert counts[1] <= counts[0] + allowance, counts


def test_the_query_cache_is_back_on_after_work_that_raised():
    from cachalot.api import LOCAL_STORAGE

    from backoffice.caching import query_cache_disabled

    with pytest.raises(ValueError), query_cache_disabled():
        assert LOCAL_STORAGE.cachalot_enabled is False
        raise ValueError("an import failed")
    assert getattr(LOCAL_STORAGE, "cachalot_enabled", True) is True
