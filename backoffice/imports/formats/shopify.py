"""Shopify's product CSV, as Shopify exports it.

Rows are grouped by ``Handle``: the first row of a handle carries the product (Title, Body,
Vendor, Type, Tags, Published, Status, SEO, categories, option names), later rows carry a variant
and/or an image. Decisions (see the README):

- Every variant row needs a ``Variant SKU`` (we match variants by SKU); a row with option values or
  a price but no SKU is a row error. A row with only ``Image Src`` is an image of the product.
- ``Option1 Name`` "Title" with value "Default Title" is Shopify's single default variant: it gets
  no options and an empty name.
- Published = ``Published`` is TRUE and ``Status`` is active (draft and archived are unpublished).
- ``Variant Grams`` is grams; a ``Variant Weight`` column (newer exports) is read in
  ``Variant Weight Unit`` (g, kg, lb, oz) and converted to grams.
- A compare-at price at or below the price is dropped with a warning: Shopify accepts it and shows
  no discount, so a Shopify export must import as it is.
- Negative ``Variant Inventory Qty`` (Shopify allows overselling) imports as 0, with a warning.
- ``Variant Inventory Tracker``: "shopify" (or any other tracker) means the stock is tracked; a
  blank cell means Shopify does not track it, so the variant's stock is not tracked here either
  (always available, never sold out; a quantity given is still kept as its on-hand stock).
  ``Variant Inventory Policy`` "continue" (sell when out of stock) allows backorders, "deny"
  does not. Without these columns the flags are left as they are (new variants: tracked, no
  backorders).
- ``Product Category`` (a taxonomy path "A > B > C") becomes the primary category, created if
  missing; when it is empty, a category whose Google id equals the Google Shopping category is used.
"""

from __future__ import annotations

from collections.abc import Iterator

from backoffice.imports.formats.base import ProductFormat
from backoffice.imports.records import (
    ProductRecord,
    VariantRecord,
    parse_bool,
    parse_int,
    parse_weight_grams,
    split_category_path,
    split_list,
)

DEFAULT_TITLE = "Default Title"
GOOGLE_CATEGORY = "Google Shopping / Google Product Category"
STATUS_PUBLISHED = {"active": True, "draft": False, "archived": False}
INVENTORY_POLICIES = {"deny": False, "continue": True}  # continue: sell when out of stock


class ShopifyFormat(ProductFormat):
    code = "shopify"
    label = "Shopify product CSV"
    product_columns = {
        "name": "Title", "description": "Body (HTML)", "brand": "Vendor", "product_type": "Type",
        "seo_title": "SEO Title", "seo_description": "SEO Description",
    }
    variant_columns = {"sku": "Variant SKU", "barcode": "Variant Barcode",
                       "stock": "Variant Inventory Qty"}
    required_columns = ("Handle", "Title", "Variant SKU", "Variant Price")

    def read(self, rows: Iterator[tuple[int, list[str]]]) -> list[ProductRecord]:
        products: dict[str, ProductRecord] = {}
        option_names: dict[str, list[str]] = {}
        for row, cells in rows:
            get = self.getter(cells)
            handle = get("Handle")
            if not handle:
                self.problems.error(row, "Handle", "A Handle is required on every row.")
                continue
            product = products.get(handle)
            if product is None:
                product = products[handle] = self._product(row, handle, get)
                option_names[handle] = [get(f"Option{n} Name") for n in (1, 2, 3)]
            self._images(product, get)
            sku = get("Variant SKU")
            option_values = [get(f"Option{n} Value") for n in (1, 2, 3)]
            if not sku and not any(option_values) and not get("Variant Price"):
                if not get("Image Src") and not get("Variant Image"):
                    self.problems.warn(
                        row, "Handle", "The row has no variant and no image.", skipped=True
                    )
                continue  # an image-only row
            if not sku:
                self.problems.error(
                    row, "Variant SKU",
                    "A SKU is required: variants are matched by SKU on every import.",
                )
                continue
            product.variants.append(
                self._variant(row, sku, get, option_names[handle], option_values)
            )
        return list(products.values())

    def _product(self, row: int, handle: str, get) -> ProductRecord:
        product = ProductRecord(row=row, handle=handle, category_column="Product Category")
        values = product.values
        values["name"] = get("Title")
        if not values["name"]:
            self.problems.error(row, "Title", "The first row of a product needs its Title.")
        for column, field_name in (
            ("Body (HTML)", "description"), ("Vendor", "brand"), ("Type", "product_type"),
            ("SEO Title", "seo_title"), ("SEO Description", "seo_description"),
        ):
            if self.has(column):
                values[field_name] = get(column)
        if self.has("Tags"):
            values["tags"] = split_list(get("Tags"), ",")
        published = True
        if self.has("Published") and get("Published"):
            published = bool(self.parse_cell(row, "Published", parse_bool, get("Published")))
        status = get("Status").lower()
        if status and status not in STATUS_PUBLISHED:
            self.problems.error(row, "Status", f"{status!r} is not active, draft or archived.")
        if self.has("Published") or self.has("Status"):
            values["is_active"] = published and STATUS_PUBLISHED.get(status or "active", False)
        google = get(GOOGLE_CATEGORY)
        if google:
            if google.isdigit():
                values["google_category_id"] = int(google)
            else:
                self.problems.warn(
                    row, GOOGLE_CATEGORY, "Not a numeric Google category id; ignored."
                )
        if get("Product Category"):
            product.category = split_category_path(get("Product Category"))
        return product

    def _images(self, product: ProductRecord, get) -> None:
        if get("Image Src"):
            product.add_image(get("Image Src"), get("Image Alt Text"))
        if get("Variant Image"):
            product.add_image(get("Variant Image"))

    def _variant(
        self, row: int, sku: str, get, names: list[str], option_values: list[str]
    ) -> VariantRecord:
        variant = VariantRecord(row=row, sku=sku, sku_column="Variant SKU")
        values = variant.values
        if option_values[0] == DEFAULT_TITLE and names[0] in ("Title", ""):
            options = {}
        else:
            options = {}
            for n, (name, value) in enumerate(zip(names, option_values, strict=True), start=1):
                if value:
                    options[name or f"Option{n}"] = value
        values["option_values"] = options
        values["name"] = " / ".join(options.values())
        price_text = get("Variant Price")
        if not price_text:
            self.problems.error(row, "Variant Price", "A price is required.")
        else:
            values["price"] = self.parse_cell(row, "Variant Price", self.money, price_text)
        if self.has("Variant Compare At Price"):
            text = get("Variant Compare At Price")
            compare = (
                self.parse_cell(row, "Variant Compare At Price", self.money, text)
                if text else None
            )
            price = values.get("price")
            if compare is not None and price is not None and compare <= price:
                if compare < price:
                    self.problems.warn(
                        row, "Variant Compare At Price",
                        f"{compare} is below the price {price}; ignored (no discount shown).",
                    )
                compare = None
            values["compare_at_price"] = compare
        if self.has("Cost per item"):
            text = get("Cost per item")
            values["cost_price"] = (
                self.parse_cell(row, "Cost per item", self.money, text) if text else None
            )
        if self.has("Variant Barcode"):
            values["barcode"] = get("Variant Barcode").lstrip("'")
        grams = get("Variant Grams")
        if grams:
            values["weight_grams"] = self.parse_cell(
                row, "Variant Grams", parse_weight_grams, grams
            )
        elif get("Variant Weight"):
            values["weight_grams"] = self.parse_cell(
                row, "Variant Weight", parse_weight_grams, get("Variant Weight"),
                unit=get("Variant Weight Unit") or "g",
            )
        quantity_text = get("Variant Inventory Qty")
        if quantity_text:
            quantity = self.parse_cell(
                row, "Variant Inventory Qty", parse_int, quantity_text, what="quantity"
            )
            if quantity is not None:
                if quantity < 0:
                    self.problems.warn(
                        row, "Variant Inventory Qty",
                        f"{quantity} is oversold stock; imported as 0.",
                    )
                    quantity = 0
                variant.stock[self.warehouse_code] = quantity
        if self.has("Variant Inventory Tracker"):
            values["track_inventory"] = bool(get("Variant Inventory Tracker"))
        policy = get("Variant Inventory Policy").lower()
        if policy in INVENTORY_POLICIES:
            values["allow_backorder"] = INVENTORY_POLICIES[policy]
        elif policy:
            self.problems.warn(
                row, "Variant Inventory Policy",
                f"{get('Variant Inventory Policy')!r} is not deny or continue; ignored.",
            )
        return variant
