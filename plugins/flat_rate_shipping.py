"""Flat-rate shipping, free over a threshold.

One shipping method (``flat_rate``): a fixed price per order, nothing above a subtotal the
merchant chooses. Settings: the rate, the free-shipping threshold (optional), the label shown at
checkout, and the countries served (empty: everywhere).
"""

from __future__ import annotations

from decimal import Decimal

from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField, coerce
from backoffice.plugin_host.errors import ShippingUnavailable
from backoffice.plugin_host.loading import get_plugin_host
from backoffice.plugin_host.protocols import ShippingMethod, ShippingRequest

hookspec_version = ">=1.0,<2"
label = "Flat-rate shipping"
METHOD_CODE = "flat_rate"
PLUGIN_NAME = "flat_rate_shipping"

config_fields = [
    ConfigField("label", "Name at checkout", default="Standard delivery"),
    ConfigField("rate", "Rate per order", kind="decimal", required=True, default="5.00",
                help_text="In the store currency."),
    ConfigField("free_over", "Free over this subtotal", kind="decimal",
                help_text="Leave empty for no free shipping."),
    ConfigField("countries", "Countries served",
                help_text="ISO codes, comma-separated (e.g. KE,UG,TZ); empty: everywhere."),
]


def _settings() -> dict:
    return get_plugin_host().config(PLUGIN_NAME).values


@hookimpl
def register_shipping_methods() -> list[ShippingMethod]:
    return [ShippingMethod(code=METHOD_CODE, name=_settings()["label"] or "Flat rate")]


@hookimpl
def shipping_rate(method_code: str, request: ShippingRequest) -> Decimal | None:
    if method_code != METHOD_CODE:
        return None
    settings = _settings()
    countries = {c.strip().upper() for c in (settings["countries"] or "").split(",") if c.strip()}
    if countries and request.country.upper() not in countries:
        raise ShippingUnavailable(f"{settings['label']} does not deliver to {request.country}.")
    free_over = settings["free_over"]
    if free_over is not None and request.subtotal >= free_over:
        return Decimal("0")
    return coerce(config_fields[1], settings["rate"])
