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

    Four queries at most, whatever the filters and the page (more the first time a product
    is shown after a change: its kept answer is built).
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
    return _json(
        '{"items": [' + ", ".join(page.products) + "], "
        + json.dumps({"count": page.count, "count_exact": page.count_exact, "next": page.next,
                      "page": page.page, "page_size": page.page_size})[1:]
    )


def _json(text: str) -> HttpResponse:
    """An answer written here rather than by the schema: the kept JSON of products
    (``backoffice.catalog.documents``), which a test keeps equal to the schema's serialisation
    of the same rows; validating them again on every request was most of a page's time."""
    return HttpResponse(text, content_type="application/json; charset=utf-8")


@router.get("/products/{slug}", response={200: ProductOut, **ERROR_RESPONSES})
@decorate_view(storefront_cache.cached(ProductOut))
def product(request: HttpRequest, slug: str):
    """A published product: variants with prices, discount and availability (in stock, low or
    out; not the warehouse numbers), images, breadcrumbs and rating. One query (two or three
    more the first time it is asked after a change)."""
    detail = storefront.product_detail(slug)
    if detail is None:
        raise ApiError(404, "not_found", "Not found.")
    return _json(detail)
