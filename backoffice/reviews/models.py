"""Product reviews, and each product's rating summary kept beside them.

The summary (average and count) is updated in the same transaction as the review, under a row
lock, so it is always exactly what the reviews say; listings sort and show it without counting.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Review(models.Model):
    product = models.ForeignKey(
        "catalog.Product", on_delete=models.CASCADE, related_name="reviews"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviews"
    )
    rating = models.PositiveSmallIntegerField(
        _("rating"), validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    comment = models.TextField(_("comment"), blank=True, max_length=5000)
    verified_purchase = models.BooleanField(_("verified purchase"), default=False)
    is_published = models.BooleanField(
        _("published"), default=True, help_text=_("Unpublished reviews don't count.")
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("review")
        verbose_name_plural = _("reviews")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["product", "user"], name="one_review_per_customer"),
            models.CheckConstraint(
                condition=Q(rating__gte=1) & Q(rating__lte=5), name="rating_one_to_five"
            ),
        ]
        indexes = [models.Index(fields=["product", "-created_at"], name="review_product_newest")]

    def __str__(self) -> str:
        return f"{self.rating}/5 on {self.product_id} by {self.user_id}"


class ProductRating(models.Model):
    product = models.OneToOneField(
        "catalog.Product", on_delete=models.CASCADE, primary_key=True, related_name="rating"
    )
    count = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    average = models.DecimalField(max_digits=3, decimal_places=2, default=Decimal("0"))

    class Meta:
        verbose_name = _("product rating")
        verbose_name_plural = _("product ratings")
        indexes = [models.Index(fields=["-average", "-count"], name="rating_best_first")]

    def __str__(self) -> str:
        return f"{self.average} ({self.count})"
