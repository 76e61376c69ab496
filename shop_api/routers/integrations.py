"""Integration endpoints for ERPs, warehouse systems and scripts (API keys, scoped).

Every write goes through the same services as the admin and is attributed to the key.
"""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field, StringConstraints

from backoffice.integrations.models import Scope
from backoffice.inventory.services import (
    Actor,
    CountedLevel,
    StockError,
    UnknownStockPlaces,
    set_counted_levels,
)
from shop_api.auth import integration_auth, require_scope
from shop_api.errors import ApiError
from shop_api.schemas import ERROR_RESPONSES, InputSchema

router = Router(tags=["integrations"], auth=integration_auth)
ERRORS = ERROR_RESPONSES
MAX_LEVELS = 1000


class StockLevelIn(InputSchema):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    warehouse: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] = Field(
        default="", description="Warehouse code; the default warehouse when empty."
    )
    quantity: int = Field(ge=0, le=10_000_000, description="Units on hand, as counted.")


class StockLevelsIn(InputSchema):
    levels: list[StockLevelIn] = Field(min_length=1, max_length=MAX_LEVELS)
    reference: Annotated[str, StringConstraints(max_length=120)] = ""


class StockLevelsOut(Schema):
    received: int
    changed: int


@router.put("/integrations/stock", response={200: StockLevelsOut, **ERRORS})
def set_stock_levels(request: HttpRequest, payload: StockLevelsIn):
    """Set on-hand stock per SKU and warehouse (up to 1000 rows a call), as counted.

    All or nothing: an unknown SKU or warehouse, or a level below what is allocated to orders,
    changes nothing. Sending the same levels again changes nothing (idempotent). Every change
    is written to the stock ledger under this key's name.
    """
    require_scope(request, Scope.STOCK_WRITE)
    levels = [
        CountedLevel(sku=lv.sku, quantity=lv.quantity, warehouse_code=lv.warehouse)
        for lv in payload.levels
    ]
    try:
        changed = set_counted_levels(
            levels, actor=Actor(label=request.auth.label), reference=payload.reference or "api"
        )
    except UnknownStockPlaces as exc:
        errors = [
            {"field": f"levels.{index}.{field}", "message": message, "code": f"unknown_{field}"}
            for index, field, message in exc.errors
        ]
        raise ApiError(422, "validation_error", str(exc), errors) from exc
    except StockError as exc:
        raise ApiError(409, "stock_conflict", str(exc)) from exc
    return {"received": len(levels), "changed": changed}
