"""The stock and product pages as a merchant reads them: a stock row named by SKU, product and
warehouse with a readable status, its movements link and its "Adjust stock" button (permission
checked), refusals that say which SKU and warehouse, the product page's stock table, and the
option/attribute/tag inputs that replace raw JSON (posted as plain fields, so no script needed).
"""

import re
from html import unescape
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages

from backoffice.catalog.models import Product, Variant
from backoffice.inventory.models import MovementReason, Stock, StockMovement, Warehouse
from backoffice.inventory.services import (
    InsufficientStock,
    StockLevel,
    adjust_stock,
    bulk_set_stock_levels,
    default_warehouse,
)

pytestmark = pytest.mark.django_db


class _Page(HTMLParser):
    """The page's tables (header and cell texts, nested tables apart) and the fields its forms
    would post, as a browser would: checked boxes only, selected options only."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self._tables: list[dict] = []
        self._cell: list[str] | None = None
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._tables.append({"headers": [], "rows": []})
        elif tag == "tr" and self._tables:
            self._tables[-1]["row"] = []
        elif tag in ("th", "td") and self._tables:
            self._cell = []
        elif tag == "input" and attrs.get("name"):
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            if kind not in ("submit", "button", "file"):
                self.fields.append((attrs["name"], attrs.get("value") or ""))
        elif tag == "select":
            self._select = attrs.get("name")
        elif tag == "option" and self._select and "selected" in attrs:
            self.fields.append((self._select, attrs.get("value") or ""))
        elif tag == "textarea":
            self._textarea, self._text = attrs.get("name"), []

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._tables and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            table = self._tables[-1]
            (table["headers"] if tag == "th" else table.setdefault("row", [])).append(text)
            self._cell = None
        elif tag == "tr" and self._tables:
            row = self._tables[-1].pop("row", [])
            if row:
                self._tables[-1]["rows"].append(row)
        elif tag == "table" and self._tables:
            self.tables.append(self._tables.pop())
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.fields.append((self._textarea, "".join(self._text).lstrip("\n")))
            self._textarea = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._textarea:
            self._text.append(data)

    def form_data(self) -> dict[str, list[str]]:
        data: dict[str, list[str]] = {}
        for name, value in self.fields:
            if "__prefix__" not in name and name != "csrfmiddlewaretoken":
                data.setdefault(name, []).append(value)
        return data


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def stock() -> Stock:
    product = Product.objects.create(name="Linen Shirt", slug="linen-shirt")
    variant = Variant.objects.create(
        product=product, sku="DEMO-30", price="40.00", cost_price="12.00"
    )
    bulk_set_stock_levels([StockLevel(variant.pk, default_warehouse().pk, 68)])
    return Stock.objects.select_related("variant__product", "warehouse").get(variant=variant)


@pytest.fixture
def viewer(client, django_user_model):
    """Staff who may look at stock but not change it."""
    user = django_user_model.objects.create_user("clerk", password="pw-123-long", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="inventory", codename__in=["view_stock", "view_stockmovement"]
    ))
    client.force_login(user)
    return client


# --- The stock row page --------------------------------------------------------------------------


def test_the_stock_row_page_names_sku_product_and_warehouse_with_a_readable_status(
    staff_client, stock
):
    assert str(stock) == "DEMO-30 (Linen Shirt) in Main warehouse"
    html = staff_client.get(f"/admin/inventory/stock/{stock.pk}/change/").content.decode()
    text = unescape(html)
    for name in ("DEMO-30", "Linen Shirt", "Main warehouse", "In stock"):
        assert name in text
    assert "('in_stock'" not in text
    assert not re.search(r"\d+ @ \d+: \d+", text)  # the old "689 @ 1: 68"
    assert f'href="/admin/catalog/variant/{stock.variant_id}/change/"' in html
    assert f'href="/admin/catalog/product/{stock.variant.product_id}/change/"' in html


def test_movements_is_a_link_to_the_ledger_of_that_row(staff_client, stock):
    other = Variant.objects.create(product=stock.variant.product, sku="DEMO-31", price="40.00")
    adjust_stock(variant_id=other.pk, quantity_change=4)
    html = staff_client.get(f"/admin/inventory/stock/{stock.pk}/change/").content.decode()
    link = f"/admin/inventory/stockmovement/?stock__id__exact={stock.pk}"
    assert re.search(rf'<a href="{re.escape(link)}"[^>]*>Movements</a>', html)
    ledger = staff_client.get(link)
    assert [m.stock_id for m in ledger.context["cl"].result_list] == [stock.pk]


def test_the_row_page_adjusts_stock_through_its_button_and_writes_a_movement(
    staff_client, stock
):
    page = staff_client.get(f"/admin/inventory/stock/{stock.pk}/change/").content.decode()
    adjust_url = f"/admin/inventory/stock/{stock.pk}/adjust/"
    assert f'href="{adjust_url}"' in page
    form = staff_client.get(adjust_url)
    assert form.status_code == 200
    assert "Set to a counted level" in form.content.decode()

    response = staff_client.post(adjust_url, {
        "mode": "add", "quantity": "-3", "reason": MovementReason.DAMAGED,
        "reference": "R-1", "note": "dropped",
    })
    assert response.status_code == 302
    assert response["Location"] == f"/admin/inventory/stock/{stock.pk}/change/"
    assert _messages(response) == ["Stock adjusted for 1 row."]
    stock.refresh_from_db()
    assert stock.quantity == 65
    movement = StockMovement.objects.get(reason=MovementReason.DAMAGED)
    assert (movement.stock_id, movement.quantity_change, movement.quantity_after) == (
        stock.pk, -3, 65
    )
    assert (movement.actor.username, movement.reference, movement.note) == (
        "boss", "R-1", "dropped"
    )

    response = staff_client.post(adjust_url, {
        "mode": "set", "quantity": "70", "reason": MovementReason.COUNT,
        "reference": "", "note": "",
    })
    stock.refresh_from_db()
    assert stock.quantity == 70
    assert StockMovement.objects.get(reason=MovementReason.COUNT).quantity_change == 5


def test_an_invalid_adjustment_shows_the_form_again_and_changes_nothing(staff_client, stock):
    response = staff_client.post(f"/admin/inventory/stock/{stock.pk}/adjust/", {
        "mode": "add", "quantity": "0", "reason": MovementReason.ADJUSTMENT,
    })
    assert response.status_code == 200
    assert "Adding 0 changes nothing." in response.content.decode()
    assert StockMovement.objects.count() == 1  # the first level only


def test_adjusting_from_the_row_page_needs_the_change_permission(viewer, stock):
    page = viewer.get(f"/admin/inventory/stock/{stock.pk}/change/")
    assert page.status_code == 200
    adjust_url = f"/admin/inventory/stock/{stock.pk}/adjust/"
    assert adjust_url not in page.content.decode()
    assert viewer.get(adjust_url).status_code == 403
    response = viewer.post(adjust_url, {
        "mode": "add", "quantity": "5", "reason": MovementReason.RECEIVED,
    })
    assert response.status_code == 403
    stock.refresh_from_db()
    assert stock.quantity == 68
    assert StockMovement.objects.count() == 1


def test_a_refusal_names_the_sku_and_the_warehouse(staff_client, stock):
    Stock.objects.filter(pk=stock.pk).update(quantity_allocated=60)
    response = staff_client.post(f"/admin/inventory/stock/{stock.pk}/adjust/", {
        "mode": "add", "quantity": "-20", "reason": MovementReason.DAMAGED,
    })
    assert response.status_code == 200  # the form stays, with the refusal above it
    [message] = _messages(response)
    assert message.startswith("DEMO-30 (Linen Shirt) in Main warehouse: on hand cannot go to 48")
    assert "60 are allocated to orders" in message
    assert "variant" not in message
    assert message in unescape(response.content.decode())
    stock.refresh_from_db()
    assert stock.quantity == 68

    with pytest.raises(InsufficientStock) as refused:
        adjust_stock(variant_id=stock.variant_id, warehouse_id=stock.warehouse_id,
                     quantity_change=-10)
    assert str(refused.value).startswith("DEMO-30 (Linen Shirt) in Main warehouse:")


# --- The product page ----------------------------------------------------------------------------


def test_the_product_page_draws_stock_per_warehouse_as_a_table(staff_client, stock):
    mombasa = Warehouse.objects.create(code="mombasa", name="Mombasa")
    bulk_set_stock_levels([StockLevel(stock.variant_id, mombasa.pk, 3)])
    html = staff_client.get(
        f"/admin/catalog/product/{stock.variant.product_id}/change/"
    ).content.decode()
    [table] = [t for t in _Page(html).tables if t["headers"][:2] == ["SKU", "Warehouse"]]
    assert table["headers"] == ["SKU", "Warehouse", "On hand", "Allocated", "Available", "Status"]
    assert table["rows"] == [
        ["DEMO-30", "Main warehouse", "68", "0", "68", "In stock"],
        ["DEMO-30", "Mombasa", "3", "0", "3", "Low"],
    ]
    assert f'href="/admin/inventory/stock/{stock.pk}/change/"' in html


def _product_post(**fields) -> dict:
    data = {
        "name": "Kikoi", "slug": "kikoi", "description": "", "brand": "", "product_type": "",
        "category": "", "google_category_id": "", "is_active": "on", "seo_title": "",
        "seo_description": "", "tags": "",
        "variants-TOTAL_FORMS": "1", "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "1", "variants-MAX_NUM_FORMS": "1000",
        "images-TOTAL_FORMS": "0", "images-INITIAL_FORMS": "0",
        "images-MIN_NUM_FORMS": "0", "images-MAX_NUM_FORMS": "1000",
        "variants-0-sku": "KIKOI-BLUE-M", "variants-0-name": "Blue / M",
        "variants-0-price": "25.00", "variants-0-compare_at_price": "",
        "variants-0-cost_price": "", "variants-0-barcode": "", "variants-0-is_active": "on",
        "variants-0-track_inventory": "on", "variants-0-position": "0",
    }
    data.update(fields)
    return data


def test_options_attributes_and_tags_are_saved_from_their_rows_and_round_trip(staff_client):
    response = staff_client.post("/admin/catalog/product/add/", _product_post(**{
        "attributes__name": ["material", "fit", ""],
        "attributes__value": ["linen", "relaxed", ""],
        "tags": " summer, linen,, summer ",
        "variants-0-option_values__name": ["Colour", "Size", ""],
        "variants-0-option_values__value": ["Blue", "M", ""],
    }))
    assert response.status_code == 302, response.context["errors"]
    product = Product.objects.get(slug="kikoi")
    assert product.attributes == {"material": "linen", "fit": "relaxed"}
    assert product.tags == ["summer", "linen"]
    variant = product.variants.get()
    assert variant.option_values == {"Colour": "Blue", "Size": "M"}

    # A value an import stored as a number stays one when the form is saved untouched.
    Product.objects.filter(pk=product.pk).update(
        attributes={"material": "linen", "fit": "relaxed", "weight_kg": 2}
    )
    url = f"/admin/catalog/product/{product.pk}/change/"
    html = staff_client.get(url).content.decode()
    page = _Page(html)
    posted = page.form_data()
    # One row per stored pair and one blank row; PostgreSQL's jsonb keeps keys in its own order.
    def rows(prefix: str) -> list[tuple[str, str]]:
        return list(zip(posted[f"{prefix}__name"], posted[f"{prefix}__value"], strict=True))

    assert sorted(rows("attributes")) == [
        ("", ""), ("fit", "relaxed"), ("material", "linen"), ("weight_kg", "2")]
    assert rows("attributes")[-1] == ("", "")
    assert posted["tags"] == ["summer, linen"]
    assert sorted(rows("variants-0-option_values")) == [("", ""), ("Colour", "Blue"), ("Size", "M")]
    assert re.search(r'<li class="bo-tag"><span>summer</span></li>', html)  # chips, even without JS
    assert 'class="bo-tags-list"' in html and "data-bo-kv-add" in html

    response = staff_client.post(url, posted)  # the page's own fields, sent back unchanged
    assert response.status_code == 302, response.context["errors"]
    product.refresh_from_db()
    variant.refresh_from_db()
    assert product.attributes == {"material": "linen", "fit": "relaxed", "weight_kg": 2}
    assert product.tags == ["summer", "linen"]
    assert variant.option_values == {"Colour": "Blue", "Size": "M"}

    posted.update({"attributes__name": ["material", "", ""], "attributes__value": ["wool", "", ""],
                   "tags": "winter", "variants-0-option_values__name": ["Colour", ""],
                   "variants-0-option_values__value": ["Red", ""]})
    assert staff_client.post(url, posted).status_code == 302
    product.refresh_from_db()
    variant.refresh_from_db()
    assert (product.attributes, product.tags) == ({"material": "wool"}, ["winter"])
    assert variant.option_values == {"Colour": "Red"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"attributes__name": ["material"], "attributes__value": [""]},
     'Each attribute needs a name and a value: "material" has no value.'),
    ({"attributes__name": ["", "fit"], "attributes__value": ["linen", "slim"]},
     'Each attribute needs a name and a value: the value "linen" has no name.'),
    ({"variants-0-option_values__name": ["Size"], "variants-0-option_values__value": [" "]},
     'Each option needs a name and a value: "Size" has no value.'),
    ({"variants-0-option_values__name": ["Size", "size"],
      "variants-0-option_values__value": ["M", "L"]},
     'Each option name can be used once: "size" is there twice.'),
    ({"variants-0-option_values__name": ["Size", "Colour", "Fit", "Sleeve"],
      "variants-0-option_values__value": ["M", "Red", "Slim", "Long"]},
     "A variant can have at most 3 options."),
    ({"tags": "summer, " + "x" * 101},
     f'A tag can be at most 100 characters: "{"x" * 39}…" is longer.'),
])
def test_bad_rows_are_refused_with_a_message_a_merchant_understands(
    staff_client, fields, message
):
    response = staff_client.post("/admin/catalog/product/add/", _product_post(**fields))
    assert response.status_code == 200
    text = unescape(response.content.decode())
    assert message in text
    assert "JSON" not in text
    assert not Product.objects.exists()


def test_the_sku_input_is_wide_enough_to_read(staff_client, stock):
    html = staff_client.get(
        f"/admin/catalog/product/{stock.variant.product_id}/change/"
    ).content.decode()
    sku_input = re.search(r'<input[^>]*name="variants-0-sku"[^>]*>', html).group(0)
    assert "bo-sku-input" in sku_input
    assert 'value="DEMO-30"' in sku_input
    assert "catalog/admin/product_widgets.css" in html
    assert "catalog/admin/product_widgets.js" in html


def test_a_variant_imported_with_more_than_three_options_still_saves(staff_client, stock):
    options = {"Size": "M", "Colour": "Red", "Fit": "Slim", "Sleeve": "Long"}  # a WooCommerce file
    Variant.objects.filter(pk=stock.variant_id).update(option_values=options)
    url = f"/admin/catalog/variant/{stock.variant_id}/change/"
    posted = _Page(staff_client.get(url).content.decode()).form_data()
    # Every stored option and no blank row (PostgreSQL's jsonb keeps keys in its own order).
    assert sorted(posted["option_values__name"]) == sorted(options)
    assert staff_client.post(url, posted).status_code == 302
    assert Variant.objects.get(pk=stock.variant_id).option_values == options

    posted["option_values__name"] += ["Collar"]
    posted["option_values__value"] += ["Round"]
    response = staff_client.post(url, posted)
    assert "A variant can have at most 4 options." in response.content.decode()
