"""A file cache that checks its size now and then, not on every write.

Django's ``FileBasedCache`` lists its whole directory on every ``set`` to decide whether to cull:
26 ms at 20,000 entries on our machine, more than the database work a cached storefront answer
saves. This one does that check at most every ``CULL_INTERVAL`` seconds per process, so the
directory may pass ``MAX_ENTRIES`` by what the processes write in that time before it is culled.
It holds the storefront's response cache (``CACHES["storefront"]`` without Redis).
"""

from __future__ import annotations

import time

from django.core.cache.backends.filebased import FileBasedCache as DjangoFileBasedCache

CULL_INTERVAL = 5.0  # seconds


class FileBasedCache(DjangoFileBasedCache):
    _last_cull = float("-inf")

    def _cull(self) -> None:
        now = time.monotonic()
        if now - self._last_cull < CULL_INTERVAL:
            return
        self._last_cull = now
        super()._cull()
