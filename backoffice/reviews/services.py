"""Reviews: one per customer per product; the product's rating summary moves with them."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from backoffice.catalog.models import Product
from backoffice.reviews.models import ProductRating, Review


class ReviewError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _has_bought(user: AbstractBaseUser, product: Product) -> bool:
    """Whether the customer bought the product: an order of theirs with it that was paid or is
    being fulfilled (not cancelled, not unpaid)."""
    from backoffice.orders.models import OrderLine
    from backoffice.orders.status import PURCHASED_STATUSES

    return OrderLine.objects.filter(
        order__user=user, product_id_snapshot=product.pk,
        order__status__in=PURCHASED_STATUSES,
    ).exists()


def _apply(product_id: int, *, count: int, total: int) -> None:
    """Change the summary by a number of reviews and of stars, under a row lock."""
    rating, _ = ProductRating.objects.select_for_update().get_or_create(product_id=product_id)
    rating.count += count
    rating.total += total
    rating.average = (
        (Decimal(rating.total) / rating.count).quantize(Decimal("0.01"), ROUND_HALF_UP)
        if rating.count else Decimal("0")
    )
    rating.save()
    # The product's own copy, which listings sort and filter by.
    Product.objects.filter(pk=product_id).update(
        rating_average=rating.average, rating_count=rating.count
    )


def _validate(rating: int) -> None:
    if not 1 <= rating <= 5:
        raise ReviewError("A rating is a whole number from 1 to 5.", "invalid_rating")


@transaction.atomic
def create_review(
    *, user: AbstractBaseUser, product: Product, rating: int, comment: str = ""
) -> Review:
    _validate(rating)
    try:
        with transaction.atomic():
            review = Review.objects.create(
                product=product, user=user, rating=rating, comment=comment,
                verified_purchase=_has_bought(user, product),
            )
    except IntegrityError:
        raise ReviewError("You have reviewed this product already; edit that review.",
                          "already_reviewed") from None
    _apply(product.pk, count=1, total=rating)
    return review


@transaction.atomic
def update_review(*, review: Review, **changes: Any) -> Review:
    review = Review.objects.select_for_update().get(pk=review.pk)
    old = review.rating if review.is_published else None
    if "rating" in changes:
        _validate(changes["rating"])
    for name, value in changes.items():
        setattr(review, name, value)
    review.save()
    new = review.rating if review.is_published else None
    _apply(review.product_id, count=(new is not None) - (old is not None),
           total=(new or 0) - (old or 0))
    return review


@transaction.atomic
def delete_review(*, review: Review) -> None:
    review = Review.objects.select_for_update().get(pk=review.pk)
    if review.is_published:
        _apply(review.product_id, count=-1, total=-review.rating)
    review.delete()
