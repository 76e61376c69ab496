"""Notifications in the admin: the outbox, the wording of every message, and who hears of staff
alerts.

- **Notifications** (``Notification``): every message the store sent or is sending, read-only.
  Filters by message, channel, status, audience and day; a search by recipient or order
  number; **Resend** (``services.resend``), which refuses messages that held a one-time link.
  A message's page shows what was sent (the HTML in a sandboxed frame), never the body or the
  link of a message that held a one-time link.
- **Message templates** (``NotificationRule``: one row per message and channel): the
  merchant's switch for each, whether its wording is the default or theirs, and the editor of
  one (message, channel, language): the form starts from the default, shown beside it; a
  preview renders it with the newest order (or the message's sample data); "send a test" sends
  the preview to the staff member; a wording that does not render is never saved.
- **Staff alerts** (``StaffAlert``): who hears of each alert, by email and by SMS.

The order page's timeline lists the order's messages among its events
(``order_timeline_message``, used by ``backoffice.orders.admin``).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from django import forms
from django.conf import global_settings, settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import (
    Case,
    CharField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
)
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.template.utils import get_app_template_dirs
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import get_language_info, ngettext
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import BooleanRadioFilter, ChoicesDropdownFilter, DropdownFilter
from unfold.decorators import action, display
from unfold.utils import display_for_label
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)

from backoffice import permissions
from backoffice.admin_access import GuardedActionsMixin, staff_actor
from backoffice.admin_filters import DayRangeFilter
from backoffice.catalog.admin import EstimatedCountPaginator
from backoffice.notifications import catalogue, rendering, services, setup
from backoffice.notifications.models import (
    Audience,
    MessageTemplate,
    Notification,
    NotificationRule,
    StaffAlert,
    Status,
)
from backoffice.notifications.phones import InvalidPhoneNumber, e164_or_blank, to_e164
from backoffice.orders.models import Order
from backoffice.plugin_host import services as plugins
from backoffice.plugin_host.errors import PluginConfigError, UnknownProvider
from backoffice.plugin_host.protocols import Notification as Message

logger = logging.getLogger(__name__)

STATUS_COLOURS = {
    Status.QUEUED.value: "info",
    Status.SENDING.value: "info",
    Status.SENT.value: "primary",
    Status.DELIVERED.value: "success",
    Status.FAILED.value: "danger",
}
# Names of channels people know by their letters; any other is shown by its code.
CHANNEL_NAMES = {"email": _("email"), "sms": "SMS", "whatsapp": "WhatsApp"}
# What a message that held a one-time link shows staff instead of its text.
HIDDEN_NOTE = _("Hidden: this message held a one-time link (a password reset or an email "
                "verification), which staff never see. The customer asks for a new link.")
HIDDEN_VALUE = "[hidden: one-time link]"
# A search term that may be a phone number: digits and what people type between them.
PHONE_LIKE = re.compile(r"\+?[\d\s\-().]{7,20}")
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
PARTS_OF_KIND = {"email": ("subject", "text", "html"), "phone": ("text",)}


def event_label(code: str) -> str:
    spec = catalogue.EVENTS.get(code)
    return str(spec.label) if spec is not None else code


def channel_name(code: str) -> str:
    return str(CHANNEL_NAMES.get(code, code))


def masked(recipient: str) -> str:
    """Enough of an address to tell messages apart at a glance: ``w***@example.com``,
    ``+2547…``."""
    if "@" in recipient:
        name, _at, domain = recipient.partition("@")
        return f"{name[:1]}***@{domain}"
    return f"{recipient[:5]}…" if len(recipient) > 5 else recipient


def status_badge(obj: Notification) -> str:
    return display_for_label((obj.status, obj.get_status_display()), "-", STATUS_COLOURS)


def _when(value: datetime | None) -> str:
    return formats.localize(timezone.template_localtime(value)) if value else ""


def _pre(text: str) -> str:
    """Plain text as written: its line breaks kept, long lines wrapped."""
    return format_html('<div style="white-space: pre-wrap">{}</div>', text)


def html_frame(html: str, *, title: str, height: str = "32rem") -> str:
    """An HTML message shown in a frame that runs nothing: no scripts, no forms, no navigation
    of the admin (``sandbox`` with no permissions), and nothing sent as the referrer."""
    return format_html(
        '<iframe sandbox="" referrerpolicy="no-referrer" srcdoc="{}" title="{}" '
        'class="bg-white border border-base-200 rounded-default w-full dark:border-base-800" '
        'style="height: {}"></iframe>', html, title, height,
    )


def _channels(request: HttpRequest) -> dict[str, tuple[str, str]]:
    """``{code: (recipient kind, name)}``: email and SMS, which every store has a switch for,
    then the active plugins' channels (one query, once per request)."""
    cache = request.__dict__.setdefault("_notification_channels", None)
    if cache is not None:
        return cache
    found = {code: ("email" if code == "email" else "phone", channel_name(code))
             for code in setup.KNOWN_CHANNELS}
    active = {}
    for channel in plugins.notification_channels():
        active.setdefault(channel.code, (services.recipient_kind(channel),
                                         str(getattr(channel, "name", "") or channel.code)))
    found.update(active)
    request._notification_channels = found
    request._active_notification_channels = set(active)
    return found


def _active_channels(request: HttpRequest) -> set[str]:
    _channels(request)
    return request._active_notification_channels


# --- Notifications (the outbox) ---------------------------------------------------------------


class EventFilter(DropdownFilter):
    title = _("message")
    parameter_name = "event"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, Any]]:
        choices = catalogue.choices()
        if self.value() and self.value() not in catalogue.EVENTS:
            choices.append((self.value(), self.value()))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(event=self.value()) if self.value() else queryset


class ChannelFilter(DropdownFilter):
    """Email, SMS and the active channels (no scan of the table), plus the value in the URL
    when its plugin has gone."""

    title = _("channel")
    parameter_name = "channel"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, Any]]:
        choices = {code: name for code, (_kind, name) in _channels(request).items()}
        if self.value() and self.value() not in choices:
            choices[self.value()] = self.value()
        return list(choices.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(channel=self.value()) if self.value() else queryset


@admin.register(Notification)
class NotificationAdmin(GuardedActionsMixin, ModelAdmin):
    """The outbox, newest first. Read-only: rows are written by the services; staff resend."""

    list_display = ["event_display", "recipient", "channel_display", "status_display",
                    "order_link", "attempts", "created_at", "sent_display", "cost"]
    list_display_links = ["event_display"]
    list_filter = [EventFilter, ChannelFilter, ("status", ChoicesDropdownFilter),
                   ("audience", ChoicesDropdownFilter), ("created_at", DayRangeFilter)]
    list_filter_submit = True
    # The search is ``get_search_results``; these make the box appear.
    search_fields = ["recipient", "order__number"]
    search_help_text = _("An email address or phone number (or part of one), or an order "
                         "number.")
    ordering = ["-created_at", "-id"]
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ["resend"]
    actions_detail = ["resend_detail"]
    list_before_template = "admin/notifications/notification/delivery_reports.html"
    fieldsets = [
        (_("Message"), {"fields": [
            "event_display", "audience", "channel_display", "recipient", "language",
            "order_link", "user_link", "event_key", "sensitive", "created_at",
        ]}),
        (_("Sending"), {"fields": [
            "status_display", "attempts", "resends", "next_attempt_at", "started_at",
            "sent_at", "delivered_at", "provider_message_id", "cost", "error_display",
        ]}),
        (_("Content"), {"fields": [
            "content_note", "subject_display", "text_display", "html_display",
            "context_display",
        ]}),
    ]
    readonly_fields = [name for _title, options in fieldsets for name in options["fields"]]

    # --- permissions: a record; staff resend, nothing else ---

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_resend_permission(self, request: HttpRequest, obj=None) -> bool:
        """Resending: ``notifications.resend_notification`` (the services check it too)."""
        return request.user.has_perm(permissions.RESEND_NOTIFICATION)

    # --- the list ---

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).select_related("order", "user")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """An order number (``#10001`` too) is looked up alone, by its unique index; otherwise
        the recipient contains the term, or is the phone number it spells (``0712 345 678``
        finds ``+254712345678``)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        number = term.removeprefix("#")
        if number.isdigit() and Order.objects.filter(number=number).exists():
            return queryset.filter(order__number=number), False
        match = Q(recipient__icontains=term)
        if PHONE_LIKE.fullmatch(term):
            phone = e164_or_blank(term)
            if phone:
                match |= Q(recipient=phone)
        return queryset.filter(match), False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {**(extra_context or {}),
                         "delivery_reports": self._delivery_reports(request)}
        return super().changelist_view(request, extra_context)

    def _delivery_reports(self, request: HttpRequest) -> list[tuple[str, str]]:
        """``[(channel name, URL)]`` of the active phone channels: the address their provider
        posts delivery reports to. It holds a secret, so only staff who set up plugins see
        it."""
        if not request.user.has_perm(permissions.MANAGE_PLUGINS):
            return []
        return [(name, services.delivery_report_url(code))
                for code, (kind, name) in _channels(request).items()
                if kind == "phone" and code in _active_channels(request)]

    @display(description=_("message"), ordering="event")
    def event_display(self, obj: Notification) -> str:
        if obj.audience == Audience.STAFF:
            return format_html('{}<br><span class="text-xs text-base-500">{}</span>',
                               event_label(obj.event), _("staff alert"))
        return event_label(obj.event)

    @display(description=_("channel"), ordering="channel")
    def channel_display(self, obj: Notification) -> str:
        return channel_name(obj.channel)

    @display(description=_("status"), ordering="status")
    def status_display(self, obj: Notification) -> str:
        return status_badge(obj)

    @display(description=_("order"), ordering="order_id")
    def order_link(self, obj: Notification) -> str:
        if obj.order is None:
            return "-"
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}" class="text-primary-600">{}</a>', url, obj.order)

    @display(description=_("sent"), ordering="sent_at")
    def sent_display(self, obj: Notification) -> str:
        if obj.delivered_at and obj.delivered_at != obj.sent_at:
            return format_html('{}<br><span class="text-xs text-base-500">{} {}</span>',
                               _when(obj.sent_at) or "-", _("delivered"),
                               _when(obj.delivered_at))
        return _when(obj.sent_at or obj.delivered_at) or "-"

    # --- the message's page ---

    @display(description=_("customer account"))
    def user_link(self, obj: Notification) -> str:
        if obj.user is None:
            return "-"
        url = reverse("admin:auth_user_change", args=[obj.user_id])
        return format_html('<a href="{}" class="text-primary-600">{}</a>', url,
                           obj.user.get_username())

    @display(description=_("error"))
    def error_display(self, obj: Notification) -> str:
        return _pre(obj.error) if obj.error else "-"

    def _content(self, obj: Notification) -> dict[str, Any]:
        """What the page shows of the message (once per row): what was sent; for a message
        not sent yet, what it would say now; nothing of one that held a one-time link."""
        if hasattr(obj, "_admin_content"):
            return obj._admin_content
        content: dict[str, Any] = {"subject": obj.subject, "text": obj.body, "html": obj.html,
                                   "note": "", "error": ""}
        if services.is_erased(obj) or obj.body == services.ERASED_TEXT:
            content.update(text="", html="",
                           note=_("Erased: the customer closed their account."))
        elif obj.sensitive:
            content.update(text="", html="", note=HIDDEN_NOTE)
        elif not (obj.subject or obj.body or obj.html):
            try:
                rendered = rendering.render(obj.event, obj.channel, self._kind(obj),
                                            services.context_of(obj), obj.language)
            except rendering.TemplateError as exc:
                content["error"] = str(exc)
                content["note"] = _("Not rendered yet, and the template cannot render now: "
                                    "%(error)s") % {"error": exc}
            else:
                content.update(subject=rendered.subject, text=rendered.text,
                               html=rendered.html,
                               note=_("Not sent yet: this is what it would say now (the "
                                      "current template and order)."))
        obj._admin_content = content
        return content

    def _kind(self, obj: Notification) -> str:
        return "email" if "@" in obj.recipient else "phone"

    @display(description=_("note"))
    def content_note(self, obj: Notification) -> str:
        return self._content(obj)["note"] or "-"

    @display(description=_("subject"))
    def subject_display(self, obj: Notification) -> str:
        return self._content(obj)["subject"] or "-"

    @display(description=_("text"))
    def text_display(self, obj: Notification) -> str:
        text = self._content(obj)["text"]
        return _pre(text) if text else "-"

    @display(description=_("HTML"))
    def html_display(self, obj: Notification) -> str:
        html = self._content(obj)["html"]
        return html_frame(html, title=str(_("The HTML email"))) if html else "-"

    @display(description=_("context"))
    def context_display(self, obj: Notification) -> str:
        """The facts the message was rendered from; a one-time link's value is hidden."""
        context = _without_links(obj.context or {}) if obj.sensitive else (obj.context or {})
        if not context:
            return "-"
        text = json.dumps(context, indent=2, ensure_ascii=False, sort_keys=True, default=str)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    # --- resending ---

    def _resend(self, request: HttpRequest, pks: list[int]) -> None:
        queued, refused = services.resend(pks, actor=staff_actor(request))
        left = len(pks) - queued - refused
        if queued:
            messages.success(request, ngettext(
                "%(count)d message queued to be sent again.",
                "%(count)d messages queued to be sent again.", queued) % {"count": queued})
        if refused:
            messages.warning(request, ngettext(
                "%(count)d message refused: it held a one-time link (a password reset or an "
                "email verification), which is never sent twice (the customer asks for a new "
                "one), or its customer closed their account.",
                "%(count)d messages refused: they held a one-time link (a password reset or "
                "an email verification), which is never sent twice (the customer asks for a "
                "new one), or their customer closed their account.", refused)
                % {"count": refused})
        if left:
            messages.info(request, ngettext(
                "%(count)d message left as it is: it is queued or being sent already.",
                "%(count)d messages left as they are: they are queued or being sent already.",
                left) % {"count": left})

    @action(description=_("Resend"), permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        self._resend(request, list(queryset.values_list("pk", flat=True)))

    def _refusal(self, obj: Notification) -> str:
        if services.is_erased(obj):
            return str(_("Its customer closed their account: their address is erased."))
        if obj.sensitive:
            return str(_("It held a one-time link, which is never sent twice: the customer "
                         "asks for a new one."))
        if obj.status in (Status.QUEUED, Status.SENDING):
            return str(_("It is queued or being sent already."))
        return ""

    def get_object(self, request: HttpRequest, object_id: str, from_field=None):
        """Read once per request (the page and its action menu both ask for it)."""
        cache = request.__dict__.setdefault("_notification_admin_objects", {})
        key = (str(object_id), from_field)
        if key not in cache:
            cache[key] = super().get_object(request, object_id, from_field)
        return cache[key]

    def get_actions_detail(self, request: HttpRequest, object_id) -> list:
        """"Resend" only on a message that may be resent."""
        found = super().get_actions_detail(request, object_id)
        obj = self.get_object(request, unquote(str(object_id)))
        if obj is None or not self._refusal(obj):
            return found
        return [a for a in found if not a.action_name.endswith("_resend_detail")]

    @action(description=_("Resend"), url_path="resend", permissions=["resend"], icon="send")
    def resend_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A GET asks (saying what happens), a POST resends."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        url = reverse("admin:notifications_notification_change", args=[obj.pk])
        if request.method == "POST":
            self._resend(request, [obj.pk])
            return HttpResponseRedirect(url)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Resend"),
            "opts": self.opts,
            "original": obj,
            "notification": obj,
            "label": event_label(obj.event),
            "channel": channel_name(obj.channel),
            "refusal": self._refusal(obj),
            "back_url": url,
        }
        return TemplateResponse(request, "admin/notifications/notification/resend.html",
                                context)


def _without_links(value: Any) -> Any:
    """``value`` with every one-time link's value hidden (a key named ``link``, ``*_link``,
    ``token`` or ``*_token``, at any depth)."""
    if isinstance(value, dict):
        return {key: HIDDEN_VALUE if _is_secret_key(key) else _without_links(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_without_links(item) for item in value]
    return value


def _is_secret_key(key: Any) -> bool:
    key = str(key).lower()
    return key in ("link", "token") or key.endswith(("_link", "_token"))


# --- The order page's timeline ----------------------------------------------------------------


def order_timeline_message(obj: Notification, *, link: bool) -> dict[str, Any]:
    """One message as a row of the order's timeline: "Order confirmation emailed to
    w***@example.com" with its status, linking to its page when ``link``."""
    label = event_label(obj.event)
    if obj.audience == Audience.STAFF:
        label = _("%(message)s (staff alert)") % {"message": label}
    if "@" in obj.recipient:
        text = _("%(message)s emailed to %(recipient)s")
    else:
        text = _("%(message)s by %(channel)s to %(recipient)s")
    error = obj.error.strip().splitlines()[-1] if obj.error.strip() else ""
    return {
        "when": obj.created_at,
        "kind": _("Message"),
        "text": text % {"message": label, "channel": channel_name(obj.channel),
                        "recipient": masked(obj.recipient)},
        "status": obj.get_status_display(),
        "colour": STATUS_COLOURS.get(obj.status, ""),
        "url": reverse("admin:notifications_notification_change", args=[obj.pk]) if link
        else "",
        "note": error if obj.status in (Status.FAILED, Status.QUEUED) else "",
        "order": (1, obj.pk),
    }


# --- Message templates (a switch and a wording per message and channel) ------------------------


def _position(codes: list[str], field: str) -> Case:
    """Rows in the order of ``codes`` (the catalogue's), not the alphabet's."""
    return Case(*[When(**{field: code}, then=Value(i)) for i, code in enumerate(codes)],
                default=Value(len(codes)), output_field=IntegerField())


def _lookup(values: dict[str, str], field: str) -> Case:
    return Case(*[When(**{field: key}, then=Value(value)) for key, value in values.items()],
                default=F(field), output_field=CharField())


class AudienceOfEventFilter(DropdownFilter):
    title = _("audience")
    parameter_name = "audience"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, Any]]:
        return list(Audience.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == Audience.CUSTOMER:
            return queryset.filter(event__in=catalogue.CUSTOMER_EVENTS)
        if self.value() == Audience.STAFF:
            return queryset.filter(event__in=catalogue.STAFF_EVENTS)
        return queryset


class RuleChannelFilter(ChannelFilter):
    pass


class RuleSwitchForm(forms.ModelForm):
    """The list's switch; an account email's is shown but cannot be turned off (it is sent
    whatever the switch says: a customer must be able to reset a password)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        spec = catalogue.EVENTS.get(self.instance.event)
        if spec is not None and spec.email_only and "enabled" in self.fields:
            self.fields["enabled"].disabled = True


@admin.register(NotificationRule)
class MessageTemplateAdmin(ModelAdmin):
    """"Message templates": every message the store sends, on each channel it has, with its
    switch (edited in the list) and its wording (edited on its own page)."""

    list_display = ["message", "audience", "channel_display", "enabled", "wording"]
    list_display_links = None
    list_editable = ["enabled"]
    list_filter = [AudienceOfEventFilter, RuleChannelFilter, ("enabled", BooleanRadioFilter)]
    list_filter_submit = True
    list_per_page = 200
    show_full_result_count = False
    list_before_template = "admin/notifications/notificationrule/intro.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a row per message and channel, made by ``setup.ensure_rules``

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_wording_permission(self, request: HttpRequest, *, new: bool) -> bool:
        """Saving a wording, restoring the default, sending a test: "change message template"
        (and "add message template" for a language not worded yet)."""
        user = request.user
        return user.has_perm("notifications.change_messagetemplate") and (
            not new or user.has_perm("notifications.add_messagetemplate"))

    # --- the list ---

    def get_queryset(self, request: HttpRequest) -> QuerySet[NotificationRule]:
        """The rows of the channels the store has (email, SMS, the active plugins'), in the
        catalogue's order; an account email on email only (it goes nowhere else)."""
        channels = _channels(request)
        phone = [code for code, (kind, _name) in channels.items() if kind != "email"]
        email_only = [code for code, spec in catalogue.EVENTS.items() if spec.email_only]
        worded = MessageTemplate.objects.filter(
            Q(subject__gt="") | Q(text__gt="") | Q(html__gt=""),
            event=OuterRef("event"), channel=OuterRef("channel"),
        )
        # Annotated before ordered (``ModelAdmin.get_queryset`` orders first).
        return (NotificationRule.objects
                .filter(channel__in=list(channels), event__in=list(catalogue.EVENTS))
                .exclude(event__in=email_only, channel__in=phone)
                .annotate(event_position=_position(list(catalogue.EVENTS), "event"),
                          channel_position=_position(list(channels), "channel"),
                          channel_kind=_lookup({c: k for c, (k, _n) in channels.items()},
                                               "channel"),
                          channel_name=_lookup({c: n for c, (_k, n) in channels.items()},
                                               "channel"),
                          worded=Exists(worded))
                .order_by(*self.get_ordering(request)))

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["event_position", "channel_position"]

    def get_changelist_form(self, request: HttpRequest, **kwargs):
        base = super().get_changelist_form(request, **kwargs)
        return type("RuleSwitchForm", (RuleSwitchForm, base), {})

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        self._ensure_rows(request)
        return super().changelist_view(request, {
            "title": _("Message templates"), **(extra_context or {}),
        })

    def _ensure_rows(self, request: HttpRequest) -> None:
        """A channel switched on since the last migrate has its rows from its first visit."""
        channels = list(_channels(request))
        have = NotificationRule.objects.filter(channel__in=channels,
                                               event__in=list(catalogue.EVENTS)).count()
        if have < len(catalogue.EVENTS) * len(channels):
            setup.ensure_rules(channels)

    @display(description=_("message"), ordering="event_position")
    def message(self, obj: NotificationRule) -> str:
        url = wording_url(obj.event, obj.channel)
        spec = catalogue.EVENTS.get(obj.event)
        hint = _("always sent: an account email") if spec and spec.email_only else obj.event
        return format_html(
            '<a href="{}" class="font-medium text-primary-600">{}</a>'
            '<br><span class="text-xs text-base-500">{}</span>',
            url, event_label(obj.event), hint,
        )

    @display(description=_("audience"))
    def audience(self, obj: NotificationRule) -> str:
        spec = catalogue.EVENTS.get(obj.event)
        return Audience(spec.audience).label if spec else "-"

    @display(description=_("channel"), ordering="channel_position")
    def channel_display(self, obj: NotificationRule) -> str:
        return obj.channel_name

    @display(description=_("wording"))
    def wording(self, obj: NotificationRule) -> str:
        """The merchant's (in some language), the default, or none at all (the message
        cannot be sent until it is written)."""
        if obj.worded:
            return display_for_label(("yours", _("Yours")), "-", {"yours": "success"})
        defaults = rendering.sources(obj.event, obj.channel, obj.channel_kind,
                                     rendering.store_language(), overrides={})
        if defaults["text"] or defaults["html"]:
            return display_for_label(("default", _("Default")), "-", {"default": ""})
        return display_for_label(("missing", _("None: write it")), "-",
                                 {"missing": "danger"})

    # --- one message's page: its wording ---

    def get_urls(self):
        return [
            path("wording/<str:event>/<str:channel>/",
                 self.admin_site.admin_view(self.wording_view),
                 name="notifications_notificationrule_wording"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None):
        """A row's page is its wording's."""
        rule = self.get_object(request, unquote(object_id))
        if rule is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return HttpResponseRedirect(wording_url(rule.event, rule.channel))

    def wording_view(self, request: HttpRequest, event: str, channel: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        spec = catalogue.EVENTS.get(event)
        channels = _channels(request)
        if spec is None or channel not in channels:
            raise Http404
        kind, name = channels[channel]
        if spec.email_only and kind != "email":
            raise Http404
        language = _language_asked(request)
        here = wording_url(event, channel, language)
        saved = {t.language: t for t in MessageTemplate.objects.filter(event=event,
                                                                        channel=channel)}
        row = saved.get(language)
        others = {(channel, lang): t for lang, t in saved.items() if lang != language}
        defaults = rendering.sources(event, channel, kind, language, overrides=others)
        can_edit = self.has_wording_permission(request, new=row is None)
        can_switch = self.has_change_permission(request)
        pressed = next((name for name in ("_save", "_preview", "_test", "_restore", "_switch")
                        if name in request.POST), "") if request.method == "POST" else ""

        if pressed == "_switch":
            if not can_switch:
                raise PermissionDenied
            enabled = request.POST.get("enabled") == "1" or spec.email_only
            rule, _created = NotificationRule.objects.update_or_create(
                event=event, channel=channel, defaults={"enabled": enabled})
            self.log_change(request, rule, [{"changed": {"fields": ["enabled"]}}])
            messages.success(request, (_("%(message)s is sent by %(channel)s.") if enabled
                                       else _("%(message)s is not sent by %(channel)s any "
                                              "more.")) % {"message": spec.label,
                                                           "channel": name})
            return HttpResponseRedirect(here)
        if pressed == "_restore":
            if not self.has_wording_permission(request, new=False):
                raise PermissionDenied
            self._delete_wording(request, row)
            messages.success(request, _("The default wording is used again."))
            return HttpResponseRedirect(here)
        if pressed in ("_save", "_test") and not can_edit:
            raise PermissionDenied

        form = WordingForm(
            request.POST if pressed else None, kind=kind, defaults=defaults,
            sample={"store_name": settings.STORE_NAME, **spec.sample}, language=language,
            initial={part: _normalised(getattr(row, part, "") or defaults[part])
                     for part in rendering.PARTS},
            disabled=not can_edit,
        )
        valid = bool(pressed) and form.is_valid()
        if valid and pressed == "_save":
            self._save_wording(request, form, row, event=event, channel=channel,
                               language=language)
            return HttpResponseRedirect(here)
        preview_context, preview_source = preview_data(spec)
        preview, preview_error = None, ""
        if valid:
            preview, preview_error = _render(form.parts(), preview_context, language)
            if pressed == "_test" and preview is None:
                form.add_error(None, _("Not sent: the preview cannot render (below)."))
            elif pressed == "_test":
                self._send_test(request, form, preview, event=event, channel=channel,
                                kind=kind, context=preview_context, language=language)
        elif not pressed:
            preview, preview_error = _render(form.initial_parts(), preview_context, language)

        rule = NotificationRule.objects.filter(event=event, channel=channel).first()
        fields = [(form[part], defaults[part]) for part in PARTS_OF_KIND[kind]]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("%(message)s by %(channel)s") % {"message": spec.label, "channel": name},
            "spec": spec,
            "audience": Audience(spec.audience).label,
            "channel_code": channel,
            "channel_name": name,
            "kind": kind,
            "active": channel in _active_channels(request),
            "language": language,
            "languages": _language_choices(language, saved, event, channel),
            "row": row,
            "enabled": rule.enabled if rule is not None else True,
            "can_edit": can_edit,
            "can_switch": can_switch and not spec.email_only,
            "form": form,
            "fields": fields,
            "variables": _variables({**spec.sample, **preview_context}),
            "preview": preview,
            "preview_error": preview_error,
            "preview_source": preview_source,
            "preview_html": html_frame(preview.html, title=str(_("The HTML email")))
            if preview is not None and preview.html else "",
            "sms": rendering.sms_length(preview.text) if preview is not None and kind == "phone"
            else None,
            "test_to": request.user.email if kind == "email" else "",
            "list_url": reverse("admin:notifications_notificationrule_changelist"),
            "here": here,
        }
        return TemplateResponse(request, "admin/notifications/notificationrule/wording.html",
                                context)

    def _save_wording(self, request: HttpRequest, form: WordingForm, row: MessageTemplate | None,
                      *, event: str, channel: str, language: str) -> None:
        """Parts left as the default are stored blank (they follow the default when it
        changes); nothing but the default left: the row goes."""
        values = form.overrides()
        with transaction.atomic():
            if not any(values.values()):
                self._delete_wording(request, row)
                messages.success(request, _("Saved: this message uses the default wording."))
                return
            saved, created = MessageTemplate.objects.update_or_create(
                event=event, channel=channel, language=language,
                defaults={**values, "updated_by": request.user},
            )
        if created:
            self.log_addition(request, saved, [{"added": {}}])
        else:
            self.log_change(request, saved, [{"changed": {"fields": list(values)}}])
        messages.success(request, _("Saved: %(message)s by %(channel)s (%(language)s) uses "
                                    "your wording.") % {
            "message": event_label(event), "channel": channel_name(channel),
            "language": language})

    def _delete_wording(self, request: HttpRequest, row: MessageTemplate | None) -> None:
        if row is None:
            return
        rows = MessageTemplate.objects.filter(pk=row.pk)
        self.log_deletions(request, rows)
        rows.delete()

    def _send_test(self, request: HttpRequest, form: WordingForm, preview: rendering.Rendered,
                   *, event: str, channel: str, kind: str, context: dict[str, Any],
                   language: str) -> None:
        """The preview, now, to the staff member: their email, or the number they typed."""
        if kind == "email":
            recipient = request.user.email
            if not recipient:
                form.add_error(None, _("Your account has no email address: add one to your "
                                       "user to receive tests."))
                return
        else:
            try:
                recipient = to_e164(form.cleaned_data.get("test_phone", ""))
            except InvalidPhoneNumber as exc:
                form.add_error("test_phone", str(exc))
                return
        try:
            bound = plugins.notification_channel(channel)
        except UnknownProvider:
            form.add_error(None, _("The %(channel)s channel is not active: switch its plugin "
                                   "on to send a test.") % {"channel": channel_name(channel)})
            return
        except PluginConfigError as exc:
            form.add_error(None, _("The %(channel)s channel is not set up: %(error)s")
                           % {"channel": channel_name(channel), "error": exc})
            return
        subject = f"[{_('Test')}] {preview.subject}".strip() if kind == "email" else ""
        message = Message(recipient=recipient, subject=subject, body=preview.text,
                          html=preview.html, event=event, context=context, language=language)
        try:
            result = bound.provider.send(message, bound.config)
        except Exception as exc:  # noqa: BLE001 - the channel's failure is shown, not raised
            logger.warning("test of %s by %s failed: %s", event, channel, type(exc).__name__)
            form.add_error(None, _("The test could not be sent: %(error)s")
                           % {"error": f"{type(exc).__name__}: {exc}"})
            return
        if result.status == "failed":
            form.add_error(None, _("The test could not be sent: %(error)s")
                           % {"error": result.error or _("the provider refused it.")})
            return
        logger.info("test of %s by %s (%s) sent by %s", event, channel, language,
                    request.user.get_username())
        messages.success(request, _("Test sent to %(recipient)s.") % {"recipient": recipient})


def wording_url(event: str, channel: str, language: str = "") -> str:
    url = reverse("admin:notifications_notificationrule_wording", args=[event, channel])
    return f"{url}?{urlencode({'language': language})}" if language else url


def _language_asked(request: HttpRequest) -> str:
    asked = rendering.base_language(request.GET.get("language", ""))
    return asked if LANGUAGE_CODE.fullmatch(asked) else rendering.store_language()


@lru_cache(maxsize=1)
def _shipped_languages() -> tuple[str, ...]:
    """The languages of the shipped templates (``notifications/<language>/``)."""
    from django.template import Engine

    found = set()
    for folder in [*Engine.get_default().dirs, *get_app_template_dirs("templates")]:
        root = Path(folder) / "notifications"
        if root.is_dir():
            found.update(p.name for p in root.iterdir()
                         if p.is_dir() and LANGUAGE_CODE.fullmatch(p.name))
    return tuple(sorted(found))


def _language_choices(current: str, saved: dict[str, MessageTemplate], event: str,
                      channel: str) -> list[dict[str, Any]]:
    """The store's language, those with shipped templates, those the merchant worded and the
    project's ``LANGUAGES`` (when set), each with its link."""
    codes = [rendering.store_language(), *_shipped_languages(), *sorted(saved), current]
    if settings.LANGUAGES is not global_settings.LANGUAGES:
        codes += [rendering.base_language(code) for code, _name in settings.LANGUAGES]
    choices = []
    for code in dict.fromkeys(codes):
        try:
            name = get_language_info(code)["name_local"]
        except KeyError:
            name = code
        row = saved.get(code)
        choices.append({
            "code": code, "name": name, "current": code == current,
            "worded": row is not None and any(getattr(row, p) for p in rendering.PARTS),
            "url": wording_url(event, channel, code),
        })
    return choices


def preview_data(spec: catalogue.MessageEvent) -> tuple[dict[str, Any], str]:
    """What a preview is rendered from, and where it comes from: an order message with the
    newest order (its sample's event facts on top: a refund's reason...), else the sample."""
    context = {"store_name": settings.STORE_NAME, **spec.sample}
    if "order_number" in spec.sample:
        order = Order.objects.order_by("-created_at", "-id").first()
        if order is not None:
            context.update(services.order_context(order))
            return context, str(_("Order %(order)s, the newest, with this message's sample "
                                  "details.") % {"order": order})
    return context, str(_("Sample data."))


def _render(parts: dict[str, str], context: dict[str, Any],
            language: str) -> tuple[rendering.Rendered | None, str]:
    try:
        return rendering.render_sources(parts, context, language=language), ""
    except rendering.TemplateError as exc:
        return None, str(exc)


def _variables(context: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(variable, what it holds)]`` for the editor's help: a list's or a mapping's keys."""
    found = []
    for key in sorted(context):
        value = context[key]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            found.append((key, _("a list; each has %(keys)s")
                          % {"keys": ", ".join(value[0])}))
        elif isinstance(value, dict):
            found.append((key, _("has %(keys)s") % {"keys": ", ".join(value)}))
        else:
            found.append((key, ""))
    return found


def _normalised(text: str) -> str:
    return (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()


class WordingForm(forms.Form):
    """One message's wording in one language. Each part starts from what is used now (the
    merchant's, else the default); a part left as the default (or blank) is stored blank, so
    it follows the default. A wording that does not compile and render with the message's
    sample data is refused, on its part."""

    subject = forms.CharField(
        label=_("Subject"), max_length=255, required=False,
        widget=UnfoldAdminTextInputWidget,
    )
    text = forms.CharField(
        label=_("Text"), required=False, widget=UnfoldAdminTextareaWidget(attrs={"rows": 14}),
        help_text=_("The plain-text email (for mail apps that show no HTML)."),
    )
    html = forms.CharField(
        label=_("HTML"), required=False, widget=UnfoldAdminTextareaWidget(attrs={"rows": 18}),
    )
    test_phone = forms.CharField(
        label=_("Send the test to"), max_length=32, required=False,
        widget=UnfoldAdminTextInputWidget(attrs={"placeholder": "+254712345678"}),
        help_text=_("A phone number: the test costs one message."),
    )

    def __init__(self, *args, kind: str, defaults: dict[str, str], sample: dict[str, Any],
                 language: str, disabled: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind, self.defaults, self.sample, self.language = kind, defaults, sample, language
        if kind != "email":
            for name in ("subject", "html"):
                del self.fields[name]
            self.fields["text"].label = _("Text")
            self.fields["text"].help_text = ""
            self.fields["text"].widget.attrs["rows"] = 6
        else:
            del self.fields["test_phone"]
        for name in self.part_names:
            self.fields[name].help_text = " ".join(p for p in (
                str(self.fields[name].help_text or ""),
                str(_("Blank: the default.")),
            ) if p)
            if disabled:
                self.fields[name].disabled = True

    @property
    def part_names(self) -> tuple[str, ...]:
        return PARTS_OF_KIND[self.kind]

    def initial_parts(self) -> dict[str, str]:
        return {part: self.initial.get(part, "") if part in self.part_names else ""
                for part in rendering.PARTS}

    def parts(self) -> dict[str, str]:
        """The sources used: each part as written, else the default."""
        return {part: (self.cleaned_data.get(part) or self.defaults[part])
                if part in self.part_names else "" for part in rendering.PARTS}

    def overrides(self) -> dict[str, str]:
        """What to store: each part that differs from the default (newlines as ``\\n``)."""
        stored = {}
        for part in rendering.PARTS:
            value = _normalised(self.cleaned_data.get(part, "")) if part in self.part_names \
                else ""
            stored[part] = "" if value == _normalised(self.defaults[part]) else value
        return stored

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        parts = self.parts()
        if self.kind == "email":
            if not parts["subject"]:
                self.add_error("subject", _("Write a subject: this message has no default."))
            if not (parts["text"] or parts["html"]):
                self.add_error("text", _("Write the text or the HTML: this message has no "
                                         "default."))
        elif not parts["text"]:
            self.add_error("text", _("Write the text: this message has no default."))
        if self.errors:
            return cleaned
        try:
            for part in self.part_names:
                # Compiled as written first: a tag left open is named as such (the text parts
                # are compiled inside an ``autoescape`` block, which would be named instead).
                rendering.compile_source(parts[part], autoescape=True, part=part)
            rendering.render_sources(parts, self.sample, language=self.language)
        except rendering.TemplateError as exc:
            part, _colon, reason = str(exc).partition(": ")
            field = part if part in self.part_names else None
            self.add_error(field, _("This cannot be used: %(reason)s") % {
                "reason": reason if field else str(exc)})
        return cleaned


# --- Staff alerts -------------------------------------------------------------------------------


class StaffUsersField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        name = obj.get_full_name() or obj.get_username()
        if not obj.email:
            return str(_("%(name)s (no email address: hears nothing)") % {"name": name})
        return f"{name} <{obj.email}>"


class StaffAlertForm(forms.ModelForm):
    """Every address checked line by line ("Line 2: ..."); phone numbers stored in E.164."""

    users = StaffUsersField(
        label=_("Staff users"), required=False,
        queryset=get_user_model().objects.filter(is_staff=True, is_active=True)
        .order_by("username"),
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text=_("By email, to the address of their account."),
    )

    class Meta:
        model = StaffAlert
        fields = ["enabled", "users", "emails", "phones"]
        widgets = {
            "emails": UnfoldAdminTextareaWidget(attrs={"rows": 3}),
            "phones": UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        }

    def _lines(self, name: str, clean) -> str:
        kept, errors = {}, []
        for number, line in enumerate(self.cleaned_data.get(name, "").splitlines(), start=1):
            value = line.strip()
            if not value:
                continue
            try:
                value = clean(value)
            except (ValidationError, InvalidPhoneNumber) as exc:
                reason = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
                errors.append(ValidationError(
                    _("Line %(line)d (%(value)s): %(reason)s"),
                    params={"line": number, "value": value, "reason": reason},
                ))
                continue
            kept.setdefault(value.lower(), value)
        if errors:
            raise ValidationError(errors)
        return "\n".join(kept.values())

    def clean_emails(self) -> str:
        def email(value: str) -> str:
            validate_email(value)
            return value

        return self._lines("emails", email)

    def clean_phones(self) -> str:
        return self._lines("phones", to_e164)


@admin.register(StaffAlert)
class StaffAlertAdmin(ModelAdmin):
    form = StaffAlertForm
    list_display = ["alert", "enabled", "recipients"]
    list_display_links = ["alert"]
    list_filter = [("enabled", BooleanRadioFilter)]
    show_full_result_count = False
    list_before_template = "admin/notifications/staffalert/intro.html"
    readonly_fields = ["alert"]
    fieldsets = [
        (None, {"fields": ["alert", "enabled"]}),
        (_("Who hears of it"), {
            "fields": ["users", "emails", "phones"],
            "description": _("Nobody set here (no staff user with an email address, no "
                             "address, no number): the alert goes to the superusers' email "
                             "addresses. Phone numbers get an SMS when an SMS plugin is "
                             "active. Each channel's switch for the alert is on the Message "
                             "templates page."),
        }),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row per alert, made by ``setup.ensure_rules``

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[StaffAlert]:
        users = get_user_model().objects.order_by("username").only("id", "username", "email",
                                                                    "is_active", "is_staff")
        # Annotated before ordered (``ModelAdmin.get_queryset`` orders first).
        return (StaffAlert.objects
                .prefetch_related(Prefetch("users", queryset=users))
                .annotate(position=_position(catalogue.STAFF_EVENTS, "event"))
                .order_by(*self.get_ordering(request)))

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["position", "event"]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        have = set(StaffAlert.objects.values_list("event", flat=True))
        if not set(catalogue.STAFF_EVENTS) <= have:
            setup.ensure_rules()
        return super().changelist_view(request, extra_context)

    @display(description=_("alert"), ordering="position")
    def alert(self, obj: StaffAlert) -> str:
        return event_label(obj.event)

    @display(description=_("goes to"))
    def recipients(self, obj: StaffAlert) -> str:
        users = [u for u in obj.users.all() if u.is_active and u.is_staff and u.email]
        emails = [line for line in obj.emails.splitlines() if line.strip()]
        phones = [line for line in obj.phones.splitlines() if line.strip()]
        if not obj.enabled:
            return "-"
        if not (users or emails or phones):
            return display_for_label(("fallback", _("Nobody set: the superusers")), "-",
                                     {"fallback": "warning"})
        shown = [u.get_username() for u in users] + emails + phones
        return format_html_join(", ", "{}", ((item,) for item in shown))

    def save_related(self, request: HttpRequest, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        silent = [u.get_username() for u in form.cleaned_data.get("users", []) if not u.email]
        if silent:
            messages.warning(request, _("No email address, so they hear nothing: %(users)s.")
                             % {"users": ", ".join(silent)})
