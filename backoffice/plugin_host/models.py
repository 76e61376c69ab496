"""Plugin settings, and the outbox that carries events to plugins."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class PluginConfig(models.Model):
    """A merchant's choices for one plugin: on or off, and its settings."""

    identifier = models.CharField(_("plugin"), max_length=100, unique=True)
    active = models.BooleanField(_("active"), default=False)
    settings = models.JSONField(_("settings"), default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("plugin")
        verbose_name_plural = _("plugins")
        ordering = ["identifier"]
        permissions = [("manage_plugins", _("Can manage plugins and their secrets"))]

    def __str__(self) -> str:
        return self.identifier


class PluginEvent(models.Model):
    """Something that happened, written in the same transaction as the change that caused it."""

    hook = models.CharField(_("event"), max_length=100, db_index=True)
    payload = models.JSONField(_("arguments"), default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("plugin event")
        verbose_name_plural = _("plugin events")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.hook} #{self.pk}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class PluginEventDelivery(models.Model):
    """One event on its way to one plugin: tried, retried with backoff, its last error kept."""

    event = models.ForeignKey(PluginEvent, on_delete=models.CASCADE, related_name="deliveries")
    plugin = models.CharField(_("plugin"), max_length=100, db_index=True)
    status = models.CharField(
        _("status"), max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), db_index=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("plugin event delivery")
        verbose_name_plural = _("plugin event deliveries")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "plugin"], name="one_delivery_per_plugin"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.plugin}"
