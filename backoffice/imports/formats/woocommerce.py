"""WooCommerce's product CSV, as its exporter writes it.

Decisions (see the README):

- ``simple`` products become a product with one variant; its SKU is the variant's SKU and the
  product's handle is the slug of that SKU. ``variable`` products carry the product (handle = slug
  of their SKU, or of their name without one); their ``variation`` rows (``Parent`` = the parent's
  SKU or ``id:NN``) become its variants, options from ``Attribute N name/value(s)``.
- ``grouped`` and ``external`` products have nothing to buy here: skipped with a row warning.
  A variable product with no variations in the file is skipped with a warning too.
- Price = ``Sale price`` when set, else ``Regular price``; compare-at = ``Regular price`` when on
  sale. A sale price above the regular price is imported as the price, with a warning.
- Every simple product and variation needs a SKU (variants are matched by SKU).
- ``Weight (kg)``/``(g)``/``(lbs)``/``(oz)``: the unit comes from the header; a variation without a
  weight takes its parent's. ``Published`` 1 is published, 0 and -1 (draft) are not.
- Categories "A > B, C > D": the first is the primary category, the others extra ones.
- ``GTIN, UPC, EAN, or ISBN`` (WooCommerce 9.2+) is the variant's barcode; ``Brands``
  (9.6+) the product's brand (the first one listed).
- Stock management, as WooCommerce's own importer reads it: a number in ``Stock`` means the stock
  is managed (tracked here); an empty ``Stock`` means it is not (WooCommerce's exporter leaves it
  empty then), and ``In stock?`` says whether it sells: 1 (or "backorder") is a variant whose
  stock is not tracked, always available; 0 is out of stock: tracked, with 0 in stock. A
  ``Manage stock?`` column (other exporters), when filled, says it directly.
  ``Backorders allowed?`` 1 or "notify" allows backorders, 0 does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from backoffice.imports.formats.base import ProductFormat
from backoffice.imports.records import (
    ProductRecord,
    VariantRecord,
    make_slug,
    parse_bool,
    parse_int,
    parse_weight_grams,
    split_category_path,
)

_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
GTIN_COLUMNS = ("GTIN, UPC, EAN, or ISBN", "GTIN, UPC, EAN or ISBN")
_WEIGHT_HEADER = re.compile(r"^Weight\s*\((\w+)\)$", re.IGNORECASE)


def split_woo_list(text: str) -> list[str]:
    items = []
    for item in _UNESCAPED_COMMA.split(text):
        item = item.replace("\\,", ",").strip()
        if item and item not in items:
            items.append(item)
    return items


class WooCommerceFormat(ProductFormat):
    code = "woocommerce"
    label = "WooCommerce product CSV"
    required_columns = ("Type", "SKU", "Name", "Regular price", "Parent")
    product_columns = {"name": "Name", "description": "Description", "brand": "Brands"}
    variant_columns = {"sku": "SKU", "barcode": GTIN_COLUMNS[0], "stock": "Stock"}

    def read(self, rows: Iterator[tuple[int, list[str]]]) -> list[ProductRecord]:
        self.weight_column, self.weight_unit = "", "kg"
        for name in self.header:
            match = _WEIGHT_HEADER.match(name)
            if match:
                self.weight_column, self.weight_unit = name, match.group(1)
        products: dict[str, ProductRecord] = {}
        parent_by_sku: dict[str, ProductRecord] = {}
        parent_by_id: dict[str, ProductRecord] = {}
        parent_weight: dict[int, str] = {}
        variations = []
        for row, cells in rows:
            get = self.getter(cells)
            kinds = {kind.strip().lower() for kind in get("Type").split(",")}
            if "variation" in kinds:
                variations.append((row, cells))
                continue
            if kinds & {"grouped", "external"}:
                kind = "grouped" if "grouped" in kinds else "external"
                self.problems.warn(
                    row, "Type", f"{kind.capitalize()} products have nothing to buy here; skipped.",
                    skipped=True,
                )
                continue
            if not kinds & {"simple", "variable"}:
                self.problems.error(row, "Type", f"Unknown product type {get('Type')!r}.")
                continue
            sku = get("SKU")
            if "simple" in kinds and not sku:
                self.problems.error(row, "SKU", "A SKU is required for a simple product.")
                continue
            handle = make_slug(sku or get("Name"), "product")
            if handle in products:
                self.problems.error(
                    row, "SKU", f"Another product in this file has the handle {handle!r}."
                )
                continue
            product = products[handle] = self._product(row, handle, get, simple="simple" in kinds)
            parent_weight[id(product)] = get(self.weight_column) if self.weight_column else ""
            if "simple" in kinds:
                variant = self._variant(row, sku, get, {})
                product.values["attributes"] = self._attributes(get)
                product.variants.append(variant)
            else:
                if sku:
                    parent_by_sku[sku] = product
                if get("ID"):
                    parent_by_id[get("ID")] = product
        for row, cells in variations:
            get = self.getter(cells)
            parent_ref = get("Parent")
            if parent_ref.lower().startswith("id:"):
                product = parent_by_id.get(parent_ref[3:].strip())
            else:
                product = parent_by_sku.get(parent_ref)
            if product is None:
                self.problems.error(
                    row, "Parent",
                    f"No variable product {parent_ref!r} in this file (give its SKU or id:NN).",
                )
                continue
            sku = get("SKU")
            if not sku:
                self.problems.error(row, "SKU", "A SKU is required for a variation.")
                continue
            product.variants.append(
                self._variant(row, sku, get, self._attributes(get), parent_weight[id(product)])
            )
            for url in split_woo_list(get("Images")):
                product.add_image(url)
        result = []
        for product in products.values():
            if not product.variants:
                self.problems.warn(
                    product.row, "Type", "A variable product without variations; skipped.",
                    skipped=True,
                )
                continue
            result.append(product)
        return result

    def _attributes(self, get) -> dict:
        attributes = {}
        for n in range(1, 10):
            name = get(f"Attribute {n} name")
            if not self.has(f"Attribute {n} name"):
                break
            value = get(f"Attribute {n} value(s)")
            if name and value:
                attributes[name] = value
        return attributes

    def _product(self, row: int, handle: str, get, *, simple: bool) -> ProductRecord:
        product = ProductRecord(row=row, handle=handle, category_column="Categories")
        values = product.values
        values["name"] = get("Name")
        if not values["name"]:
            self.problems.error(row, "Name", "A product name is required.")
        if self.has("Description") or self.has("Short description"):
            values["description"] = get("Description") or get("Short description")
        if self.has("Tags"):
            values["tags"] = split_woo_list(get("Tags"))
        if self.has("Brands"):  # WooCommerce 9.6+ (its built-in brands)
            brands = split_woo_list(get("Brands"))
            values["brand"] = brands[0] if brands else ""
        if self.has("Published") and get("Published"):
            flag = self.parse_cell(row, "Published", parse_bool, get("Published"))
            if flag is not None:
                values["is_active"] = flag
        if self.has("Is featured?") and get("Is featured?"):
            flag = self.parse_cell(row, "Is featured?", parse_bool, get("Is featured?"))
            if flag is not None:
                values["is_featured"] = flag
        categories = split_woo_list(get("Categories"))
        if categories:
            product.category = split_category_path(categories[0])
            product.extra_categories = [split_category_path(path) for path in categories[1:]]
        for url in split_woo_list(get("Images")):
            product.add_image(url)
        return product

    def _variant(
        self, row: int, sku: str, get, options: dict, parent_weight: str = ""
    ) -> VariantRecord:
        variant = VariantRecord(row=row, sku=sku, sku_column="SKU")
        values = variant.values
        values["option_values"] = options
        values["name"] = " / ".join(options.values())
        regular_text, sale_text = get("Regular price"), get("Sale price")
        regular = (
            self.parse_cell(row, "Regular price", self.money, regular_text)
            if regular_text else None
        )
        sale = self.parse_cell(row, "Sale price", self.money, sale_text) if sale_text else None
        if regular is None and sale is None:
            if not regular_text and not sale_text:
                self.problems.error(row, "Regular price", "A price is required.")
            return variant
        if sale is not None:
            values["price"] = sale
            values["compare_at_price"] = regular if regular is not None and regular > sale else None
            if regular is not None and regular < sale:
                self.problems.warn(row, "Sale price", "The sale price is above the regular price.")
        else:
            values["price"] = regular
            values["compare_at_price"] = None
        if self.has("Published") and get("Published") and get("Type").strip() == "variation":
            flag = self.parse_cell(row, "Published", parse_bool, get("Published"))
            if flag is not None:
                values["is_active"] = flag
        for column in GTIN_COLUMNS:  # WooCommerce 9.2+ exports the product's GTIN
            if self.has(column):
                values["barcode"] = get(column).strip()
                break
        weight = (get(self.weight_column) if self.weight_column else "") or parent_weight
        if weight:
            values["weight_grams"] = self.parse_cell(
                row, self.weight_column, parse_weight_grams, weight, unit=self.weight_unit
            )
        stock_text = get("Stock")
        if stock_text:
            quantity = self.parse_cell(row, "Stock", parse_int, stock_text, what="quantity")
            if quantity is not None:
                if quantity < 0:
                    self.problems.warn(
                        row, "Stock", f"{quantity} is oversold stock; imported as 0."
                    )
                    quantity = 0
                variant.stock[self.warehouse_code] = quantity
        self._stock_management(row, get, variant)
        return variant

    def _stock_management(self, row: int, get, variant: VariantRecord) -> None:
        """``track_inventory`` and ``allow_backorder`` from the stock columns (see the module's
        docstring); a file without them leaves both as they are."""
        values = variant.values
        backorders = get("Backorders allowed?").lower()
        if backorders:
            flag = True if backorders == "notify" else self.parse_cell(
                row, "Backorders allowed?", parse_bool, backorders
            )
            if flag is not None:
                values["allow_backorder"] = flag
        managed = None
        if self.has("Manage stock?") and get("Manage stock?"):
            managed = self.parse_cell(row, "Manage stock?", parse_bool, get("Manage stock?"))
        elif self.has("Stock"):
            managed = bool(get("Stock"))
        if managed is None:  # no column says, or a bad cell (reported)
            return
        if managed:  # the quantity says what there is to sell
            values["track_inventory"] = True
            return
        status = get("In stock?").lower()
        if status in ("", "backorder", "onbackorder"):
            # Not managed and for sale (WooCommerce's importer reads an empty status as "in
            # stock"): always available; "backorder" says backorders by its name too.
            values["track_inventory"] = False
            if status:
                values["allow_backorder"] = True
            return
        in_stock = self.parse_cell(row, "In stock?", parse_bool, status)
        if in_stock:
            values["track_inventory"] = False
        elif in_stock is not None:
            # Not managed, out of stock: nothing to sell until someone counts some in.
            values["track_inventory"] = True
            variant.stock.setdefault(self.warehouse_code, 0)
