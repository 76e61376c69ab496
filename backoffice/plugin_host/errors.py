"""Typed errors of the plugin platform. Callers catch these; nothing fails silently."""


class PluginError(Exception):
    """Base class of every error the plugin platform raises."""


class PluginLoadError(PluginError):
    """A plugin could not be loaded (import error, incompatible hook-spec version, bad hook)."""


class PluginConfigError(PluginError):
    """A plugin's settings are invalid or incomplete; ``errors`` maps field name to message."""

    def __init__(self, plugin: str, errors: dict[str, str]) -> None:
        self.plugin = plugin
        self.errors = errors
        details = "; ".join(f"{name}: {message}" for name, message in errors.items())
        super().__init__(f"Plugin {plugin!r} is not configured correctly: {details}")


class UnknownProvider(PluginError):
    """No active plugin provides a payment provider / channel / shipping method with that code."""


class ShippingUnavailable(PluginError):
    """Raised by a plugin: this method cannot ship this request (e.g. destination not served)."""


class NoShippingRate(PluginError):
    """No plugin answered the ``shipping_rate`` decision for a method: there is no fallback."""


class ShippingRateError(PluginError):
    """A plugin failed while deciding a shipping rate (its exception is the ``__cause__``)."""


class WebhookVerificationError(PluginError):
    """Raised by a payment provider: the webhook is not genuine; it must change nothing."""
