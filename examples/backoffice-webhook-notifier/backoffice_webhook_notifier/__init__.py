"""Posts store events as signed JSON to a URL: an example third-party back office plugin."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import requests

from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField
from backoffice.plugin_host.loading import get_plugin_host

__version__ = "1.1.0"
# 1.2: every event has an event_id (sent as X-Backoffice-Event-Id, for the receiver to
# drop a retried delivery it already has) and order events the customer.
hookspec_version = ">=1.2,<2"
label = "Webhook notifier"
PLUGIN_NAME = "webhook_notifier"
TIMEOUT_SECONDS = 10

config_fields = [
    ConfigField("url", "Receiver URL", kind="url", required=True,
                help_text="Every event is POSTed here as JSON."),
    ConfigField("secret", "Signing secret", kind="secret", required=True,
                help_text="Signs each body (X-Backoffice-Signature: sha256=...)."),
]


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(event: str, data: dict[str, Any], event_id: int) -> None:
    settings = get_plugin_host().config(PLUGIN_NAME).values
    body = json.dumps({"event": event, "data": data}, sort_keys=True).encode()
    response = requests.post(
        settings["url"],
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Backoffice-Event": event,
            "X-Backoffice-Event-Id": str(event_id),
            "X-Backoffice-Signature": sign(settings["secret"], body),
        },
        timeout=TIMEOUT_SECONDS,
    )
    # An error answer raises, so the back office retries the delivery with backoff.
    response.raise_for_status()


@hookimpl
def order_placed(order_id: int, order_number: str, total: str, currency: str, customer: dict,
                 event_id: int) -> None:
    _post("order_placed", {"order_id": order_id, "order_number": order_number,
                           "total": total, "currency": currency, "customer": customer}, event_id)


@hookimpl
def order_status_changed(order_id: int, order_number: str, state: str, old_status: str,
                         new_status: str, reason: str, event_id: int) -> None:
    _post("order_status_changed", {"order_id": order_id, "order_number": order_number,
                                   "state": state, "old_status": old_status,
                                   "new_status": new_status, "reason": reason}, event_id)


@hookimpl
def payment_status_changed(payment_id: int, order_id: int, provider: str, new_status: str,
                           event_id: int) -> None:
    # Takes a subset of the hook's arguments: that is allowed, and survives new arguments.
    _post("payment_status_changed", {"payment_id": payment_id, "order_id": order_id,
                                     "provider": provider, "status": new_status}, event_id)


@hookimpl
def shipment_created(shipment_id: int, order_id: int, carrier: str, tracking_number: str,
                     tracking_url: str, event_id: int) -> None:
    _post("shipment_created", {"shipment_id": shipment_id, "order_id": order_id,
                               "carrier": carrier, "tracking_number": tracking_number,
                               "tracking_url": tracking_url}, event_id)


@hookimpl
def order_refunded(refund_id: int, order_id: int, amount: str, currency: str, reason: str,
                   event_id: int) -> None:
    _post("order_refunded", {"refund_id": refund_id, "order_id": order_id, "amount": amount,
                             "currency": currency, "reason": reason}, event_id)


@hookimpl
def stock_low(sku: str, warehouse_id: int, available: int, threshold: int,
              event_id: int) -> None:
    _post("stock_low", {"sku": sku, "warehouse_id": warehouse_id, "available": available,
                        "threshold": threshold}, event_id)
