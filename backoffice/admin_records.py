"""Admin pages for records: rows that services write (a stock movement, a redemption, what a
key wrote) and that staff only ever read. Nothing is added, changed or deleted by hand."""

from __future__ import annotations

from django.http import HttpRequest


class ReadOnlyRecord:
    """Mixed into a ``ModelAdmin`` or an inline (whose permission checks also take ``obj``)."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
