"""Bearer authentication with the storefront's access tokens, and per-route throttles."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.security import APIKeyHeader, HttpBearer
from ninja.throttling import SimpleRateThrottle

from backoffice.customers.services import session_for_access_token


class CustomerAuth(HttpBearer):
    """``Authorization: Bearer <access token>``; the user is ``request.auth``, and the session
    the token belongs to (its ``fam`` claim, a ``TokenFamily`` id) ``request.api_session_id``."""

    def authenticate(self, request: HttpRequest, token: str):
        found = session_for_access_token(token)
        if found is None:
            return None
        request.user, request.api_session_id = found
        return request.user


customer_auth = CustomerAuth()


class ClientAddressThrottle(SimpleRateThrottle):
    """Counts requests per client address in one named bucket (``AUTH_THROTTLE_RATES``)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__(settings.AUTH_THROTTLE_RATES[scope])

    def allow_request(self, request: HttpRequest) -> bool:
        # Read the rate per request: it is a setting, and settings can change (tests, reloads).
        self.rate = settings.AUTH_THROTTLE_RATES[self.scope]
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)

    def get_cache_key(self, request: HttpRequest) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class IntegrationKeyAuth(APIKeyHeader):
    """``X-API-Key: bo_...``: a key created in the admin; the key is ``request.auth``."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None):
        from backoffice.integrations.services import key_for

        return key_for(key) if key else None


integration_auth = IntegrationKeyAuth()


def require_scope(request: HttpRequest, scope: str) -> None:
    """Refuse (403) a key that was not given ``scope``."""
    from shop_api.errors import ApiError

    if scope not in request.auth.scopes:
        raise ApiError(403, "insufficient_scope", f"This API key lacks the {scope!r} scope.")


class Guest:
    """A guest shopper, known by their cart."""

    is_authenticated = False

    def __init__(self, cart) -> None:
        self.cart = cart


class CartTokenAuth(APIKeyHeader):
    """``X-Cart-Token: <token>``: a guest's cart. Only without an Authorization header: a
    wrong or expired bearer token is a 401, never a silent fall-back to a guest cart."""

    param_name = "X-Cart-Token"

    def __init__(self, *, ordered_too: bool = False) -> None:
        super().__init__()
        self.ordered_too = ordered_too

    def authenticate(self, request: HttpRequest, key: str | None):
        from backoffice.checkout.cart import guest_cart

        if not key or "Authorization" in request.headers:
            return None
        cart = guest_cart(key, ordered_too=self.ordered_too)
        return Guest(cart) if cart is not None else None


cart_token_auth = CartTokenAuth()
customer_or_guest = [customer_auth, cart_token_auth]
# Checkout also knows a cart it has ordered: a retry with the same Idempotency-Key gets its order.
customer_or_checkout_guest = [customer_auth, CartTokenAuth(ordered_too=True)]


def optional_customer(request: HttpRequest):
    """The customer of a bearer token if one is sent (401 if it is wrong), else None."""
    from ninja.errors import AuthenticationError

    if "Authorization" not in request.headers:
        return None
    user = customer_auth(request)
    if user is None:
        raise AuthenticationError()
    return user
