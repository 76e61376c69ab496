"""Notifications: the outbox of messages to customers and staff, their templates and switches.

A ``Notification`` row is one message to one recipient on one channel. It is written in the
transaction of the change it tells of, and sent by a job after commit (``services.send``). The
unique key (``event_key``, ``recipient``, ``channel``) makes a replayed event or a retried job
write nothing new: one message per step per recipient per channel, at most.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class Audience(models.TextChoices):
    CUSTOMER = "customer", _("Customer")
    STAFF = "staff", _("Staff")


class Notification(models.Model):
    event = models.CharField(_("event"), max_length=50, db_index=True)
    # The message and the one domain event it tells of ("order_placed:order:12:placed",
    # "order_refunded:refund:7:refunded"): with the recipient and channel, unique.
    event_key = models.CharField(_("event key"), max_length=120)
    audience = models.CharField(_("audience"), max_length=10, choices=Audience.choices)
    channel = models.CharField(_("channel"), max_length=50)
    recipient = models.CharField(_("recipient"), max_length=254, db_index=True)
    language = models.CharField(_("language"), max_length=10, blank=True)
    order = models.ForeignKey(
        "orders.Order", on_delete=models.CASCADE, null=True, blank=True,
        related_name="notifications", verbose_name=_("order"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+", verbose_name=_("user"),
    )
    # What the message is rendered from (plain JSON), taken when the event happened.
    context = models.JSONField(_("context"), default=dict, blank=True)
    # Holds a one-time link (password reset, email verification): the rendered text is
    # replaced once sent, and staff see no body.
    sensitive = models.BooleanField(_("holds a secret link"), default=False)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    body = models.TextField(_("text"), blank=True)
    html = models.TextField(_("HTML"), blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    provider_message_id = models.CharField(_("provider's message id"), max_length=255,
                                           blank=True)
    cost = models.CharField(_("cost"), max_length=40, blank=True)
    error = models.TextField(_("error"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    resends = models.PositiveSmallIntegerField(_("resent"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-created_at", "-id"]
        permissions = [("resend_notification", _("Can resend notifications"))]
        constraints = [
            models.UniqueConstraint(
                fields=["event_key", "recipient", "channel"], name="one_message_per_event",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notification_due"),
            models.Index(fields=["channel", "provider_message_id"],
                         name="notification_provider_id"),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.recipient} by {self.channel}"


class NotificationRule(models.Model):
    """Whether an event sends on a channel (the merchant's switch). One row per (event,
    channel) the store knows, made after every migrate and when a channel appears."""

    event = models.CharField(_("event"), max_length=50)
    channel = models.CharField(_("channel"), max_length=50)
    enabled = models.BooleanField(_("send"), default=True)

    class Meta:
        # The admin's "Message templates" page lists these: each message and channel, its
        # switch, and a link to its wording.
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        ordering = ["event", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["event", "channel"], name="one_rule_per_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.channel}"


class MessageTemplate(models.Model):
    """The merchant's wording of one (event, channel, language). Blank parts use the default
    that ships with the back office (``templates/notifications/<language>/<event>/``)."""

    event = models.CharField(_("event"), max_length=50)
    channel = models.CharField(_("channel"), max_length=50)
    language = models.CharField(_("language"), max_length=10, default="en")
    subject = models.CharField(_("subject"), max_length=255, blank=True,
                               help_text=_("Email only."))
    text = models.TextField(_("text"), blank=True,
                            help_text=_("The plain-text email, or the SMS."))
    html = models.TextField(_("HTML"), blank=True, help_text=_("Email only."))
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("message wording")
        verbose_name_plural = _("message wordings")
        ordering = ["event", "channel", "language"]
        constraints = [
            models.UniqueConstraint(fields=["event", "channel", "language"],
                                    name="one_template_per_language"),
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.channel} ({self.language})"


class StaffAlert(models.Model):
    """Who on the staff hears of one kind of alert: staff users (by email), and extra email
    addresses and phone numbers (by SMS)."""

    event = models.CharField(_("alert"), max_length=50, unique=True)
    enabled = models.BooleanField(_("send"), default=True)
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", verbose_name=_("staff users"),
        limit_choices_to={"is_staff": True, "is_active": True},
    )
    emails = models.TextField(_("other email addresses"), blank=True,
                              help_text=_("One per line."))
    phones = models.TextField(_("phone numbers (SMS)"), blank=True,
                              help_text=_("One per line, e.g. +254712345678 or 0712 345 678."))

    class Meta:
        verbose_name = _("staff alert")
        verbose_name_plural = _("staff alerts")
        ordering = ["event"]

    def __str__(self) -> str:
        return self.event
