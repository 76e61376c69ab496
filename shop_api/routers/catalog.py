"""Catalog browsing: the category tree, product listings with filters, product detail. Public.

Every route here answers from the storefront response cache when it can
(``backoffice.catalog.storefront_cache``: a hit runs none of the code below).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Literal

from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema
from ninja.decorators import decorate_view
from pydantic import StringConstraints

from backoffice.catalog import storefront, storefront_cache
from backoffice.money import money_text
from shop_api.errors import ApiError
from shop_api.pagination import MAX_PAGE, MAX_PAGE_SIZE
from shop_api.schemas import ERROR_RESPONSES, Money, PriceFilter

router = Router(tags=["catalog"])


class CategoryNode(Schema):
    id: int
    name: str
    slug: str
    path: str
    children: list[CategoryNode]


class CategoryRef(Schema):
    name: str
    slug: str
    path: str


class CategoryOut(Schema):
    name: str
    slug: str
    path: str
    description: str
    breadcrumbs: list[CategoryRef]
    children: list[CategoryRef]
    average_price: Money | None = Field(
        description="Average lowest price of the products in it and below it."
    )


class ImageOut(Schema):
    url: str
    alt: str


class VariantOut(Schema):
    sku: str
    name: str
    options: dict[str, str]
    price: Money
    compare_at_price: Money | None
    discount_percentage: Decimal | None
    availability: Literal["in_stock", "low", "out"]


class ProductSummary(Schema):
    slug: str
    name: str
    brand: str
    price_min: Money | None
    price_max: Money | None
    in_stock: bool
    featured: bool
    rating_average: Decimal
    rating_count: int
    image: ImageOut | None
    variants: list[VariantOut]


class ProductPageOut(Schema):
    items: list[ProductSummary]
    count: int = Field(description="Products matching the filters, on every page: exact, or "
                                   "the database's estimate when ``count_exact`` is false.")
    count_exact: bool = Field(description="False for a large listing (more than about 10,000 "
                                          "products): ``count`` is then an estimate, and the "
                                          "last pages it implies may come back empty.")
    next: str | None = Field(description="Pass as ``after`` for the following page; null on "
                                         "the last page and for the price orderings.")
    page: int
    page_size: int


class ProductOut(ProductSummary):
    description: str
    attributes: dict
    tags: list
    category: CategoryRef | None
    breadcrumbs: list[CategoryRef]
    images: list[ImageOut]
    seo_title: str
    seo_description: str


def _discount(price: Decimal, compare_at: Decimal | None) -> Decimal | None:
    if compare_at is None or compare_at <= price or not compare_at:
        return None
    return ((compare_at - price) * 100 / compare_at).quantize(Decimal("0.01"))


def _variants(variants: list[dict]) -> list[dict]:
    """Variants as rows (``storefront.LISTING_VARIANT_VALUES``)."""
    return [
        {
            "sku": v["sku"], "name": v["name"],
            "options": {str(k): str(val) for k, val in (v["option_values"] or {}).items()},
            "price": v["price"], "compare_at_price": v["compare_at_price"],
            "discount_percentage": _discount(v["price"], v["compare_at_price"]),
            "availability": v["stock_status"],
        }
        for v in variants
    ]


def _image_url(file_name: str, source_url: str) -> str:
    if file_name:
        from django.core.files.storage import default_storage

        return default_storage.url(file_name)
    return source_url


def _summary(row: dict) -> dict:
    """A listing row (``storefront.ProductPage``) as the API shows it."""
    first = None
    if row.get("image_file") or row.get("image_source_url"):
        first = {"url": _image_url(row["image_file"], row["image_source_url"]),
                 "alt": row["image_alt"] or row["name"]}
    return {
        "slug": row["slug"], "name": row["name"], "brand": row["brand"],
        "price_min": row["price_min"], "price_max": row["price_max"],
        "in_stock": row["is_in_stock"], "featured": row["is_featured"],
        "rating_average": row["rating_average"], "rating_count": row["rating_count"],
        "image": first, "variants": _variants(row["variants"]),
    }


def _ref(category) -> dict:
    return {"name": category.name, "slug": category.slug, "path": category.path}


@router.get("/categories", response={200: list[CategoryNode], **ERROR_RESPONSES})
@decorate_view(storefront_cache.cached(list[CategoryNode], stock=False))
def categories(request: HttpRequest):
    """The whole category tree, nested (one query)."""
    return storefront.category_tree()


@router.get("/categories/{path:path}", response={200: CategoryOut, **ERROR_RESPONSES})
@decorate_view(storefront_cache.cached(CategoryOut, stock=False))
def category(request: HttpRequest, path: str):
    """A category by its path (e.g. ``clothing/men``): breadcrumbs, children, average price."""
    try:
        node = storefront.category_by_path(path)
    except storefront.CatalogQueryError as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    return {
        **_ref(node), "description": node.description,
        "breadcrumbs": [_ref(c) for c in storefront.breadcrumbs(node)],
        "children": [_ref(c) for c in node.get_children().filter(is_active=True)],
        "average_price": storefront.average_price(node),
    }


Pair = Annotated[str, StringConstraints(pattern=r"^[^:\x00]{1,50}:[^\x00\n]{1,100}$")]


class ProductQuery(Schema):
    category: Annotated[str, StringConstraints(max_length=1000)] = Field(
        "", description="A category path; products in it and below it."
    )
    brand: list[Annotated[str, StringConstraints(max_length=120)]] = Field(
        default_factory=list, description="One or more brands."
    )
    min_price: PriceFilter = Field(None, description="Lowest price, e.g. 10.00; empty: none.")
    max_price: PriceFilter = Field(None, description="Highest price, e.g. 99.50; empty: none.")
    in_stock: bool | None = None
    featured: bool | None = None
    option: list[Pair] = Field(default_factory=list, description="e.g. Size:M (repeatable)")
    attribute: list[Pair] = Field(default_factory=list, description="e.g. material:cotton")
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = Field(
        "", description="Words in the name, brand or description, or an exact SKU."
    )
    ordering: Literal["newest", "price", "-price", "name", "rating"] = "newest"
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(24, ge=1, le=MAX_PAGE_SIZE)
    after: Annotated[str, StringConstraints(max_length=500)] = Field(
        "", description="A previous answer's ``next``: the page after it, as fast deep in a "
                        "listing as on page 1 (orderings newest, name and rating; not with "
                        "``page``).")


def _pairs(values: list[str]) -> dict[str, str]:
    return dict(value.split(":", 1) for value in values)


@router.get("/products", response={200: ProductPageOut, **ERROR_RESPONSES})
@decorate_view(storefront_cache.cached(ProductPageOut))
def products(request: HttpRequest, filters: Query[ProductQuery]):
    """Published products, filtered, ordered and paginated, with the total count.

    Four queries at most, whatever the filters and the page.
    """
    if filters.after and filters.page != 1:
        raise ApiError(422, "validation_error", "Ask for a page by number or after a cursor, "
                       "not both.", [{"field": "after", "message": "not with page",
                                      "code": "invalid"}])
    try:
        page = storefront.product_page(
            storefront.ProductFilters(
                category=filters.category, brands=filters.brand, price_min=filters.min_price,
                price_max=filters.max_price, in_stock=filters.in_stock,
                featured=filters.featured, options=_pairs(filters.option),
                attributes=_pairs(filters.attribute), search=filters.q,
            ),
            ordering=filters.ordering, page=filters.page, page_size=filters.page_size,
            after=filters.after,
        )
    except storefront.CatalogQueryError as exc:
        if exc.field == "after":
            raise ApiError(422, "validation_error", str(exc),
                           [{"field": "after", "message": str(exc), "code": "invalid"}]) from exc
        raise ApiError(404, "not_found", str(exc),
                       [{"field": exc.field, "message": str(exc), "code": "not_found"}]) from exc
    return _listing_answer({"items": [_summary(p) for p in page.products], "count": page.count,
                            "count_exact": page.count_exact, "next": page.next,
                            "page": page.page, "page_size": page.page_size})


def _money_or_none(amount: Decimal | None) -> str | None:
    return None if amount is None else money_text(amount)


def _listing_answer(page: dict) -> HttpResponse:
    """``ProductPageOut``'s JSON, written here: the rows come from the database as the schema
    types them, and validating two dozen products with their variants again was a fifth of a
    page's time. A test keeps this equal to the schema's own serialisation."""
    for item in page["items"]:
        item["price_min"] = _money_or_none(item["price_min"])
        item["price_max"] = _money_or_none(item["price_max"])
        item["rating_average"] = str(item["rating_average"])
        for variant in item["variants"]:
            variant["price"] = money_text(variant["price"])
            variant["compare_at_price"] = _money_or_none(variant["compare_at_price"])
            percentage = variant["discount_percentage"]
            variant["discount_percentage"] = None if percentage is None else str(percentage)
    return HttpResponse(json.dumps(page), content_type="application/json; charset=utf-8")


@router.get("/products/{slug}", response={200: ProductOut, **ERROR_RESPONSES})
@decorate_view(storefront_cache.cached(ProductOut))
def product(request: HttpRequest, slug: str):
    """A published product: variants with prices, discount and availability (in stock, low or
    out; not the warehouse numbers), images, breadcrumbs and rating. Four queries at most."""
    item = storefront.product_detail(slug)
    if item is None:
        raise ApiError(404, "not_found", "Not found.")
    images = [{"url": _image_url(i.image.name if i.image else "", i.source_url),
               "alt": i.alt_text or item.name} for i in item.images.all()]
    row = {name: getattr(item, name) for name in storefront.LISTING_PRODUCT_FIELDS}
    row["variants"] = [{name: getattr(v, name) for name in storefront.LISTING_VARIANT_VALUES}
                       for v in item.listing_variants]
    return {
        **_summary(row),
        "image": images[0] if images else None,
        "description": item.description, "attributes": item.attributes, "tags": item.tags,
        "category": _ref(item.category) if item.category else None,
        "breadcrumbs": [_ref(c) for c in storefront.breadcrumbs(item.category)],
        "images": images, "seo_title": item.seo_title or item.name,
        "seo_description": item.seo_description,
    }
