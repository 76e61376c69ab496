"""An export imports back with no change; exports stream in a bounded number of queries."""

import csv
import io
from pathlib import Path

import pytest
from cachalot.api import cachalot_disabled

from backoffice.catalog.models import Category, Product, ProductImage, Variant
from backoffice.imports.exports import export_catalog
from backoffice.imports.services import import_catalog
from backoffice.inventory.models import StockMovement, Warehouse
from backoffice.inventory.services import adjust_stock

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data"


def load(name: str, file_format: str) -> None:
    result = import_catalog(
        stream=io.BytesIO((DATA / name).read_bytes()), filename=name, file_format=file_format
    )
    assert result.errors == []


def export(kind="products", filename="export.csv") -> bytes:
    buffer = io.BytesIO()
    export_catalog(stream=buffer, filename=filename, kind=kind)
    return buffer.getvalue()


def reimport(data: bytes, filename: str):
    return import_catalog(stream=io.BytesIO(data), filename=filename, file_format="native")


def snapshot():
    return (
        list(Product.objects.order_by("id").values()),
        list(Variant.objects.order_by("id").values()),
        list(ProductImage.objects.order_by("id").values()),
        list(Category.objects.order_by("id").values()),
        StockMovement.objects.count(),
    )


@pytest.fixture
def catalog():
    load("google_taxonomy.txt", "google-taxonomy")
    load("shopify_products.csv", "shopify")
    load("woocommerce_products.csv", "woocommerce")
    Warehouse.objects.create(code="depot", name="Depot")
    adjust_stock(variant_id=Variant.objects.get(sku="TOTE-1").pk, quantity_change=3,
                 warehouse_id=Warehouse.objects.get(code="depot").pk)
    product = Product.objects.get(slug="linen-shirt")
    product.attributes = {"material": "linen", "fit": "relaxed"}
    product.save()
    product.extra_categories.add(Category.objects.get(google_category_id=204))


@pytest.mark.parametrize("filename", ["export.csv", "export.xlsx"])
def test_export_then_import_changes_nothing(catalog, filename):
    before = snapshot()
    data = export(filename=filename)
    result = reimport(data, filename)
    assert result.errors == []
    assert result.total("created") == 0 and result.total("updated") == 0
    assert result.counts["products"] == {"unchanged": 5}
    assert result.counts["variants"] == {"unchanged": 10}
    assert snapshot() == before


def test_the_products_export_has_a_row_per_variant_and_stock_per_warehouse(catalog):
    rows = list(csv.DictReader(io.StringIO(export().decode())))
    assert len(rows) == 10
    tote = next(r for r in rows if r["sku"] == "TOTE-1")
    assert tote["stock:main"] == "40" and tote["stock:depot"] == "3"
    assert tote["category"] == "Apparel & Accessories > Handbags, Wallets & Cases"
    assert tote["published"] == "false" and tote["price"] == "18.50"
    shirt = next(r for r in rows if r["sku"] == "LIN-SAND-M")
    assert shirt["extra_categories"] == "Kitchen > Bottles"
    assert shirt["attributes"] == '{"fit": "relaxed", "material": "linen"}'


def test_an_edited_export_updates_only_what_changed(catalog):
    data = export().decode().replace("Linen Shirt,", "Linen Shirt II,", 1).encode()
    result = reimport(data, "edited.csv")
    assert result.counts["products"] == {"unchanged": 4, "updated": 1}
    assert Product.objects.get(slug="linen-shirt").name == "Linen Shirt II"


def test_categories_and_stock_exports_round_trip(catalog):
    movements = StockMovement.objects.count()
    for kind in ("categories", "stock"):
        result = reimport(export(kind=kind), f"{kind}.csv")
        assert result.kind == kind and result.errors == []
        assert result.total("created") == result.total("updated") == result.total("set") == 0
    assert StockMovement.objects.count() == movements


def test_the_export_takes_a_bounded_number_of_queries(catalog, django_assert_max_num_queries):
    with cachalot_disabled(), django_assert_max_num_queries(10):
        export()
