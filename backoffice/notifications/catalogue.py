"""Every message the back office sends: what it tells, to whom, and sample data for previews.

Customer messages go to the customer on the channels they chose (``CustomerProfile.
notification_channels``; guests get the store's defaults) where the merchant's switch for that
(event, channel) is on. Staff alerts go to the recipients set for them in the admin
(``StaffAlert``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext_lazy as _

CUSTOMER, STAFF = "customer", "staff"


@dataclass(frozen=True)
class MessageEvent:
    code: str
    label: Any
    audience: str
    # Holds a one-time link: never shown to staff, the rendered text dropped once sent.
    sensitive: bool = False
    # Account mails reach the address being verified or reset, whatever the customer chose.
    email_only: bool = False
    # To someone whose personal data is being erased (a closed account): once sent, or failed
    # for good, the row's recipient, rendered text and context are erased too.
    erase_after_send: bool = False
    sample: dict[str, Any] = field(default_factory=dict)


_ORDER = {
    "order_number": "1042",
    "customer_name": "Wanjiru Kamau",
    "email": "wanjiru@example.com",
    "phone": "+254712345678",
    "currency": "KES",
    "subtotal": "KES 3,400.00",
    "discount_total": "",
    "shipping_total": "KES 250.00",
    "total": "KES 3,650.00",
    "lines": [
        {"name": "Kikoy beach towel", "variant": "Blue", "sku": "KIK-BLU", "quantity": 2,
         "unit_price": "KES 1,200.00", "total": "KES 2,400.00"},
        {"name": "Sisal basket", "variant": "", "sku": "SIS-01", "quantity": 1,
         "unit_price": "KES 1,000.00", "total": "KES 1,000.00"},
    ],
    "shipping_address": {"name": "Wanjiru Kamau", "lines": ["Ngong Road 12", "Nairobi"],
                         "country": "KE"},
    "shipping_method": "Nairobi delivery",
    "payment_method": "M-Pesa",
    "payment_instructions": "Approve the M-Pesa prompt on your phone to pay KES 3,650.00.",
    "pay_on_delivery": False,
    "paid": False,
    "shipped": False,
    "order_url": "",
}

EVENTS: dict[str, MessageEvent] = {e.code: e for e in [
    MessageEvent("order_placed", _("Order confirmation"), CUSTOMER, sample=_ORDER),
    MessageEvent("payment_succeeded", _("Payment received"), CUSTOMER,
                 sample={**_ORDER, "amount": "KES 3,650.00"}),
    MessageEvent("payment_failed", _("Payment failed"), CUSTOMER,
                 sample={**_ORDER, "error": "The M-Pesa prompt was cancelled."}),
    MessageEvent("order_shipped", _("Order shipped"), CUSTOMER, sample={
        **_ORDER, "carrier": "G4S", "tracking_number": "G4S123456",
        "tracking_url": "https://track.example.com/G4S123456",
        "shipped_lines": [{"name": "Kikoy beach towel", "quantity": 2}],
    }),
    MessageEvent("order_delivered", _("Order delivered"), CUSTOMER, sample=_ORDER),
    MessageEvent("order_cancelled", _("Order cancelled"), CUSTOMER,
                 sample={**_ORDER, "reason": "Out of stock at our supplier."}),
    MessageEvent("order_refunded", _("Refund"), CUSTOMER, sample={
        **_ORDER, "amount": "KES 1,200.00", "reason": "One towel arrived damaged.",
        "refunded_total": "KES 1,200.00",
    }),
    MessageEvent("email_verification", _("Confirm your email (and welcome)"), CUSTOMER,
                 sensitive=True, email_only=True,
                 sample={"customer_name": "Wanjiru", "link": "https://shop.example.com/verify"}),
    MessageEvent("password_reset", _("Password reset"), CUSTOMER, sensitive=True,
                 email_only=True,
                 sample={"customer_name": "Wanjiru", "link": "https://shop.example.com/reset"}),
    MessageEvent("account_closed", _("Account closed"), CUSTOMER, email_only=True,
                 erase_after_send=True, sample={"customer_name": "Wanjiru"}),
    MessageEvent("staff_new_order", _("New order"), STAFF, sample=_ORDER),
    MessageEvent("staff_low_stock", _("Low stock"), STAFF, sample={
        "sku": "KIK-BLU", "product_name": "Kikoy beach towel", "warehouse": "Nairobi",
        "available": 3, "threshold": 5,
    }),
    MessageEvent("staff_low_stock_digest", _("Low stock, daily digest"), STAFF, sample={
        "rows": [{"sku": "KIK-BLU", "product_name": "Kikoy beach towel",
                  "warehouse": "NBO", "available": 3, "threshold": 5}],
        "count": 1,
    }),
    MessageEvent("staff_payment_problem", _("Payment problem"), STAFF, sample={
        **_ORDER, "problem": "Paid twice: KES 3,650.00 more than the order's total.",
    }),
    MessageEvent("staff_import_failed", _("Import failed"), STAFF, sample={
        "job_id": 7, "kind": "shopify-products", "file_name": "products_export.csv",
        "error": "Row 12: Variant SKU is missing.",
    }),
    MessageEvent("staff_plugin_failed", _("Plugin delivery failed for good"), STAFF, sample={
        "plugin": "erp_sync", "hook": "order_placed", "attempts": 5,
        "error": "ConnectionError: erp.example.com refused the connection",
    }),
]}

CUSTOMER_EVENTS = [code for code, e in EVENTS.items() if e.audience == CUSTOMER]
STAFF_EVENTS = [code for code, e in EVENTS.items() if e.audience == STAFF]


def event(code: str) -> MessageEvent:
    try:
        return EVENTS[code]
    except KeyError:
        raise ValueError(f"{code!r} is not a notification event") from None


def choices(audience: str | None = None) -> list[tuple[str, Any]]:
    return [(e.code, e.label) for e in EVENTS.values() if audience in (None, e.audience)]
