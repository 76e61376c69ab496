"""Reviews: read them on any published product; write, edit and delete your own."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from django.db.models import Count
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.pagination import paginate
from pydantic import Field, StringConstraints

from backoffice.catalog.models import Product
from backoffice.reviews import services
from backoffice.reviews.models import ProductRating, Review
from shop_api import examples
from shop_api.auth import customer_auth
from shop_api.errors import ApiError
from shop_api.examples import example
from shop_api.pagination import BoundedPageNumberPagination
from shop_api.schemas import ERROR_RESPONSES, InputSchema

router = Router(tags=["reviews"])
ERRORS = ERROR_RESPONSES
Comment = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]


class ReviewIn(InputSchema):
    model_config = example(examples.REVIEW)

    rating: int = Field(ge=1, le=5)
    comment: Comment = ""


class ReviewPatch(InputSchema):
    model_config = example(examples.REVIEW_PATCH)

    rating: int | None = Field(default=None, ge=1, le=5)
    comment: Comment | None = None


class ReviewOut(Schema):
    id: int
    product_slug: str
    rating: int
    comment: str
    reviewer: str
    verified_purchase: bool
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_product_slug(obj: Review) -> str:
        return obj.product.slug

    @staticmethod
    def resolve_reviewer(obj: Review) -> str:
        # A first name and an initial: never the email.
        first, last = obj.user.first_name.strip(), obj.user.last_name.strip()
        initial = f"{last[:1]}." if last else ""
        return " ".join(part for part in (first, initial) if part) or "A customer"


class RatingOut(Schema):
    average: Decimal
    count: int
    distribution: dict[int, int]


def _published_product(slug: str) -> Product:
    return get_object_or_404(Product, slug=slug, is_active=True)


def _own_review(request: HttpRequest, review_id: int) -> Review:
    # Someone else's review is "not found" to the API, whatever its id.
    return get_object_or_404(Review.objects.select_related("product", "user"),
                             pk=review_id, user=request.auth)


def _error(exc: services.ReviewError) -> ApiError:
    return ApiError(409 if exc.code == "already_reviewed" else 400, exc.code, str(exc))


@router.get("/products/{slug}/reviews", response={200: list[ReviewOut], **ERRORS})
@paginate(BoundedPageNumberPagination, page_size=20)
def product_reviews(request: HttpRequest, slug: str):
    """A product's published reviews, newest first."""
    product = _published_product(slug)
    return (Review.objects.filter(product=product, is_published=True)
            .select_related("product", "user").order_by("-created_at", "-id"))


@router.get("/products/{slug}/rating", response={200: RatingOut, **ERRORS})
def product_rating(request: HttpRequest, slug: str):
    """A product's average rating, number of reviews and how many gave each star."""
    product = _published_product(slug)
    summary = ProductRating.objects.filter(product=product).first()
    counts = dict(
        Review.objects.filter(product=product, is_published=True)
        .values_list("rating").annotate(n=Count("id")).values_list("rating", "n")
    )
    return {
        "average": summary.average if summary else Decimal("0"),
        "count": summary.count if summary else 0,
        "distribution": {stars: counts.get(stars, 0) for stars in range(1, 6)},
    }


@router.post("/products/{slug}/reviews", auth=customer_auth, response={201: ReviewOut, **ERRORS})
def create_review(request: HttpRequest, slug: str, payload: ReviewIn):
    """Review a product: one review per customer per product (edit it to change your mind)."""
    product = _published_product(slug)
    try:
        review = services.create_review(user=request.auth, product=product, **payload.model_dump())
    except services.ReviewError as exc:
        raise _error(exc) from exc
    return Status(201, review)


@router.patch("/reviews/{review_id}", auth=customer_auth, response={200: ReviewOut, **ERRORS})
def update_review(request: HttpRequest, review_id: int, payload: ReviewPatch):
    """Change your review's rating or comment."""
    review = _own_review(request, review_id)
    try:
        services.update_review(review=review, **payload.model_dump(exclude_none=True))
    except services.ReviewError as exc:
        raise _error(exc) from exc
    return _own_review(request, review_id)


@router.delete("/reviews/{review_id}", auth=customer_auth, response={204: None, **ERRORS})
def delete_review(request: HttpRequest, review_id: int):
    """Delete your review."""
    services.delete_review(review=_own_review(request, review_id))
    return Status(204, None)


@router.get("/me/reviews", auth=customer_auth, response={200: list[ReviewOut], **ERRORS})
@paginate(BoundedPageNumberPagination, page_size=20)
def my_reviews(request: HttpRequest):
    """The reviews you wrote, newest first."""
    return (Review.objects.filter(user=request.auth)
            .select_related("product", "user").order_by("-created_at", "-id"))
