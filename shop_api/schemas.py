"""What every route shares: the base of request bodies, and the documented error answers."""

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from shop_api.errors import ErrorOut


class InputSchema(BaseModel):
    """A request body: a JSON object, values of exactly the declared JSON types, nothing else.

    Not ninja's ``Schema``, which reads attributes (made for ORM output) and so takes a list or
    a string as "an object with every field missing". Strict: ``0`` is not ``false``, ``"5"`` is
    not ``5``. Closed: an unknown field is an error, so a client's typo is not silently ignored.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it here as a field error, not a 500 later.
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


# Documented on every route, so clients can rely on the error shape for any of them.
ERROR_RESPONSES = {
    status: ErrorOut for status in (400, 401, 403, 404, 409, 422, 429)
}
