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


class PaymentProviderError(PluginError):
    """Raised by a payment provider that refuses a request (invalid phone number, amount it
    cannot take, refund larger than the charge...). ``message`` is for the customer or clerk,
    ``code`` for programs. Temporary failures (timeouts, 5xx) are other exceptions."""

    def __init__(self, message: str, code: str = "provider_refused") -> None:
        super().__init__(message)
        self.code = code
