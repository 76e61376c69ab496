"""Creating, checking and revoking API keys.

A key reads ``bo_<prefix>_<secret>``. Only the SHA-256 of the secret is stored, with the prefix
to find it; the whole key is shown once, when it is created.

Creating and revoking keys needs ``integrations.manage_api_keys`` and is written to the audit
trail. What a key then does runs as ``key_actor(key)``: its scopes stand for permissions
(``backoffice.permissions.SCOPE_PERMISSIONS``), checked by the same services staff go through.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from backoffice import permissions
from backoffice.audit import services as audit
from backoffice.audit.models import AuditAction
from backoffice.integrations.models import ApiKey, IntegrationWrite, Scope
from backoffice.inventory.services import SYSTEM, Actor

KEY_PREFIX = "bo"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    *, name: str, scopes: Iterable[str], created_by: AbstractBaseUser | None = None,
    actor: Actor | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it and the only copy of the full key string. ``actor`` (by
    default ``created_by``, else the system) needs ``integrations.manage_api_keys``."""
    if actor is None:
        actor = Actor(user=created_by) if created_by is not None else SYSTEM
    permissions.require(actor, permissions.MANAGE_API_KEYS)
    scopes = sorted(set(scopes))
    unknown = set(scopes) - set(Scope.values)
    if unknown or not scopes:
        raise ValueError(f"choose scopes among {sorted(Scope.values)}; got {scopes}")
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    if created_by is None:
        created_by = actor.user
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name, prefix=prefix, key_hash=_hash(secret), scopes=scopes,
            created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
        )
        audit.record(actor, AuditAction.API_KEY_CREATED, key,
                     f"Created with the scopes {', '.join(scopes)}.",
                     data={"scopes": scopes, "prefix": prefix})
    return key, f"{KEY_PREFIX}_{prefix}_{secret}"


def key_for(raw: str) -> ApiKey | None:
    """The live key ``raw`` stands for, or None. Constant-time comparison of the secret."""
    try:
        marker, prefix, secret = raw.split("_", 2)
    except ValueError:
        return None
    if marker != KEY_PREFIX:
        return None
    key = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(secret)):
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        # At most one write a minute per key: "last used" need not cost a write per request.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def revoke_api_keys(*, key_ids: Iterable[int], actor: Actor = SYSTEM) -> int:
    """Revoke the live keys among ``key_ids`` (they stop working at once); returns how many.
    Needs ``integrations.manage_api_keys``."""
    permissions.require(actor, permissions.MANAGE_API_KEYS)
    with transaction.atomic():
        keys = list(ApiKey.objects.select_for_update()
                    .filter(pk__in=list(key_ids), revoked_at__isnull=True).order_by("pk"))
        now = timezone.now()
        ApiKey.objects.filter(pk__in=[key.pk for key in keys]).update(revoked_at=now)
        for key in keys:
            audit.record(actor, AuditAction.API_KEY_REVOKED, key, "Revoked.",
                         data={"prefix": key.prefix})
    return len(keys)


def key_actor(key: ApiKey) -> Actor:
    """The actor of what ``key`` does: its label in ledgers and timelines, its scopes as its
    permissions."""
    return Actor(label=key.label, scopes=frozenset(key.scopes))



def upsert_products(*, key: ApiKey, records, dry_run: bool, reference: str):
    """Catalog writes by a key: the import engine, and a record of what it changed, in one
    transaction (the write and its attribution land together or not at all)."""
    from backoffice.imports.services import import_product_records

    actor = key_actor(key)
    permissions.require(actor, permissions.RUN_IMPORT)
    with transaction.atomic():
        result = import_product_records(records, dry_run=dry_run, actor=actor,
                                        reference=reference)
        if result.written:
            IntegrationWrite.objects.create(
                key=key, endpoint="products", reference=reference[:120],
                summary={entity: dict(actions) for entity, actions in result.counts.items()},
            )
    return result


def set_stock_levels(*, key: ApiKey, levels, reference: str) -> int:
    """Counted stock levels from a key, recorded with how many changed (the ledger has each
    movement under the key's name)."""
    from backoffice.inventory.services import set_counted_levels

    with transaction.atomic():
        changed = set_counted_levels(levels, actor=key_actor(key), reference=reference)
        if changed:
            IntegrationWrite.objects.create(
                key=key, endpoint="stock", reference=reference[:120],
                summary={"stock levels": {"received": len(levels), "changed": changed}},
            )
    return changed
