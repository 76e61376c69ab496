"""Messages from templates: the merchant's wording first, the shipped defaults otherwise.

For one (event, channel, language) each part (subject, text, html) is looked up in turn: the
merchant's ``MessageTemplate`` row in that language, the shipped file in that language, then
the same two in the store's language. Shipped files live in
``templates/notifications/<language>/<event>/``: ``subject.txt``, ``email.txt`` and
``email.html`` for email, ``sms.txt`` for SMS (a phone channel such as WhatsApp uses
``<its code>.txt`` when there is one, else ``sms.txt``).

Templates are Django templates rendered with plain JSON (the notification's context), never
model instances: a merchant's template cannot reach into the database. Text parts are rendered
without HTML escaping; the HTML part with it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.template import Context, Engine, TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template
from django.utils import translation

PARTS = ("subject", "text", "html")
# The GSM 03.38 default alphabet: an SMS in it carries 160 characters (153 a part when split);
# one character outside it makes the whole message UCS-2: 70 (67 a part).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")  # two septets each


class TemplateError(ValueError):
    """A template that cannot render: its part and the engine's message."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class SmsLength:
    characters: int
    parts: int
    encoding: str  # "GSM-7" or "UCS-2"


def sms_length(text: str) -> SmsLength:
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        # UTF-16 code units: an emoji takes two.
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    parts = 1 if units <= single else -(-units // multi)
    return SmsLength(characters=units, parts=parts, encoding=encoding)


def base_language(code: str | None) -> str:
    return (code or "").split("-")[0].split("_")[0].lower()


def store_language() -> str:
    return base_language(settings.LANGUAGE_CODE) or "en"


def _file_name(kind: str, channel: str, part: str) -> list[str]:
    if kind == "email":
        return {"subject": ["subject.txt"], "text": ["email.txt"], "html": ["email.html"]}[part]
    if part != "text":
        return []
    return [f"{channel}.txt", "sms.txt"] if channel != "sms" else ["sms.txt"]


def _engine() -> Engine:
    return Engine.get_default()


def compile_source(source: str, *, autoescape: bool, part: str = "") -> Any:
    """Compile a template's source; ``TemplateError`` naming the part when it cannot."""
    try:
        return _compiled(source, autoescape)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{part or 'template'}: {exc}") from exc


@functools.lru_cache(maxsize=512)
def _compiled(source: str, autoescape: bool) -> Any:
    """A compiled template per source: a merchant's edit is a new source, so a new entry."""
    template = _engine().from_string(source)
    if not autoescape:
        # Compiled as written first (above), so that an error names the merchant's own tags.
        template = _engine().from_string("{% autoescape off %}" + source + "{% endautoescape %}")
    return template


def _source(event: str, channel: str, kind: str, part: str, language: str,
            overrides: dict[tuple[str, str], Any]) -> tuple[str, bool]:
    """(source, is_file) of one part, or ("", False) when none exists."""
    for lang in dict.fromkeys([language, store_language(), "en"]):
        row = overrides.get((channel, lang))
        if row is not None and getattr(row, part):
            return getattr(row, part), False
        for name in _file_name(kind, channel, part):
            try:
                template = get_template(f"notifications/{lang}/{event}/{name}")
            except TemplateDoesNotExist:
                continue
            return template.template.source, True
    return "", False


def sources(event: str, channel: str, kind: str, language: str,
            overrides: dict[tuple[str, str], Any] | None = None) -> dict[str, str]:
    """The source of each part as it would be used now (for the admin's "default" view)."""
    if overrides is None:
        from backoffice.notifications.models import MessageTemplate

        overrides = {(t.channel, t.language): t for t in
                     MessageTemplate.objects.filter(event=event, channel=channel)}
    return {part: _source(event, channel, kind, part, language, overrides)[0] for part in PARTS}


def render_sources(parts: dict[str, str], context: dict[str, Any], *,
                   language: str = "") -> Rendered:
    """Render the given sources (``TemplateError`` when one does not compile or render)."""
    out = {}
    with translation.override(language or store_language()):
        for part in PARTS:
            source = parts.get(part) or ""
            if not source:
                out[part] = ""
                continue
            template = compile_source(source, autoescape=part == "html", part=part)
            try:
                text = template.render(Context(context, autoescape=part == "html"))
            except Exception as exc:  # noqa: BLE001 - any render error is the template's
                raise TemplateError(f"{part}: {exc}") from exc
            # Template tags on lines of their own leave blank lines behind: at most one in a row.
            out[part] = re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text).strip() \
                if part != "html" else text
    subject = " ".join(out["subject"].split())  # one line: a header cannot hold a newline
    return Rendered(subject=subject[:255], text=out["text"], html=out["html"])


def render(event: str, channel: str, kind: str, context: dict[str, Any],
           language: str = "") -> Rendered:
    """The message for ``event`` on ``channel`` (of ``kind`` "email" or "phone")."""
    language = base_language(language) or store_language()
    parts = sources(event, channel, kind, language)
    if not parts["text"] and not parts["html"]:
        raise TemplateError(f"there is no template for {event} by {channel}")
    return render_sources(parts, context, language=language)
