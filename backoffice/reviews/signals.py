"""Every delete of a review, whoever does it, recounts its product's rating summary: the
service's delete, the admin's bulk delete, a customer's account deleted with its reviews."""

from __future__ import annotations

from django.db.models import QuerySet
from django.db.models.signals import post_delete
from django.dispatch import receiver

from backoffice.catalog.models import Product
from backoffice.reviews.models import Review


@receiver(post_delete, sender=Review, dispatch_uid="reviews.recount_after_delete")
def recount_after_delete(sender, instance: Review, origin=None, **kwargs) -> None:
    # A product being deleted takes its reviews and its summary with it: nothing to recount.
    model = origin.model if isinstance(origin, QuerySet) else type(origin)
    if model is Product:
        return
    from backoffice.reviews.services import recount_ratings

    recount_ratings(product_ids=[instance.product_id])
