"""The query cache (django-cachalot), switched off for a block of work that must not use it.

``cachalot.api.cachalot_disabled`` leaves the cache off for the rest of the thread when an
exception goes through it (it restores its flag after ``yield`` without ``try``/``finally``):
a failed import would leave a worker uncached for good. ``query_cache_disabled`` restores it
whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def query_cache_disabled() -> Iterator[None]:
    from cachalot.api import LOCAL_STORAGE, cachalot_disabled

    was_enabled = getattr(LOCAL_STORAGE, "cachalot_enabled", None)
    was_all = getattr(LOCAL_STORAGE, "disable_on_all", None)
    try:
        with cachalot_disabled():
            yield
    finally:
        for name, value in (("cachalot_enabled", was_enabled), ("disable_on_all", was_all)):
            if value is None:
                if hasattr(LOCAL_STORAGE, name):
                    delattr(LOCAL_STORAGE, name)
            else:
                setattr(LOCAL_STORAGE, name, value)
