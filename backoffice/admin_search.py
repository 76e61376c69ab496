"""Admin searches the database answers from indexes, at 100k rows and more.

Django's own search ORs an ``icontains`` over every ``search_fields`` entry, joins included:
on PostgreSQL each is ``UPPER(column::text) LIKE UPPER('%term%')``, which no b-tree serves, and an
OR across two tables cannot use an index at all, so every search read whole tables (and the
paginator counted over the join). ``IndexedSearchMixin`` answers in two steps instead:

1. **exact**: the whole term equals one of ``search_exact`` (``get_exact_search`` may normalise
   it: an order number without its ``#``, a phone number in E.164). When a listed row matches,
   those rows are the answer: one cheap query on unique or b-tree indexes to know it;
2. **otherwise** every word of the term (split as Django splits it, quotes keeping phrases) must
   match one of ``search_lookups`` (``"sku__icontains"``, ``"barcode__startswith"``,
   ``"lines__sku"``...) in one place: the model's own columns, or one related row (all the
   words in the product's name, or all in one variant's SKU; Django would also take a word from
   each). Lookups on the model's own columns are one condition, which the database answers by
   combining their indexes; each related table's is a subquery of primary keys, and several
   go into one ``pk IN (... UNION ALL ...)``. So no join reaches the page or the paginator's
   ``COUNT``, and no row is listed twice (no ``DISTINCT`` needed).

On PostgreSQL the columns searched by ``icontains`` have trigram GIN indexes on
``UPPER(column)``, the expression ``icontains`` compiles to (``backoffice.indexes``, created by
the apps' migrations); prefixes use the ``varchar_pattern_ops`` index
Django adds to every indexed ``CharField``. SQLite has neither and scans, as it always did.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from operator import and_, or_

from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model, Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.utils.text import smart_split, unescape_string_literal


def search_words(term: str) -> list[str]:
    """The words of a search, as Django's admin splits them: ``"linen shirt"`` stays one."""
    words = []
    for bit in smart_split(term):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if bit:
            words.append(bit)
    return words


def _relation(model: type[Model], lookup: str) -> str:
    """The relation part of a lookup: ``"variant__product"`` for
    ``"variant__product__name__icontains"``, ``""`` for ``"sku__icontains"``."""
    path, opts = [], model._meta
    for part in lookup.split(LOOKUP_SEP)[:-1]:
        try:
            field = opts.get_field(part)
        except FieldDoesNotExist:
            break
        if not field.is_relation:
            break
        path.append(part)
        opts = field.related_model._meta
    return LOOKUP_SEP.join(path)


def _in_place(model: type[Model], by_place: dict[str, Q]) -> Q:
    """One condition per place (``""``: the model's own columns, else a relation path) as one
    filter on ``model``: the own columns' in place, a related table's as ``pk IN (subquery)``,
    several as one ``pk IN (... UNION ALL ...)``, so each is read through its own indexes."""
    if not by_place:
        return Q(pk__in=[])
    if list(by_place) == [""]:
        return by_place[""]
    manager = model._base_manager
    parts = [manager.filter(condition).order_by().values("pk") for condition in by_place.values()]
    if len(parts) == 1:
        return Q(pk__in=parts[0])
    return Q(pk__in=parts[0].union(*parts[1:], all=True))


def match_any(model: type[Model], conditions: Sequence[tuple[str, object]]) -> Q:
    """Rows of ``model`` where any ``(lookup, value)`` holds."""
    by_place: dict[str, list[Q]] = {}
    for lookup, value in conditions:
        by_place.setdefault(_relation(model, lookup), []).append(Q(**{lookup: value}))
    return _in_place(model, {place: reduce(or_, qs) for place, qs in by_place.items()})


def match_words(model: type[Model], lookups: Sequence[str], words: Sequence[str]) -> Q:
    """Rows of ``model`` where, in one place (its own columns, or one related row), every word
    matches one of that place's lookups. Each place is one scan whatever the number of words:
    the database intersects a trigram index's matches for all the words at once, where one
    subquery per word would be joined word by word."""
    by_place: dict[str, list[str]] = {}
    for lookup in lookups:
        by_place.setdefault(_relation(model, lookup), []).append(lookup)
    return _in_place(model, {
        place: reduce(and_, [reduce(or_, [Q(**{lookup: word}) for lookup in place_lookups])
                             for word in words])
        for place, place_lookups in by_place.items()
    })


class IndexedSearchMixin:
    """``get_search_results`` for a ``ModelAdmin``: an exact match first, then per word the
    ``search_lookups`` (see the module's docstring). ``search_fields`` still makes the search
    box appear; ``search_help_text`` should say what is searched."""

    #: Fields whose exact value (the whole term) is looked up first.
    search_exact: Sequence[str] = ()
    #: ``field__lookup`` paths every word of the term is matched against (any of them).
    search_lookups: Sequence[str] = ()

    def get_exact_search(self, request: HttpRequest, term: str) -> list[tuple[str, object]]:
        """``(lookup, value)`` pairs tried first; override to read the term (a number's ``#``, a
        phone's spaces). Empty: no exact step."""
        return [(field, term) for field in self.search_exact]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        exact = self.get_exact_search(request, term)
        if exact:
            matched = queryset.filter(match_any(queryset.model, exact))
            if not self.search_lookups or matched.exists():
                return matched, False
        if not self.search_lookups:
            return super().get_search_results(request, queryset, search_term)
        words = search_words(term)
        if not words:
            return queryset, False
        return queryset.filter(match_words(queryset.model, self.search_lookups, words)), False
