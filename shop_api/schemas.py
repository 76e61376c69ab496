"""What every route shares: the base of request bodies, the documented error answers, and how
amounts of money are written."""

import re
from contextvars import ContextVar
from decimal import Decimal
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from ninja import Schema
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
)

from backoffice.money import currency_exponent, money_text
from shop_api.errors import ErrorOut


class InputSchema(BaseModel):
    """A request body: a JSON object, values of exactly the declared JSON types, nothing else.

    Not ninja's ``Schema``, which reads attributes (made for ORM output) and so takes a list or
    a string as "an object with every field missing". Strict: ``0`` is not ``false``, ``"5"`` is
    not ``5``. Closed: an unknown field is an error, so a client's typo is not silently ignored.
    JSON has one kind of number, though: where the schema says integer, ``3.0`` is ``3`` (JSON
    Schema says so too), and ``3.5`` is refused.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _integral_numbers_are_integers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        return value if field is None else _integers(value, field.annotation)

    @field_validator("*")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it here as a field error, not a 500 later.
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


def _takes_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    if get_origin(annotation) in (Annotated, Union, UnionType):
        return any(_takes_int(arg) for arg in get_args(annotation))
    return False


def _integers(value: Any, annotation: Any) -> Any:
    """``value`` with its integral floats made ``int`` wherever ``annotation`` takes an int
    (``int``, ``int | None``, ``dict[str, int]``, ``list[int]``); anything else as it is."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and _takes_int(annotation) else value
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Annotated, Union, UnionType):
        for arg in args if origin is not Annotated else args[:1]:
            if arg is not NoneType:
                value = _integers(value, arg)
        return value
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {key: _integers(item, args[1]) for key, item in value.items()}
    if origin is list and isinstance(value, list) and args:
        return [_integers(item, args[0]) for item in value]
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


# Whitespace as ``strip_whitespace`` trims it (Unicode White_Space; not U+001C to U+001F).
_TRIMMED = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{_TRIMMED}][^\x00]*$"


class _NotBlank:
    """Documents text that is trimmed and then needs a character: "not only whitespace" (its
    ``minLength`` alone would call " " valid). ``Annotated[str, StringConstraints(
    strip_whitespace=True, min_length=1), NotBlank]``."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["pattern"] = NOT_BLANK_PATTERN
        return schema


NotBlank = _NotBlank()

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)]
Country = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2}$")]


class AddressFields(InputSchema):
    """A postal address as customers type it (the address book and checkout)."""

    first_name: Text
    last_name: Text = ""
    company: Text = ""
    line1: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
                     NotBlank]
    line2: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] = ""
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                    NotBlank]
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

# Digits are ASCII digits: ``\d`` (Python's and pydantic's) also takes "١٢٣" (Arabic-Indic),
# which ``Decimal()`` reads as 123, so no amount is parsed through it.
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _ascii_decimal(value: Any) -> Any:
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError("must be a decimal number in ASCII digits, e.g. 1499.00")
    return value

# The currency of the answer being written: set by ``InCurrency`` for its fields and the nested
# answers in it (an order's lines); the store's when nothing set it (the catalog).
_answer_currency: ContextVar[str | None] = ContextVar("answer_currency", default=None)


def _money_json(amount: Decimal) -> str:
    return money_text(amount, _answer_currency.get())


Money = Annotated[
    Decimal,
    BeforeValidator(_ascii_decimal),
    PlainSerializer(_money_json, return_type=str),
    WithJsonSchema({
        "type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
        "description": "A decimal string with exactly the currency's decimals: \"0.00\", "
                       "\"1250.00\" (\"80\" in JPY).",
    }, mode="serialization"),
]
"""An amount in an answer: always with its currency's decimals ("0.00", never "0"). Read (if
ever), only from ASCII digits."""


def amount_pattern(places: int) -> str:
    """An amount as a client writes it: ASCII digits, at most 12 before the point, no sign, and
    no more decimals than ``places`` (trailing zeros aside, up to 4 decimals)."""
    decimals = (r"(\.0{1,4})?" if places == 0
                else rf"(\.[0-9]{{1,{places}}}0{{0,{4 - places}}})?")
    return rf"^[0-9]{{1,12}}{decimals}$"


class _InStoreCurrency:
    """Documents an amount's pattern with the store currency's decimals, as they are when the
    schema is written (the currency is a setting); the validation takes up to 4 decimals, and
    the parsing refuses more than the currency has."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["pattern"] = amount_pattern(currency_exponent())
        return schema


AmountIn = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{1,12}(\.[0-9]{1,4})?$"), _InStoreCurrency(),
]
"""An amount in a request body, as a decimal string in the store currency ("1499.00")."""


_PRICE_FILTER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")


def _price_filter(value: Any) -> Any:
    if isinstance(value, str):
        if value == "":
            return None  # ``?max_price=``, as a form sends an empty field: no bound
        if not _PRICE_FILTER.fullmatch(value):
            raise ValueError("must be an amount in ASCII digits, e.g. 1499.00 (at most 2 "
                             "decimals), or empty")
    return value


PriceFilter = Annotated[
    Decimal | None,
    BeforeValidator(_price_filter),
    WithJsonSchema({"type": "string", "pattern": "^(" + _PRICE_FILTER.pattern + ")?$"}),
]
"""An amount in a query string (a bound of a price filter): empty is no bound."""


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


# --- No NUL characters, in the schema too -----------------------------------------------------

NO_NUL = r"^[^\x00]*$"
"""Text as the API takes it: PostgreSQL text cannot hold NUL, so none is taken, anywhere."""


def forbid_nul_in_requests(openapi: dict) -> dict:
    """Say in the schema what the API does: no string a client sends (a path, query or header
    parameter, a request body and what it nests) may hold a NUL character. Strings with a
    pattern, a format or an enum say more already (none of those patterns takes NUL); the keys
    and values of a free-form object are covered by a recursive ``JsonValue``."""
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    seen: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen and name in components:
                seen.add(name)
                visit(components[name])
        if node.get("type") == "string" and not {"pattern", "format", "enum", "const"} & set(node):
            node["pattern"] = NO_NUL
        if node.get("type") == "object" and "properties" not in node:
            names = node.setdefault("propertyNames", {})
            if not {"pattern", "format", "enum", "const"} & set(names):
                names["pattern"] = NO_NUL
            if node.get("additionalProperties", True) is True:
                node["additionalProperties"] = {"$ref": "#/components/schemas/JsonValue"}
                seen.add("JsonValue")
        visit(list(node.get("properties", {}).values()))
        for key in ("schema", "items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            visit(node.get(key))

    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                visit(operation.get("parameters", []))
                visit(list(operation.get("requestBody", {}).get("content", {}).values()))
    if "JsonValue" in seen:
        components["JsonValue"] = _JSON_VALUE
    return openapi


_JSON_VALUE = {
    "description": "Any JSON value without NUL characters in its strings and keys.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"}, {"type": "boolean"}, {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "propertyNames": {"pattern": NO_NUL},
         "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ],
}
