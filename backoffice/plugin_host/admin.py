"""Plugins in the admin: switch them on, fill in their settings, watch their event deliveries.

Changing a plugin (its settings, secrets, on/off) and retrying its deliveries need
``plugins.manage_plugins``; others with "view plugin" see the page read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from backoffice import permissions
from backoffice.admin_access import GuardedActionsMixin, permission_check, staff_actor
from backoffice.crypto import DecryptionError
from backoffice.plugin_host.config import ConfigField, coerce, open_stored
from backoffice.plugin_host.errors import PluginConfigError
from backoffice.plugin_host.events import retry_failed
from backoffice.plugin_host.loading import get_plugin_host
from backoffice.plugin_host.models import (
    DeliveryStatus,
    PluginConfig,
    PluginEvent,
    PluginEventDelivery,
)
from backoffice.plugin_host.services import plan_plugin_config, update_plugin_config

SETTING_PREFIX = "setting__"
# A saved secret is never shown, and a blank secret field keeps it: this box removes it.
CLEAR_SUFFIX = "__clear"


class SettingBooleanField(forms.NullBooleanField):
    """Yes, no, or nothing saved so the default applies: three states a checkbox cannot show."""

    def __init__(self, *, empty_label: str, **kwargs) -> None:
        choices = [("", empty_label), ("true", _("Yes")), ("false", _("No"))]
        super().__init__(widget=forms.Select(choices=choices), **kwargs)

    def to_python(self, value):
        if value == "on":  # what a checkbox posts
            return True
        return super().to_python(value)

    def prepare_value(self, value):
        return {True: "true", False: "false"}.get(self.to_python(value), "")


def _yes_no(value) -> str:
    return str(_("Yes") if value else _("No"))


def shown_default(field_: ConfigField) -> str:
    """The default as the merchant reads it ("" when there is none, or the field is secret)."""
    if not field_.has_default or field_.is_secret:
        return ""
    try:
        value = coerce(field_, field_.default)
    except (ValueError, TypeError):
        return str(field_.default)
    if field_.kind == "bool":
        return _yes_no(value)
    if field_.kind == "choice":
        return str(dict(field_.choices).get(value, value))
    return str(value)


def _help_text(field_: ConfigField, source: str, env_name: str, secret_state: str) -> str:
    parts = []
    if source == "env":
        parts.append(_("Set by the environment variable %(name)s, which wins over the value "
                       "saved here.") % {"name": env_name})
    elif secret_state:
        parts.append(secret_state)
    if field_.help_text:
        parts.append(str(field_.help_text))
    default = shown_default(field_)
    if default:
        parts.append(_("Default: %(default)s (used when nothing is saved).")
                     % {"default": default})
    return " ".join(str(part) for part in parts)


def _form_field(
    field_: ConfigField, source: str, env_name: str, has_value: bool, readable: bool = True
) -> forms.Field:
    secret_state = ""
    if field_.is_secret:
        secret_state = (
            _("A value is saved; leave blank to keep it.") if has_value and readable
            else _("A value is saved but cannot be decrypted with the configured keys "
                   "(SECRETS_ENCRYPTION_KEYS): enter it again, or remove it.") if has_value
            else _("Not set.")
        )
    common = {
        "label": field_.label, "required": False,
        "help_text": _help_text(field_, source, env_name, secret_state),
    }
    if source == "env":
        common["disabled"] = True
    default = shown_default(field_)
    placeholder = {"placeholder": default} if default and source != "env" else {}
    if field_.is_secret:
        return forms.CharField(widget=forms.PasswordInput(render_value=False), **common)
    if field_.kind == "bool":
        empty = _("Default (%(default)s)") % {"default": default} if default else _("Not set")
        return SettingBooleanField(empty_label=empty, **common)
    if field_.kind == "int":
        return forms.IntegerField(widget=forms.NumberInput(attrs=placeholder), **common)
    if field_.kind == "decimal":
        return forms.DecimalField(widget=forms.NumberInput(attrs=placeholder), **common)
    if field_.kind == "choice":
        empty = _("Default (%(default)s)") % {"default": default} if default else "---"
        return forms.ChoiceField(choices=[("", empty), *field_.choices], **common)
    if field_.kind == "text":
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 4, **placeholder}), **common)
    if field_.kind == "url":
        return forms.URLField(assume_scheme="https", widget=forms.URLInput(attrs=placeholder),
                              **common)
    return forms.CharField(widget=forms.TextInput(attrs=placeholder), **common)


def _has_value(stored: dict, field_: ConfigField) -> bool:
    return stored.get(field_.name) not in (None, "")


class PluginConfigForm(forms.ModelForm):
    class Meta:
        model = PluginConfig
        fields = ["active"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        host = get_plugin_host()
        self.plugin = host.plugins.get(self.instance.identifier)
        if self.plugin is None:
            return
        stored = self.instance.settings or {}
        resolved = host.config(self.instance.identifier, stored=stored)
        for field_ in self.plugin.config_fields:
            source = resolved.sources[field_.name]
            has_value = _has_value(stored, field_)
            try:
                saved = open_stored(self.plugin.name, field_.name, stored.get(field_.name))
                readable = True
            except DecryptionError:
                saved, readable = None, False
            form_field = _form_field(
                field_, source, field_.env_name(self.plugin.name), has_value=has_value,
                readable=readable,
            )
            if not field_.is_secret:
                # What is in effect when it comes from the environment, else what is saved.
                form_field.initial = resolved.values[field_.name] if source == "env" else saved
            self.fields[SETTING_PREFIX + field_.name] = form_field
            if field_.is_secret and has_value:
                self.fields[SETTING_PREFIX + field_.name + CLEAR_SUFFIX] = forms.BooleanField(
                    label=_("Remove the saved %(label)s") % {"label": field_.label},
                    required=False,
                )

    def clean(self):
        cleaned = super().clean()
        if self.plugin is None:
            raise forms.ValidationError(_("This plugin is not installed; it cannot be changed."))
        changes = {}
        for field_ in self.plugin.config_fields:
            key = SETTING_PREFIX + field_.name
            if cleaned.get(key + CLEAR_SUFFIX):
                if cleaned.get(key):
                    self.add_error(key + CLEAR_SUFFIX, _(
                        "Enter a new value or remove the saved one, not both."))
                changes[field_.name] = ""  # removed: the default (if any) applies again
                continue
            if self.fields[key].disabled:
                continue
            value = cleaned.get(key)
            # A blank secret keeps the saved one; any other blank field removes its value.
            changes[field_.name] = (value or None) if field_.is_secret else value
        self.setting_changes = changes
        _planned, errors = plan_plugin_config(
            identifier=self.plugin.name, stored=self.instance.settings, changes=changes,
            active=bool(cleaned.get("active")),
        )
        for name, message in errors.items():
            key = SETTING_PREFIX + name
            if key in self.fields and not self.fields[key].disabled:
                self.add_error(key, message)
            else:
                self.add_error("active", f"{name}: {message}")
        return cleaned


@admin.register(PluginConfig)
class PluginConfigAdmin(ModelAdmin):
    form = PluginConfigForm
    list_display = ["identifier", "label", "version", "active", "state", "hooks"]
    list_filter = ["active"]
    search_fields = ["identifier"]
    readonly_fields = ["identifier", "about"]

    def has_add_permission(self, request) -> bool:
        return False  # rows come from installed plugins

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(permissions.MANAGE_PLUGINS)

    def changelist_view(self, request, extra_context=None):
        # A refused plugin has no row until it has loaded once: say why it is missing here.
        for name, reason in sorted(get_plugin_host().refused.items()):
            messages.error(request, _("Plugin %(name)s was not loaded: %(reason)s")
                           % {"name": name, "reason": reason})
        return super().changelist_view(request, extra_context)

    def get_fields(self, request, obj=None):
        return ["identifier", "about", "active", *self._setting_fields(obj)]

    def _setting_fields(self, obj) -> list[str]:
        plugin = get_plugin_host().plugins.get(obj.identifier) if obj else None
        if plugin is None:
            return []
        names = []
        for field_ in plugin.config_fields:
            names.append(SETTING_PREFIX + field_.name)
            if field_.is_secret and _has_value(obj.settings or {}, field_):
                names.append(SETTING_PREFIX + field_.name + CLEAR_SUFFIX)
        return names

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["fields"] = ["active"]
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        try:
            update_plugin_config(
                identifier=obj.identifier, active=form.cleaned_data["active"],
                changes=form.setting_changes, user=request.user, actor=staff_actor(request),
            )
        except PluginConfigError as exc:
            # Re-validated under a row lock: a concurrent change may have made it invalid.
            messages.error(request, str(exc))

    @display(description=_("name"))
    def label(self, obj) -> str:
        plugin = get_plugin_host().plugins.get(obj.identifier)
        return plugin.label if plugin else "—"

    @display(description=_("version"))
    def version(self, obj) -> str:
        plugin = get_plugin_host().plugins.get(obj.identifier)
        return plugin.version if plugin else "—"

    @display(description=_("state"), label={
        "ready": "success", "missing settings": "warning", "not installed": "danger",
        "refused": "danger",
    })
    def state(self, obj) -> str:
        host = get_plugin_host()
        if obj.identifier in host.refused:
            return "refused"
        if obj.identifier not in host.plugins:
            return "not installed"
        resolved = host.config(obj.identifier, stored=obj.settings)
        return "ready" if resolved.is_complete else "missing settings"

    @display(description=_("hooks"))
    def hooks(self, obj) -> str:
        plugin = get_plugin_host().plugins.get(obj.identifier)
        return ", ".join(plugin.hooks) if plugin else ""

    @display(description=_("about"))
    def about(self, obj) -> str:
        host = get_plugin_host()
        if obj.identifier in host.refused:
            return host.refused[obj.identifier]
        plugin = host.plugins.get(obj.identifier)
        if plugin is None:
            return _("Not installed: its settings are kept for when it comes back.")
        return format_html(
            "{}<br><small>{} {} · hook specs {}</small>",
            plugin.description or plugin.label, plugin.distribution, plugin.version,
            plugin.hookspec_version,
        )


class DeliveryInline(admin.TabularInline):
    model = PluginEventDelivery
    extra = 0
    can_delete = False
    fields = ["plugin", "status", "attempts", "next_attempt_at", "delivered_at", "last_error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PluginEvent)
class PluginEventAdmin(ModelAdmin):
    list_display = ["id", "hook", "created_at"]
    list_filter = ["hook"]
    readonly_fields = ["hook", "payload", "created_at"]
    inlines = [DeliveryInline]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PluginEventDelivery)
class PluginEventDeliveryAdmin(GuardedActionsMixin, ModelAdmin):
    list_display = ["id", "event_hook", "plugin", "delivery_status", "attempts", "next_attempt_at",
                    "short_error"]
    list_filter = ["status", "plugin"]
    list_select_related = ["event"]
    readonly_fields = ["event", "plugin", "status", "attempts", "next_attempt_at", "started_at",
                       "delivered_at", "last_error"]
    actions = ["retry"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @display(description=_("event"))
    def event_hook(self, obj) -> str:
        return obj.event.hook

    @display(description=_("status"), label={
        DeliveryStatus.DELIVERED: "success", DeliveryStatus.PENDING: "info",
        DeliveryStatus.RUNNING: "info", DeliveryStatus.FAILED: "danger",
    })
    def delivery_status(self, obj) -> str:
        return obj.status

    @display(description=_("last error"))
    def short_error(self, obj) -> str:
        lines = obj.last_error.strip().splitlines()
        return lines[-1][:120] if lines else ""

    has_manage_permission = permission_check(permissions.MANAGE_PLUGINS)

    @action(description=_("Retry the selected failed deliveries"), permissions=["manage"])
    def retry(self, request, queryset) -> None:
        count = retry_failed(list(queryset.values_list("pk", flat=True)))
        messages.success(request, ngettext("%(count)d delivery will be tried again.",
                                           "%(count)d deliveries will be tried again.", count)
                         % {"count": count})
