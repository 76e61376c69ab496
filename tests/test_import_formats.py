"""Shopify, WooCommerce and Google taxonomy files import as they are, and again without change."""

import io
from decimal import Decimal
from pathlib import Path

import pytest

from backoffice.catalog.models import Category, Product, ProductImage, Variant
from backoffice.imports.services import import_catalog
from backoffice.inventory.models import MovementReason, Stock, StockMovement, Warehouse

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data"


def run(name_or_bytes, file_format, *, filename=None, dry_run=False, **kw):
    if isinstance(name_or_bytes, bytes):
        data, filename = name_or_bytes, filename or "upload.csv"
    else:
        data, filename = (DATA / name_or_bytes).read_bytes(), name_or_bytes
    return import_catalog(
        stream=io.BytesIO(data), filename=filename, file_format=file_format, dry_run=dry_run, **kw
    )


# --- Shopify -------------------------------------------------------------------------------------


def test_a_shopify_export_imports_products_variants_images_categories_and_stock():
    result = run("shopify_products.csv", "shopify")
    assert result.errors == []
    assert result.counts["products"] == {"created": 3}
    assert result.counts["variants"] == {"created": 7}
    assert Product.objects.count() == 3 and Variant.objects.count() == 7

    shirt = Product.objects.get(slug="linen-shirt")
    assert shirt.name == "Linen Shirt" and shirt.brand == "Northwind"
    assert shirt.product_type == "Shirts" and shirt.tags == ["linen", "summer"]
    assert shirt.seo_title == "Linen Shirt | Northwind" and shirt.google_category_id == 212
    assert shirt.is_active is True
    assert shirt.category.path == "apparel-accessories/clothing/shirts-tops"
    assert shirt.category.parent.name == "Clothing"
    assert list(shirt.images.values_list("source_url", "alt_text")) == [
        ("https://cdn.example.test/img/linen-sand.jpg", "Sand linen shirt"),
        ("https://cdn.example.test/img/linen-detail.jpg", "Collar detail"),
        ("https://cdn.example.test/img/linen-olive.jpg", ""),
    ]
    sand_m = Variant.objects.get(sku="LIN-SAND-M")
    assert sand_m.option_values == {"Colour": "Sand", "Size": "M"}
    assert sand_m.name == "Sand / M"
    assert sand_m.price == Decimal("49.00") and sand_m.compare_at_price == Decimal("59.00")
    assert sand_m.cost_price == Decimal("21.50") and sand_m.barcode == "4006381333931"
    assert sand_m.weight_grams == 210
    assert list(shirt.variants.values_list("sku", flat=True)) == [
        "LIN-SAND-M", "LIN-SAND-L", "LIN-OLV-M", "LIN-OLV-L",
    ]


def test_shopify_default_title_is_one_variant_without_options_and_status_unpublishes():
    run("shopify_products.csv", "shopify")
    tote = Product.objects.get(slug="canvas-tote")
    (variant,) = tote.variants.all()
    assert variant.option_values == {} and variant.name == ""
    assert variant.weight_grams == 500
    assert tote.is_active is False  # archived
    assert Product.objects.get(slug="wool-socks").is_active is False  # draft


def test_shopify_image_only_rows_add_images_and_odd_values_are_warnings():
    result = run("shopify_products.csv", "shopify")
    socks = Product.objects.get(slug="wool-socks")
    assert list(socks.images.values_list("alt_text", flat=True)) == ["Grey wool socks", "A pair"]
    assert Variant.objects.get(sku="SOCK-36").weight_grams == 85
    # The compare-at price below the price is dropped, oversold stock imports as 0: warnings.
    assert Variant.objects.get(sku="SOCK-36").compare_at_price is None
    messages = {(w.row, w.column) for w in result.warnings}
    assert (7, "Variant Compare At Price") in messages
    assert (8, "Variant Inventory Qty") in messages
    assert Stock.objects.get(variant__sku="SOCK-41").quantity == 0


def test_stock_levels_become_import_movements_in_the_chosen_warehouse():
    depot = Warehouse.objects.create(code="depot", name="Depot")
    run("shopify_products.csv", "shopify", warehouse_code="depot")
    stock = Stock.objects.get(variant__sku="LIN-SAND-M")
    assert stock.warehouse == depot and stock.quantity == 7
    movement = StockMovement.objects.get(stock=stock)
    assert movement.reason == MovementReason.IMPORT and movement.quantity_change == 7


def test_reimporting_the_same_shopify_file_changes_nothing():
    run("shopify_products.csv", "shopify")
    movements = StockMovement.objects.count()
    again = run("shopify_products.csv", "shopify")
    assert again.errors == []
    assert again.counts["products"] == {"unchanged": 3}
    assert again.counts["variants"] == {"unchanged": 7}
    assert again.counts["categories"] == {"created": 0}
    assert again.total("created") == again.total("updated") == 0
    assert Product.objects.count() == 3 and ProductImage.objects.count() == 6
    assert StockMovement.objects.count() == movements


def test_a_changed_price_updates_the_variant_and_not_a_duplicate():
    run("shopify_products.csv", "shopify")
    data = (DATA / "shopify_products.csv").read_bytes().replace(b",18.50,", b",19.50,")
    result = run(data, "shopify")
    assert result.counts["variants"] == {"unchanged": 6, "updated": 1}
    assert Variant.objects.get(sku="TOTE-1").price == Decimal("19.50")
    assert Variant.objects.count() == 7


def test_a_changed_product_row_updates_its_text_lists_category_and_variant_options():
    """Changed products and variants are written with one ``UPDATE ... FROM (VALUES ...)``:
    text, JSON lists and objects, the category and money each arrive as they should."""
    run("shopify_products.csv", "shopify")
    data = (DATA / "shopify_products.csv").read_bytes()
    data = data.replace(b"linen-shirt,Linen Shirt,", b"linen-shirt,Linen Shirt II,")
    data = data.replace(b'"linen, summer"', b'"linen, sale"')
    data = data.replace(b"> Clothing > Shirts & Tops", b"> Clothing > Sale")
    data = data.replace(b",Olive,,M,,,LIN-OLV-M,", b",Olive,,XL,,,LIN-OLV-M,")
    result = run(data, "shopify")
    assert result.errors == []
    assert result.counts["products"]["updated"] == 1
    shirt = Product.objects.get(slug="linen-shirt")
    assert (shirt.name, shirt.tags, shirt.category.name) == ("Linen Shirt II", ["linen", "sale"],
                                                             "Sale")
    olive = Variant.objects.get(sku="LIN-OLV-M")
    assert (olive.option_values, olive.name, olive.price) == (
        {"Colour": "Olive", "Size": "XL"}, "Olive / XL", Decimal("45.00"))
    assert run(data, "shopify").total("updated") == 0


def test_shopify_rows_need_a_sku():
    data = (DATA / "shopify_products.csv").read_bytes().replace(b",LIN-OLV-M,", b",,")
    result = run(data, "shopify")
    assert [(e.row, e.column) for e in result.errors] == [(4, "Variant SKU")]
    assert "SKU is required" in result.errors[0].message
    assert Product.objects.count() == 0


# --- WooCommerce ---------------------------------------------------------------------------------


def test_woocommerce_variable_products_become_variants_and_grouped_ones_are_skipped():
    result = run("woocommerce_products.csv", "woocommerce")
    assert result.errors == []
    assert result.counts["products"] == {"created": 2}
    assert result.skipped_rows == 2
    assert {w.row for w in result.warnings if "creates it" not in w.message} == {6, 7}

    jacket = Product.objects.get(slug="rain-jacket")
    assert jacket.is_featured is True and jacket.tags == ["rain", "outdoor"]
    assert jacket.category.path == "outerwear/jackets"
    assert list(jacket.extra_categories.values_list("path", flat=True)) == ["sale"]
    assert jacket.images.count() == 3
    red = Variant.objects.get(sku="rain-jacket-red")
    assert red.product == jacket and red.option_values == {"Colour": "Red"}
    assert red.price == Decimal("79.00") and red.compare_at_price == Decimal("99.00")
    assert red.weight_grams == 600  # the parent's weight, in kg in the header
    navy = Variant.objects.get(sku="rain-jacket-navy")
    assert navy.price == Decimal("99.00") and navy.compare_at_price is None
    assert navy.weight_grams == 650 and navy.is_active is False
    assert Stock.objects.get(variant=navy).quantity == 2

    thermos = Product.objects.get(slug="thermos-05")
    assert thermos.attributes == {"Material": "Steel"}
    (variant,) = thermos.variants.all()
    assert variant.sku == "thermos-05" and variant.price == Decimal("24.90")

    again = run("woocommerce_products.csv", "woocommerce")
    assert again.total("created") == again.total("updated") == 0


def test_a_woocommerce_variation_with_an_unknown_parent_is_an_error():
    data = (DATA / "woocommerce_products.csv").read_bytes().replace(b"id:10", b"id:99")
    result = run(data, "woocommerce")
    assert [(e.row, e.column) for e in result.errors] == [(5, "Parent")]


# --- Google taxonomy ----------------------------------------------------------------------------


def test_the_google_taxonomy_builds_the_tree_with_ids_and_reimports_idempotently():
    result = run("google_taxonomy.txt", "google-taxonomy")
    assert result.errors == [] and result.counts["categories"] == {"created": 10}
    pans = Category.objects.get(google_category_id=202)
    assert pans.path == "kitchen/cookware/pans" and pans.level == 2
    assert [c.name for c in pans.get_ancestors()] == ["Kitchen", "Cookware"]
    kitchen = Category.objects.get(google_category_id=200)
    assert kitchen.get_descendant_count() == 4
    # The nested set is consistent: one query gives the whole tree in order.
    assert list(Category.objects.order_by("tree_id", "lft").values_list("path", flat=True))[:5] == [
        "garden", "garden/plants", "garden/tools", "garden/tools/rakes", "garden/tools/spades",
    ]

    again = run("google_taxonomy.txt", "google-taxonomy")
    assert again.counts["categories"] == {"unchanged": 10, "created": 0}
    assert Category.objects.count() == 10

    renamed = (DATA / "google_taxonomy.txt").read_bytes().replace(b"> Pans", b"> Frying Pans")
    third = run(renamed, "google-taxonomy", filename="taxonomy.txt")
    assert third.counts["categories"] == {"unchanged": 9, "updated": 1, "created": 0}
    assert Category.objects.get(google_category_id=202).name == "Frying Pans"


def test_products_land_in_taxonomy_categories_by_name():
    run("google_taxonomy.txt", "google-taxonomy")
    run("woocommerce_products.csv", "woocommerce")
    thermos = Product.objects.get(slug="thermos-05")
    assert thermos.category.google_category_id == 204


def test_bad_taxonomy_lines_are_row_errors():
    result = run(b"# header\n1 - A\nnot a line\n2 - A > > C\n", "google-taxonomy",
                 filename="t.txt")
    assert [(e.row, e.column) for e in result.errors] == [(3, "line"), (4, "line")]
    assert Category.objects.count() == 0


def test_the_imported_tree_is_numbered_as_mptt_would_number_it():
    Category.objects.create(name="Zoo", slug="zoo")  # an existing tree, before the import
    run("google_taxonomy.txt", "google-taxonomy")
    run("shopify_products.csv", "shopify")
    fields = ("id", "tree_id", "lft", "rght", "level")
    ours = list(Category.objects.order_by("id").values_list(*fields))
    Category.objects.rebuild()
    assert list(Category.objects.order_by("id").values_list(*fields)) == ours


def test_shopify_weights_in_other_units_and_a_header_only_file():
    header = (
        b"Handle,Title,Option1 Name,Option1 Value,Variant SKU,Variant Price,Variant Weight,"
        b"Variant Weight Unit,Published\n"
    )
    data = header + b"scale,Scale,Title,Default Title,SC-1,10,2,lb,FALSE\n"
    result = run(data, "shopify")
    assert result.errors == []
    variant = Variant.objects.get(sku="SC-1")
    assert variant.weight_grams == 907 and variant.product.is_active is False
    empty = run(header, "shopify")
    assert [(e.row, e.column) for e in empty.errors] == [(0, "")]
    assert "no data rows" in empty.errors[0].message


# --- Bad files and rows, in the platforms' own formats -------------------------------------

SHOPIFY = (DATA / "shopify_products.csv").read_bytes()
WOO = (DATA / "woocommerce_products.csv").read_bytes()
TAXONOMY = (DATA / "google_taxonomy.txt").read_bytes()


def _problems(result):
    return [(e.row, e.column) for e in result.errors]


@pytest.mark.parametrize(("file_format", "data", "expected"), [
    ("shopify", SHOPIFY.replace(b",LIN-OLV-M,", b",,"), [(4, "Variant SKU")]),
    ("shopify", SHOPIFY.replace(b",49.00,59.00,", b",4x,59.00,", 1), [(2, "Variant Price")]),
    ("shopify", SHOPIFY.replace(b",49.00,59.00,", b",-3.00,59.00,", 1), [(2, "Variant Price")]),
    ("shopify", SHOPIFY.replace(b",LIN-SAND-L,", b",LIN-SAND-M,"), [(3, "Variant SKU")]),
    ("shopify", SHOPIFY.replace(b"<p>A breezy linen shirt.</p>", b"x" * 300_000),
     [(2, "Body (HTML)")]),
    ("woocommerce", WOO.replace(b"simple,thermos-05,", b"simple,,"), [(3, "SKU")]),
    ("woocommerce", WOO.replace(b",24.90,", b",twenty,"), [(3, "Regular price")]),
    ("woocommerce", WOO.replace(b"variation,rain-jacket-navy,", b"variation,rain-jacket-red,"),
     [(5, "SKU")]),
    ("woocommerce", WOO.replace(b",30,0.35,", b",thirty,0.35,"), [(3, "Stock")]),
])
def test_a_bad_row_in_a_platform_export_is_named_and_nothing_is_written(
    file_format, data, expected
):
    result = run(data, file_format)
    assert _problems(result) == expected, [e.as_dict() for e in result.errors]
    assert result.errors[0].message
    assert (Product.objects.count(), Variant.objects.count(), Stock.objects.count()) == (0, 0, 0)


@pytest.mark.parametrize(("file_format", "data"), [
    ("shopify", SHOPIFY), ("woocommerce", WOO), ("google-taxonomy", TAXONOMY),
])
def test_platform_files_with_a_bom_and_crlf_import_as_they_are(file_format, data):
    result = run(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"), file_format,
                 filename="export.txt" if file_format == "google-taxonomy" else "export.csv")
    assert result.errors == []
    assert result.total("created") > 0


@pytest.mark.parametrize("file_format", ["shopify", "woocommerce", "google-taxonomy"])
@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\r\n"])
def test_an_empty_platform_file_is_a_file_error(file_format, data):
    result = run(data, file_format, filename="empty.txt")
    assert _problems(result) == [(0, "")]
    assert "empty" in result.errors[0].message or "no taxonomy lines" in result.errors[0].message


@pytest.mark.parametrize(("file_format", "data"), [("shopify", SHOPIFY), ("woocommerce", WOO)])
def test_a_platform_file_with_the_wrong_delimiter_names_the_missing_columns(file_format, data):
    import csv

    rows = list(csv.reader(io.StringIO(data.decode())))
    out = io.StringIO()
    csv.writer(out, delimiter="|").writerows(rows)
    result = run(out.getvalue().encode(), file_format)
    assert _problems(result) == [(0, "")]
    assert "column" in result.errors[0].message.lower()
    assert Product.objects.count() == 0


def test_an_unknown_category_is_created_and_said_on_the_row_that_names_it():
    result = run(WOO.replace(b"Kitchen > Bottles", b"Kitchen > Botles"), "woocommerce",
                 dry_run=True)
    new = [(w.row, w.column, w.message) for w in result.warnings if "creates it" in w.message]
    assert (3, "Categories", "No category 'Kitchen > Botles' yet: the import creates it.") in new
    assert Category.objects.count() == 0, "a dry run"


def test_a_google_id_twice_in_the_taxonomy_is_a_row_error():
    result = run(TAXONOMY + b"202 - Garden > Pans\n", "google-taxonomy", filename="t.txt")
    assert len(result.errors) == 1 and "202" in result.errors[0].message, result.errors
    assert Category.objects.count() == 0


def test_woocommerce_gtin_and_brands_columns_are_kept():
    header, *rows = WOO.decode().splitlines()
    data = "\n".join([header + ',"GTIN, UPC, EAN, or ISBN",Brands',
                      *[row + (",4006381333931,Thermo Co" if "thermos-05" in row else ",,")
                        for row in rows]]).encode()
    result = run(data, "woocommerce")
    assert result.errors == []
    thermos = Variant.objects.get(sku="thermos-05")
    assert (thermos.barcode, thermos.product.brand) == ("4006381333931", "Thermo Co")


def test_new_products_are_written_with_the_listing_columns_a_refresh_would_give():
    """New products get their price range and stock flag with their own row (not rewritten
    after their variants): the same values ``refresh_listings`` computes from the variants and
    stock, whatever the mix: some stock, none, not tracked, sold on backorder, a draft variant."""
    from backoffice.catalog.services import refresh_listings

    header = ("Handle,Title,Option1 Name,Option1 Value,Variant SKU,Variant Inventory Tracker,"
              "Variant Inventory Qty,Variant Inventory Policy,Variant Price,Status\n")
    rows = [
        "stocked,Stocked,Size,S,ST-S,shopify,0,deny,30.00,active",
        "stocked,,,M,ST-M,shopify,2,deny,20.00,",
        "empty,Empty,Size,S,EM-S,shopify,0,deny,15.00,active",
        "untracked,Untracked,Title,Default Title,UN-1,,0,deny,9.00,active",
        "backorder,Backorder,Title,Default Title,BO-1,shopify,0,continue,12.00,active",
    ]
    result = run((header + "\n".join(rows) + "\n").encode(), "shopify")
    assert result.errors == [] and result.counts["products"] == {"created": 4}
    assert run("shopify_products.csv", "shopify").errors == []
    assert run("woocommerce_products.csv", "woocommerce").errors == []
    listed = {p.slug: (p.price_min, p.price_max, p.is_in_stock) for p in Product.objects.all()}
    assert listed["stocked"] == (Decimal("20.00"), Decimal("30.00"), True)
    assert listed["empty"][2] is False
    assert listed["untracked"][2] is True and listed["backorder"][2] is True
    assert refresh_listings() == 0, "a full refresh finds nothing to correct"
