"""Writes to the catalog that the admin, the API, imports and jobs share."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Substr

from backoffice.catalog.models import CATEGORY_PATH_SEPARATOR, Category


def rewrite_descendant_paths(category: Category, *, old_prefix: str) -> int:
    """After ``category``'s path changed from ``old_prefix``, fix its descendants in one UPDATE."""
    prefix_length = len(old_prefix) + len(CATEGORY_PATH_SEPARATOR)
    category.refresh_from_db(fields=["tree_id", "lft", "rght"])
    return Category.objects.filter(
        tree_id=category.tree_id, lft__gt=category.lft, rght__lt=category.rght
    ).update(
        path=Concat(
            Value(category.path + CATEGORY_PATH_SEPARATOR), Substr(F("path"), prefix_length + 1)
        )
    )


class CategoryMoveError(ValueError):
    """A move that would break the tree; nothing was changed."""


@transaction.atomic
def move_category(
    *, category: Category, parent: Category | None, position: int | None = None
) -> Category:
    """Move ``category`` and its subtree under ``parent`` (``None``: make it a root).

    mptt's ``save()`` moves the node when its parent changes and re-sorts it among its new
    siblings by position and name; ``Category.save`` then rewrites the paths below it.
    """
    if parent is not None and (parent.pk == category.pk or parent.is_descendant_of(category)):
        raise CategoryMoveError("A category cannot move under itself or its own descendants.")
    siblings = Category.objects.filter(parent=parent, slug=category.slug).exclude(pk=category.pk)
    if siblings.exists():
        where = parent.name if parent else "the top level"
        raise CategoryMoveError(f"{where} already has a category with the slug {category.slug!r}.")
    if position is not None:
        category.position = position
    category.parent = parent
    category.save()
    category.refresh_from_db()
    return category
