"""The plugin contract: every hook a plugin can implement.

A plugin is a module or object found through the ``backoffice.plugins`` entry-point group. It
declares which version of this contract it supports and implements any of the hooks below with
``@hookimpl``, taking any subset of a hook's arguments, by name::

    from backoffice.hookspecs import hookimpl

    hookspec_version = ">=1.0,<2"

    @hookimpl
    def order_placed(order_id):
        ...

Three kinds of hooks:

- **Registries** (``register_*``) hand the platform objects; every active plugin's are collected.
- **Events** tell plugins what happened. They are delivered after the transaction commits, by a
  job, to one plugin at a time, retried with backoff when a plugin raises; arguments are plain
  JSON values (ids, not objects), so an event can wait in the outbox. Every event has
  ``event_id``: the same on every retry of it, so a plugin that sends something (a message, a
  record in another system) can send it once. Order events carry ``customer``: ``{"email",
  "phone" (E.164 or ""), "name", "language" ("" for the store's)}``, so a notifier needs none
  of our models.
- **Decisions** (``firstresult``) ask for an answer: the first plugin that returns something other
  than ``None`` decides; if none does, the caller gets a typed error, never a silent default.

``docs/plugins.md`` documents every hook with an example; a test fails when a hook is missing
there or has no test.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pluggy

from backoffice.plugin_host.protocols import (
    DashboardWidget,
    NotificationChannel,
    PaymentProvider,
    ScheduledJob,
    ShippingMethod,
    ShippingRequest,
)

PROJECT_NAME = "backoffice"
# Bumped in the minor part for added hooks or arguments (plugins keep working), in the major part
# for anything that breaks an existing plugin.
HOOKSPEC_VERSION = "1.2"
# 1.1: order_status_changed says which state moved, and all three.
# 1.2: every event carries ``event_id``; order events carry ``customer`` (email, phone, name,
#      language); ``order_refunded``; ``reason`` of a move; ``tracking_url`` of a shipment.

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- Registries ---------------------------------------------------------------------------------


@hookspec
def register_payment_providers() -> list[PaymentProvider]:
    """Payment providers this plugin offers (Stripe, M-Pesa, cash on delivery...)."""


@hookspec
def register_notification_channels() -> list[NotificationChannel]:
    """Notification channels this plugin offers (email, SMS...)."""


@hookspec
def register_shipping_methods() -> list[ShippingMethod]:
    """Shipping methods this plugin offers; their rates come from ``shipping_rate``."""


@hookspec
def register_api_routers() -> list[tuple[str, Any]]:
    """Extra storefront API routes: ``(prefix, ninja.Router)`` pairs, mounted under
    ``/api/v1/plugins/<plugin name>/<prefix>``."""


@hookspec
def register_schedules() -> list[ScheduledJob]:
    """Jobs to run on a schedule (e.g. a nightly sync with an ERP)."""


@hookspec
def register_dashboard_widgets() -> list[DashboardWidget]:
    """Numbers to show on the admin dashboard."""


# --- Events (after commit, in a job, one plugin at a time) ---------------------------------------


@hookspec
def customer_registered(customer_id: int, email: str, event_id: int) -> None:
    """A customer created an account."""


@hookspec
def order_placed(order_id: int, order_number: str, total: str, currency: str, customer: dict,
                 event_id: int) -> None:
    """An order was placed (``total`` is a decimal string)."""


@hookspec
def order_status_changed(
    order_id: int, order_number: str, old_status: str, new_status: str, state: str,
    status: str, payment_status: str, fulfilment_status: str, reason: str, customer: dict,
    event_id: int,
) -> None:
    """One of an order's states moved (one event per move): ``state`` says which, ``old_status``
    and ``new_status`` are that state's values before and after.

    - ``state="payment"``: unpaid, paid, partially_refunded, refunded, overpaid;
    - ``state="fulfilment"``: unfulfilled, partially_shipped, shipped, partially_delivered,
      delivered;
    - ``state="order"``: the overall status, derived from the two and cancellation: open,
      cancelled, completed.

    ``status``, ``payment_status`` and ``fulfilment_status`` are the order's three states after
    the move; ``reason`` is what staff or the system said of it (a cancellation's reason), or
    "". (Plugins written for 1.0 take only the first four arguments and keep working:
    "paid", "shipped", "delivered", "cancelled" and "refunded" still arrive as ``new_status``.)
    """


@hookspec
def payment_status_changed(
    payment_id: int, order_id: int, provider: str, old_status: str, new_status: str,
    event_id: int,
) -> None:
    """A payment moved from one status to another."""


@hookspec
def shipment_created(shipment_id: int, order_id: int, carrier: str, tracking_number: str,
                     tracking_url: str, order_number: str, customer: dict,
                     event_id: int) -> None:
    """A shipment was created for an order."""


@hookspec
def order_refunded(refund_id: int, order_id: int, order_number: str, amount: str, currency: str,
                   reason: str, customer: dict, event_id: int) -> None:
    """Money went back to the customer (``amount``, a decimal string): a refund that succeeded,
    now or when the provider settled it."""


@hookspec
def stock_low(variant_id: int, sku: str, warehouse_id: int, available: int, threshold: int,
              event_id: int) -> None:
    """Available stock of a variant in a warehouse fell to its low-stock threshold or below."""


@hookspec
def import_finished(job_id: int, kind: str, summary: dict, event_id: int) -> None:
    """An admin import job finished writing, or failed (``summary["ok"]``; its ``counts`` say
    what was created, updated and left unchanged)."""


# --- Decisions (firstresult) ---------------------------------------------------------------------


@hookspec(firstresult=True)
def shipping_rate(method_code: str, request: ShippingRequest) -> Decimal | None:
    """The price of shipping ``request`` with the method ``method_code``.

    Return ``None`` when the method is not yours; raise ``ShippingUnavailable`` when it is yours
    but cannot ship this request.
    """


HOOK_NAMES = frozenset(
    name for name, value in dict(globals()).items()
    if callable(value) and hasattr(value, f"{PROJECT_NAME}_spec")
)
