"""What every route shares: the base of request bodies, the documented error answers, and how
amounts of money are written."""

from contextvars import ContextVar
from decimal import Decimal
from typing import Annotated, Any

from ninja import Schema
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_serializer,
)

from backoffice.money import money_text
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


Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)]
Country = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2}$")]


class AddressFields(InputSchema):
    """A postal address as customers type it (the address book and checkout)."""

    first_name: Text
    last_name: Text = ""
    company: Text = ""
    line1: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
    line2: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] = ""
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    region: Text = ""
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] = ""
    country: Country
    phone: Phone = ""


class AddressValues(Schema):
    """A postal address as the API answers it (the address book, orders)."""

    first_name: str
    last_name: str
    company: str
    line1: str
    line2: str
    city: str
    region: str
    postal_code: str
    country: str
    phone: str


# --- Money ------------------------------------------------------------------------------------

# The currency of the answer being written: set by ``InCurrency`` for its fields and the nested
# answers in it (an order's lines); the store's when nothing set it (the catalog).
_answer_currency: ContextVar[str | None] = ContextVar("answer_currency", default=None)


def _money_json(amount: Decimal) -> str:
    return money_text(amount, _answer_currency.get())


Money = Annotated[
    Decimal,
    PlainSerializer(_money_json, return_type=str),
    WithJsonSchema({
        "type": "string", "pattern": r"^-?\d+(\.\d+)?$",
        "description": "A decimal string with exactly the currency's decimals: \"0.00\", "
                       "\"1250.00\" (\"80\" in JPY).",
    }, mode="serialization"),
]
"""An amount in an answer: always with its currency's decimals ("0.00", never "0")."""


class InCurrency(Schema):
    """An answer with a ``currency``: its ``Money``, and that of the answers nested in it, is
    written with that currency's decimals."""

    currency: str

    @model_serializer(mode="wrap")
    def _in_its_currency(self, handler):
        token = _answer_currency.set(self.currency or None)
        try:
            return handler(self)
        finally:
            _answer_currency.reset(token)
