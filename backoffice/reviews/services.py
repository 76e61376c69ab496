"""Reviews: one per customer per product; the product's rating summary moves with them."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum

from backoffice.catalog import documents
from backoffice.catalog.models import Product
from backoffice.reviews.models import ProductRating, Review


class ReviewError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _bought(user_id, product_id):
    """Orders lines showing the customer bought the product: an order of theirs with it that was
    paid or is being fulfilled (not cancelled, not unpaid, not refunded in full)."""
    from backoffice.orders.models import OrderLine
    from backoffice.orders.selectors import purchased_q

    return OrderLine.objects.filter(
        purchased_q("order__"), order__user_id=user_id, product_id_snapshot=product_id,
    )


def _has_bought(user: AbstractBaseUser, product: Product) -> bool:
    return _bought(user.pk, product.pk).exists()


def refresh_verified_purchases(*, user_id: int, product_ids: list[int]) -> int:
    """Re-decide "verified purchase" on a customer's reviews of these products (an order of
    theirs was paid, cancelled or refunded); returns how many reviews changed."""
    changed = 0
    for review in Review.objects.filter(user_id=user_id, product_id__in=product_ids):
        verified = _bought(user_id, review.product_id).exists()
        if verified != review.verified_purchase:
            changed += Review.objects.filter(pk=review.pk).update(verified_purchase=verified)
    return changed


def _locked_rating(product_id: int) -> ProductRating:
    # Insert-if-missing first: two first reviews at once must not both try to create the row.
    ProductRating.objects.bulk_create([ProductRating(product_id=product_id)],
                                      ignore_conflicts=True)
    return ProductRating.objects.select_for_update().get(product_id=product_id)


def _apply(product_id: int, *, count: int, total: int) -> None:
    """Change the summary by a number of reviews and of stars, under a row lock."""
    rating = _locked_rating(product_id)
    _store(rating, count=rating.count + count, total=rating.total + total)


def recount_ratings(*, product_ids) -> None:
    """Recompute summaries from the published reviews (after every delete of a review:
    ``backoffice.reviews.signals``)."""
    for product_id in sorted(set(product_ids)):
        rating = _locked_rating(product_id)
        totals = Review.objects.filter(product_id=product_id, is_published=True).aggregate(
            count=Count("pk"), total=Sum("rating"))
        _store(rating, count=totals["count"], total=totals["total"] or 0)


def _store(rating: ProductRating, *, count: int, total: int) -> None:
    product_id = rating.product_id
    rating.count = count
    rating.total = total
    rating.average = (
        (Decimal(rating.total) / rating.count).quantize(Decimal("0.01"), ROUND_HALF_UP)
        if rating.count else Decimal("0")
    )
    rating.save()
    # The product's own copy, which listings sort and filter by.
    Product.objects.filter(pk=product_id).update(
        rating_average=rating.average, rating_count=rating.count
    )
    documents.forget([product_id])  # the storefront's kept answer shows the rating


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
    """Delete a review; the product's summary is recounted (``signals.recount_after_delete``),
    as it is for every delete of a review, whoever does it."""
    Review.objects.select_for_update().filter(pk=review.pk).delete()
