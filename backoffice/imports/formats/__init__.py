"""Product file formats the import engine reads, by the code the command line and admin use."""

from backoffice.imports.formats.base import ProductFormat
from backoffice.imports.formats.native import NativeFormat
from backoffice.imports.formats.shopify import ShopifyFormat
from backoffice.imports.formats.woocommerce import WooCommerceFormat

PRODUCT_FORMATS: dict[str, type[ProductFormat]] = {
    NativeFormat.code: NativeFormat,
    ShopifyFormat.code: ShopifyFormat,
    WooCommerceFormat.code: WooCommerceFormat,
}

__all__ = ["PRODUCT_FORMATS", "NativeFormat", "ProductFormat", "ShopifyFormat", "WooCommerceFormat"]
