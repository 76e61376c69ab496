"""Email: every message by Django's email backend (SMTP in production, the console in
development), as plain text with an HTML alternative, from the store with its reply-to.

The SMTP server is Django's settings (``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_HOST_USER``,
``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS``/``EMAIL_USE_SSL``, ``EMAIL_TIMEOUT``), from the
environment. A refused recipient is a permanent failure; anything else the server or the network
says is temporary (the message is retried).
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from email.utils import formataddr, make_msgid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField
from backoffice.plugin_host.protocols import DeliveryResult, Notification

hookspec_version = ">=1.1,<2"
label = "Email"

config_fields = [
    ConfigField("from_email", "From address",
                help_text="Blank: DEFAULT_FROM_EMAIL. Shown with the store's name."),
    ConfigField("reply_to", "Reply-to address",
                help_text="Where customers' answers go. Blank: STORE_REPLY_TO, or none."),
]


class EmailChannel:
    code = "email"
    name = "Email"
    recipient_kind = "email"

    def send(self, notification: Notification, config: Mapping[str, Any]) -> DeliveryResult:
        sender = config.get("from_email") or settings.DEFAULT_FROM_EMAIL
        reply_to = config.get("reply_to") or settings.STORE_REPLY_TO
        domain = sender.rpartition("@")[2] or "localhost"
        message_id = make_msgid(idstring=f"n{notification.notification_id or 0}", domain=domain)
        mail = EmailMultiAlternatives(
            subject=notification.subject,
            body=notification.body,
            from_email=formataddr((settings.STORE_NAME, sender)),
            to=[notification.recipient],
            reply_to=[reply_to] if reply_to else None,
            headers={"Message-ID": message_id, "Auto-Submitted": "auto-generated"},
            connection=get_connection(fail_silently=False),
        )
        if notification.html:
            mail.attach_alternative(notification.html, "text/html")
        try:
            mail.send()
        except smtplib.SMTPRecipientsRefused as exc:
            code, reason = next(iter(exc.recipients.values()), (0, b""))
            text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
            if 500 <= int(code) < 600:
                return DeliveryResult(status="failed", provider_message_id=message_id,
                                      error=f"The mail server refused the address ({code} "
                                            f"{text}).")
            raise
        return DeliveryResult(status="sent", provider_message_id=message_id)


@hookimpl
def register_notification_channels():
    return [EmailChannel()]
