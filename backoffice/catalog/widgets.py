"""Widgets and fields of the product and variant forms: name/value rows for a variant's options
and a product's attributes, and a tag input.

They post plain form fields (``<name>__name`` / ``<name>__value`` once per row, and one text
input of comma-separated tags), so the forms work without JavaScript: a blank row is always
there, and a cleared row is dropped. ``catalog/admin/product_widgets.js`` adds rows and removes
them, and draws the tags as removable chips. What is stored keeps the shape the rest of the code
reads: ``{"Size": "M"}`` for options and attributes, ``["summer", "linen"]`` for tags.
"""

from __future__ import annotations

import json
from itertools import zip_longest
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from unfold.widgets import BASE_INPUT_CLASSES, INPUT_CLASSES

WIDGET_CSS = {"all": ["catalog/admin/product_widgets.css"]}
WIDGET_JS = ["catalog/admin/product_widgets.js"]


def value_text(value: Any) -> str:
    """A stored value as its input shows it: text as is, anything else (a number an import
    wrote, say) as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def shortened(text: str, length: int = 40) -> str:
    """The start of a long text, for a message that quotes it."""
    return text if len(text) <= length else f"{text[:length - 1]}…"


def split_tags(text: str) -> list[str]:
    """``"summer, linen,, summer"`` -> ``["summer", "linen"]``: trimmed, no blanks, no repeats."""
    tags: list[str] = []
    for part in text.split(","):
        tag = part.strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


class KeyValueWidget(forms.Widget):
    """A table of name/value inputs, a blank row at the end, and an "add a row" button."""

    template_name = "catalog/widgets/key_value.html"
    NAME_SUFFIX = "__name"
    VALUE_SUFFIX = "__value"
    blank_rows = 1
    max_rows: int | None = None  # set by the field: no blank row (nor "add") beyond it

    def __init__(
        self,
        attrs: dict | None = None,
        *,
        name_label: str = _("Name"),
        value_label: str = _("Value"),
        add_label: str = _("Add a row"),
        name_placeholder: str = "",
        value_placeholder: str = "",
        compact: bool = False,
    ) -> None:
        super().__init__(attrs)
        self.name_label = name_label
        self.value_label = value_label
        self.add_label = add_label
        self.name_placeholder = name_placeholder
        self.value_placeholder = value_placeholder
        self.compact = compact

    class Media:
        css = WIDGET_CSS
        js = WIDGET_JS

    def format_value(self, value: Any) -> list[tuple[str, str]]:
        """Rows from a stored dict (an unbound form) or from posted rows (a bound one)."""
        if isinstance(value, str):  # JSON text, as a JSONField would hand it over
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                return [("", value)]
        if isinstance(value, dict):
            return [(str(name), value_text(item)) for name, item in value.items()]
        if isinstance(value, list | tuple):
            return [(str(name), str(item)) for name, item in value]
        return []

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict:
        context = super().get_context(name, value, attrs)
        rows = [row for row in self.format_value(value) if row != ("", "")]
        if self.max_rows is None or len(rows) < self.max_rows:
            rows += [("", "")] * self.blank_rows
        context["widget"].update(
            rows=rows,
            max_rows=self.max_rows,
            name_field=f"{name}{self.NAME_SUFFIX}",
            value_field=f"{name}{self.VALUE_SUFFIX}",
            name_label=self.name_label,
            value_label=self.value_label,
            add_label=self.add_label,
            name_placeholder=self.name_placeholder,
            value_placeholder=self.value_placeholder,
            compact=self.compact,
            input_class=" ".join([*BASE_INPUT_CLASSES, "bo-kv-input"]),
        )
        return context

    def value_from_datadict(self, data, files, name: str) -> list[tuple[str, str]]:
        def posted(key: str) -> list[str]:
            if hasattr(data, "getlist"):
                return data.getlist(key)
            value = data.get(key)
            if value is None:
                return []
            return list(value) if isinstance(value, list | tuple) else [value]

        names = posted(f"{name}{self.NAME_SUFFIX}")
        values = posted(f"{name}{self.VALUE_SUFFIX}")
        return list(zip_longest(names, values, fillvalue=""))

    def value_omitted_from_data(self, data, files, name: str) -> bool:
        return f"{name}{self.NAME_SUFFIX}" not in data and f"{name}{self.VALUE_SUFFIX}" not in data

    def id_for_label(self, id_: str) -> str:
        return id_  # the first row's name input carries the id


class KeyValueField(forms.Field):
    """Name/value rows -> ``{name: value}`` in row order. Blank rows are dropped; a row with
    only one of the two, a name given twice (in any case) or too many rows are refused with a
    message saying which row. Values are text."""

    widget = KeyValueWidget
    default_error_messages = {
        "no_value": _('Each row needs a name and a value: "%(name)s" has no value.'),
        "no_name": _('Each row needs a name and a value: the value "%(value)s" has no name.'),
        "duplicate": _('Each name can be used once: "%(name)s" is there twice.'),
        "too_many": _("At most %(max)d rows."),
    }

    def __init__(self, *, max_rows: int | None = None, **kwargs) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.max_rows = max_rows
        if isinstance(self.widget, KeyValueWidget):
            self.widget.max_rows = max_rows

    def to_python(self, value: Any) -> dict:
        if value in self.empty_values:
            return {}
        if isinstance(value, dict):  # an initial value, already stored
            return value
        result: dict[str, str] = {}
        seen: set[str] = set()
        errors: list[ValidationError] = []
        for raw_name, raw_value in value:
            name, text = str(raw_name).strip(), str(raw_value).strip()
            if not name and not text:
                continue
            if not text:
                errors.append(self._error("no_value", name=shortened(name)))
                continue
            if not name:
                errors.append(self._error("no_name", value=shortened(text)))
                continue
            if name.casefold() in seen:
                errors.append(self._error("duplicate", name=shortened(name)))
                continue
            seen.add(name.casefold())
            result[name] = text
        if self.max_rows is not None and len(result) > self.max_rows:
            errors.append(self._error("too_many", max=self.max_rows))
        if errors:
            raise ValidationError(errors)
        return result

    def _error(self, code: str, **params) -> ValidationError:
        return ValidationError(self.error_messages[code], code=code, params=params)

    def has_changed(self, initial: Any, data: Any) -> bool:
        if self.disabled:
            return False
        try:
            new = self.to_python(data)
        except ValidationError:
            return True
        old = initial if isinstance(initial, dict) else {}
        return {k: value_text(v) for k, v in old.items()} != new


def keep_stored_values(new: dict, old: Any) -> dict:
    """``new`` with the stored value kept wherever its text did not change, so a number an
    import stored stays a number when the form is saved untouched."""
    if not isinstance(old, dict):
        return new
    return {
        name: old[name] if name in old and value_text(old[name]) == value else value
        for name, value in new.items()
    }


class TagsWidget(forms.TextInput):
    """One text input of comma-separated tags, with the tags drawn as chips under it (the script
    makes them removable and keeps them in step with the text)."""

    template_name = "catalog/widgets/tags.html"

    def __init__(self, attrs: dict | None = None) -> None:
        attrs = {**(attrs or {})}
        attrs["class"] = " ".join([*INPUT_CLASSES, attrs.get("class", "")]).strip()
        attrs.setdefault("autocomplete", "off")
        super().__init__(attrs)

    class Media:
        css = WIDGET_CSS
        js = WIDGET_JS

    def format_value(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, list | tuple):
            return ", ".join(str(tag) for tag in value)
        return str(value)

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict:
        context = super().get_context(name, value, attrs)
        context["widget"]["tags"] = split_tags(context["widget"]["value"] or "")
        return context


class TagsField(forms.Field):
    """Comma-separated text -> ``["tag", ...]``: trimmed, blanks and repeats dropped, in order."""

    widget = TagsWidget
    default_error_messages = {
        "too_long": _('A tag can be at most %(max)d characters: "%(tag)s" is longer.'),
    }

    def __init__(self, *, max_tag_length: int | None = None, **kwargs) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.max_tag_length = max_tag_length

    def to_python(self, value: Any) -> list[str]:
        if value in self.empty_values:
            return []
        if isinstance(value, list | tuple):  # an initial value, already stored
            return list(value)
        tags = split_tags(str(value))
        errors = [
            ValidationError(
                self.error_messages["too_long"], code="too_long",
                params={"tag": shortened(tag), "max": self.max_tag_length},
            )
            for tag in tags
            if self.max_tag_length and len(tag) > self.max_tag_length
        ]
        if errors:
            raise ValidationError(errors)
        return tags

    def has_changed(self, initial: Any, data: Any) -> bool:
        if self.disabled:
            return False
        try:
            new = self.to_python(data)
        except ValidationError:
            return True
        return list(initial or []) != new
