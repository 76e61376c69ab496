"""Writing the audit trail: ``record(actor, action, obj, summary)``, in the caller's transaction.

Called by the services that change money, stock, plugins, API keys and roles, after the change,
so a refused or failed action writes nothing. Only people and API keys are recorded: the system
(jobs, webhooks) has its own trails (order timelines, the stock ledger, job logs).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from backoffice.audit.models import AuditEntry
from backoffice.permissions import actor_name, is_system


def record(actor: Any, action: str, obj: models.Model | None = None, summary: str = "", *,
           object_type: str = "", object_id: Any = "", object_repr: str = "",
           data: dict | None = None) -> AuditEntry | None:
    """One audit row for ``actor`` doing ``action`` (an ``AuditAction``) to ``obj``; None (and
    nothing written) for the system. ``data`` must never carry a secret value."""
    if is_system(actor):
        return None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
        object_repr = object_repr or str(obj)
    user = getattr(actor, "user", None)
    return AuditEntry.objects.create(
        actor=user if getattr(user, "is_authenticated", False) else None,
        actor_label=actor_name(actor)[:150],
        action=action,
        object_type=object_type[:100],
        object_id=str(object_id or "")[:64],
        object_repr=object_repr[:200],
        summary=summary[:500],
        data=data or {},
    )
