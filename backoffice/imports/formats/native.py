"""Our own format: one row per variant, product columns repeated on every row of the product.

``export_products`` writes exactly these columns, so an export imports back with no change.
Lists in one cell (extra categories, images, alt texts) are separated by `` | ``; tags by commas;
category paths are names joined by `` > `` (as in Shopify and WooCommerce). Stock has a column per
warehouse, ``stock:<warehouse code>``; an empty stock cell leaves that stock as it is.
``track_inventory`` (false: stock not counted, always available) and ``allow_backorder`` (true:
sells on once out of stock) are yes/no; an empty cell leaves the flag as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

from backoffice.imports.formats.base import ProductFormat
from backoffice.imports.records import (
    ProductRecord,
    VariantRecord,
    parse_attributes,
    parse_bool,
    parse_int,
    split_category_path,
    split_list,
)

LIST_SEPARATOR = " | "
STOCK_PREFIX = "stock:"

PRODUCT_COLUMNS = [
    "handle", "name", "description", "brand", "type", "category", "extra_categories", "tags",
    "attributes", "published", "featured", "seo_title", "seo_description", "google_category_id",
]
VARIANT_COLUMNS = [
    "sku", "variant_name",
    "option1_name", "option1_value", "option2_name", "option2_value",
    "option3_name", "option3_value",
    "price", "compare_at_price", "cost_price", "barcode", "weight_grams", "variant_active",
    "track_inventory", "allow_backorder",
]
IMAGE_COLUMNS = ["image_urls", "image_alt_texts"]


def native_header(warehouse_codes: list[str]) -> list[str]:
    stock = [f"{STOCK_PREFIX}{code}" for code in warehouse_codes]
    return PRODUCT_COLUMNS + VARIANT_COLUMNS + stock + IMAGE_COLUMNS


class NativeFormat(ProductFormat):
    code = "native"
    label = "native (products)"
    required_columns = ("handle", "name", "sku", "price")

    def read(self, rows: Iterator[tuple[int, list[str]]]) -> list[ProductRecord]:
        products: dict[str, ProductRecord] = {}
        stock_columns = [
            (name, name[len(STOCK_PREFIX):].strip())
            for name in self.header
            if name.startswith(STOCK_PREFIX)
        ]
        for row, cells in rows:
            get = self.getter(cells)
            handle = get("handle")
            if not handle:
                self.problems.error(row, "handle", "A handle is required on every row.")
                continue
            product = products.get(handle)
            if product is None:
                product = products[handle] = self._product(row, handle, get)
            variant = self._variant(row, get, stock_columns)
            if variant is not None:
                product.variants.append(variant)
        return list(products.values())

    def _product(self, row: int, handle: str, get) -> ProductRecord:
        product = ProductRecord(row=row, handle=handle)
        values = product.values
        values["name"] = get("name")
        if not values["name"]:
            self.problems.error(row, "name", "A product name is required.")
        for column, field_name in (
            ("description", "description"), ("brand", "brand"), ("type", "product_type"),
            ("seo_title", "seo_title"), ("seo_description", "seo_description"),
        ):
            if self.has(column):
                values[field_name] = get(column)
        if self.has("tags"):
            values["tags"] = split_list(get("tags"), ",")
        if self.has("attributes"):
            attributes = self.parse_cell(row, "attributes", parse_attributes, get("attributes"))
            if attributes is not None:
                values["attributes"] = attributes
        for column, field_name in (("published", "is_active"), ("featured", "is_featured")):
            if self.has(column) and get(column):
                flag = self.parse_cell(row, column, parse_bool, get(column))
                if flag is not None:
                    values[field_name] = flag
        if self.has("google_category_id"):
            text = get("google_category_id")
            values["google_category_id"] = (
                self.parse_cell(row, "google_category_id", parse_int, text, what="id")
                if text else None
            )
        if self.has("category"):
            text = get("category")
            if text:
                product.category = split_category_path(text)
            else:
                product.clear_category = True
        if self.has("extra_categories"):
            product.extra_categories = [
                split_category_path(path)
                for path in split_list(get("extra_categories"), LIST_SEPARATOR.strip())
            ]
        if self.has("image_urls"):
            urls = split_list(get("image_urls"), LIST_SEPARATOR.strip())
            alts = [a.strip() for a in get("image_alt_texts").split(LIST_SEPARATOR.strip())]
            product.images = [
                (url, alts[i] if i < len(alts) else "") for i, url in enumerate(urls)
            ]
        return product

    def _variant(self, row: int, get, stock_columns) -> VariantRecord | None:
        sku = get("sku")
        if not sku:
            self.problems.error(row, "sku", "A SKU is required on every row.")
            return None
        variant = VariantRecord(row=row, sku=sku)
        values = variant.values
        if self.has("variant_name"):
            values["name"] = get("variant_name")
        options = {}
        for n in (1, 2, 3):
            name, value = get(f"option{n}_name"), get(f"option{n}_value")
            if name and value:
                options[name] = value
            elif value and not name:
                self.problems.error(row, f"option{n}_name", "An option value needs its name.")
        if any(self.has(f"option{n}_name") for n in (1, 2, 3)):
            values["option_values"] = options
        price = get("price")
        if not price:
            self.problems.error(row, "price", "A price is required.")
        else:
            values["price"] = self.parse_cell(row, "price", self.money, price)
        for column in ("compare_at_price", "cost_price"):
            if self.has(column):
                text = get(column)
                values[column] = self.parse_cell(row, column, self.money, text) if text else None
        if self.has("barcode"):
            values["barcode"] = get("barcode")
        if self.has("weight_grams"):
            text = get("weight_grams")
            values["weight_grams"] = (
                self.parse_cell(row, "weight_grams", parse_int, text, what="number of grams")
                if text else None
            )
        for column, field_name in (("variant_active", "is_active"),
                                   ("track_inventory", "track_inventory"),
                                   ("allow_backorder", "allow_backorder")):
            if self.has(column) and get(column):
                flag = self.parse_cell(row, column, parse_bool, get(column))
                if flag is not None:
                    values[field_name] = flag
        for column, code in stock_columns:
            text = get(column)
            if text:
                quantity = self.parse_cell(row, column, parse_int, text, what="quantity")
                if quantity is not None:
                    variant.stock[code] = quantity
        return variant
