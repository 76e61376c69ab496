"""The request examples of the OpenAPI schema (Swagger UI's "Example Value", ReDoc's samples).

Each one is accepted as written: ``tests/test_words_and_numbers.py`` posts every request-body
example of the generated schema against a store holding what they name (the customer
``ada@example.com``, the SKU ``TEE-M`` in the warehouse ``main``, the ``flat_rate`` shipping
and ``manual`` payment methods). Change an example and that test tells whether it still works.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

EMAIL = "ada@example.com"
PASSWORD = "correct-horse-battery-9"  # noqa: S105 - an example in the documentation
NEW_PASSWORD = "a-new-long-passphrase-42"  # noqa: S105 - an example in the documentation
PHONE = "+254700000001"
SKU = "TEE-M"
WAREHOUSE = "main"

ADDRESS = {
    "first_name": "Ada", "last_name": "Lovelace", "company": "", "line1": "Moi Avenue 1",
    "line2": "", "city": "Nairobi", "region": "Nairobi", "postal_code": "00100",
    "country": "KE", "phone": PHONE,
}

REGISTER = {
    "email": "grace@example.com", "password": "a-long-passphrase-of-hers-7",
    "first_name": "Grace", "last_name": "Hopper", "phone": "+254700000002",
    "accepts_marketing": False,
}
LOGIN = {"email": EMAIL, "password": PASSWORD}
# A refresh token is what login answered; this one only has the shape.
REFRESH = {"refresh_token": "kq3x1QvYl2WmO0b7nH9r5cT8uJ4eA6sD1fG3hK5lZ7xC9vB2nM4qW6eR8tY0uI2o"}
PASSWORD_CHANGE = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
PASSWORD_RESET = {"email": EMAIL}
CLOSE_ACCOUNT = {"password": PASSWORD}
# ``uid`` and ``token`` come from the link in the email; these only have the shape.
PASSWORD_RESET_CONFIRM = {"uid": "MQ", "token": "cm5x2k-6a0f3b2c9d8e7f6a5b4c3d2e1f0a9b8c",
                          "new_password": NEW_PASSWORD}
EMAIL_VERIFICATION = {"uid": "MQ", "token": "cm5x2k-6a0f3b2c9d8e7f6a5b4c3d2e1f0a9b8c"}
PROFILE = {"first_name": "Ada", "last_name": "Lovelace", "phone": PHONE,
           "accepts_marketing": True, "preferences": {"theme": "dark"},
           "notification_channels": ["email", "sms"], "language": "en"}
ADDRESS_IN = {**ADDRESS, "is_default_shipping": True, "is_default_billing": True}
ADDRESS_PATCH = {"line2": "Floor 3", "is_default_shipping": True}

REVIEW = {"rating": 5, "comment": "Soft, and true to size."}
REVIEW_PATCH = {"rating": 4, "comment": "Soft; a little shorter after the first wash."}

STOCK_LEVELS = {"levels": [{"sku": SKU, "warehouse": WAREHOUSE, "quantity": 40}],
                "reference": "count-2026-11"}
PRODUCTS = {
    "products": [{
        "handle": "linen-shirt", "name": "Linen shirt",
        "description": "A loose shirt in washed linen.", "brand": "Savanna",
        "category": "Clothing > Shirts", "tags": ["linen", "summer"], "published": True,
        "images": [{"url": "https://cdn.example.com/linen-shirt.jpg", "alt": "The shirt"}],
        "variants": [{
            "sku": "LINEN-M", "name": "M", "options": {"Size": "M"}, "price": "1499.00",
            "compare_at_price": "1799.00", "stock": {WAREHOUSE: 25},
        }],
    }],
    "reference": "erp-sync-42",
}
PRICES = {"prices": [{"sku": SKU, "price": "69.00", "compare_at_price": "75.00"}],
          "reference": "price-list-2026-12"}
CATEGORY = {"path": "Clothing > Shirts"}
CATEGORY_CHANGE = {"path": "Clothing > Shirts", "name": "Shirts and tops", "position": 1}
ORDER_STATUS = {"status": "shipped", "note": "Left the warehouse with the courier."}
SHIPMENT = {"carrier": "DHL", "tracking_number": "JD014600006281230704",
            "tracking_url": "https://www.dhl.com/track?id=JD014600006281230704",
            "lines": [{"sku": SKU, "quantity": 1}]}

CART_LINE = {"sku": SKU, "quantity": 2}
LINE_QUANTITY = {"quantity": 3}
CHECKOUT = {"shipping_method": "flat_rate", "shipping_address": ADDRESS, "email": EMAIL,
            "phone": PHONE, "payment_method": "manual", "note": "Please call on arrival."}
START_PAYMENT = {"provider": "manual"}


def example(value: dict[str, Any]) -> ConfigDict:
    """A request body's ``model_config``: ``value`` as the schema's example."""
    return ConfigDict(json_schema_extra={"examples": [value]})
