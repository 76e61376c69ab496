"""Customers' sign-in with an OpenID Provider (Google, Apple, a store's Keycloak...).

1. ``GET /auth/providers``: the providers a storefront may offer.
2. ``POST /auth/providers/{slug}/authorize`` with the storefront's registered ``redirect_uri``:
   the provider's URL to send the shopper to. State, nonce and the PKCE verifier stay on the
   server (10 minutes, one use). With a bearer token, the sign-in links the provider to that
   account instead.
3. The provider sends the shopper to ``redirect_uri?code=...&state=...``; the storefront posts
   both to ``POST /auth/providers/{slug}/callback`` and gets the same token pair as
   ``/auth/login``.

``GET /me/sign-ins`` lists the providers linked to the account; ``DELETE /me/sign-ins/{id}``
unlinks one (never the last way to sign in).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import StringConstraints

from backoffice.customers.services import start_session
from backoffice.identity import services
from backoffice.identity.client import SignInFailed
from backoffice.identity.models import ExternalIdentity
from shop_api.auth import ClientAddressThrottle, customer_auth, optional_customer
from shop_api.errors import ApiError, ErrorOut
from shop_api.routers.accounts import TokensOut, _merge_guest_cart, _user_agent
from shop_api.schemas import ERROR_RESPONSES, InputSchema

router = Router(tags=["accounts"])
ERRORS = {**ERROR_RESPONSES, 503: ErrorOut}

# SignInFailed codes that are not a 400.
_STATUS = {"provider_unreachable": 503, "provider_misconfigured": 503, "inactive": 403}


def _error(exc: SignInFailed) -> ApiError:
    status = 409 if isinstance(exc, services.AccountConflict) else _STATUS.get(exc.code, 400)
    return ApiError(status, exc.code, str(exc))


def _provider(slug: str):
    provider = services.customer_provider(slug)
    if provider is None:
        raise ApiError(404, "unknown_provider", f"No sign-in provider {slug!r} is offered.")
    return provider


class ProviderOut(Schema):
    slug: str = Field(description="Use it in the authorize and callback paths.")
    name: str = Field(description='For the "Sign in with <name>" button.')


class AuthorizeIn(InputSchema):
    model_config = {"json_schema_extra": {"examples": [
        {"redirect_uri": "https://shop.example.com/auth/callback"}]}}

    redirect_uri: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                   max_length=500)] = Field(
        description="The storefront page the provider sends the shopper back to; one of the "
                    "URIs registered for this provider in the back office.")


class AuthorizeOut(Schema):
    authorization_url: str = Field(description="Send the shopper's browser here.")
    state: str = Field(description="Comes back on the redirect; post it with the code.")
    expires_in: int = Field(description="Seconds the sign-in may take.")


class CallbackIn(InputSchema):
    model_config = {"json_schema_extra": {"examples": [
        {"code": "SplxlOBeZQQYbYS6WxSbIA", "state": "af0ifjsldkj"}]}}

    code: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    state: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SignInTokensOut(TokensOut):
    account_created: bool = Field(description="True when this sign-in made a new account.")


class SignInOut(Schema):
    id: int
    provider: str = Field(description="The provider's slug.")
    provider_name: str
    email: str = Field(description="The verified email at the provider, if it shared one.")
    linked_at: datetime
    last_used_at: datetime | None


@router.get("/auth/providers", response={200: list[ProviderOut], **ERRORS})
def list_providers(request: HttpRequest):
    """The sign-in providers the storefront may offer."""
    from backoffice.identity.models import IdentityProvider

    return list(IdentityProvider.objects.filter(is_active=True, for_customers=True)
                .order_by("name").values("slug", "name"))


@router.post("/auth/providers/{slug}/authorize", response={200: AuthorizeOut, **ERRORS},
             throttle=[ClientAddressThrottle("sign_in")])
def authorize(request: HttpRequest, slug: str, payload: AuthorizeIn):
    """Start a sign-in: the provider's authorization URL (code flow with PKCE and a nonce).
    Sent with a bearer token, the sign-in links the provider to that account."""
    provider = _provider(slug)
    user = optional_customer(request)
    try:
        made = services.begin_customer_sign_in(provider, payload.redirect_uri, link_user=user)
    except SignInFailed as exc:
        raise _error(exc) from exc
    return {"authorization_url": made.url, "state": made.state,
            "expires_in": int(services.SIGN_IN_TTL.total_seconds())}


@router.post("/auth/providers/{slug}/callback", response={200: SignInTokensOut, **ERRORS},
             throttle=[ClientAddressThrottle("sign_in")])
def callback(request: HttpRequest, slug: str, payload: CallbackIn):
    """Finish a sign-in with the ``code`` and ``state`` the provider sent back: the ID token is
    verified (signature, issuer, audience, expiry, nonce) and a token pair answered. A first
    sign-in makes an account, or joins an existing one only when the provider and the account
    both have the email confirmed (else 409 ``account_exists``). A link (started with a bearer
    token) finishes only with that same customer's bearer token. Keep ``state`` in the shopper's
    session and post only a callback whose ``state`` matches it: that binds the sign-in to the
    browser that started it."""
    provider = _provider(slug)
    caller = optional_customer(request)
    try:
        user, created = services.finish_customer_sign_in(provider, state=payload.state,
                                                         code=payload.code, caller=caller)
    except SignInFailed as exc:
        raise _error(exc) from exc
    _merge_guest_cart(request, user)
    tokens = start_session(user, user_agent=_user_agent(request))
    return {**asdict(tokens), "account_created": created}


@router.get("/me/sign-ins", auth=customer_auth, response={200: list[SignInOut], **ERRORS})
def list_sign_ins(request: HttpRequest):
    """The providers linked to this account."""
    return [
        {"id": identity.pk, "provider": identity.provider.slug,
         "provider_name": identity.provider.name, "email": identity.email,
         "linked_at": identity.created_at, "last_used_at": identity.last_used_at}
        for identity in ExternalIdentity.objects.filter(user=request.auth)
        .select_related("provider").order_by("created_at", "pk")
    ]


@router.delete("/me/sign-ins/{identity_id}", auth=customer_auth,
               response={204: None, **ERRORS})
def unlink(request: HttpRequest, identity_id: int):
    """Unlink a provider. Refused (409 ``last_sign_in_method``) when it is the account's only
    way to sign in."""
    try:
        services.unlink(request.auth, identity_id)
    except ExternalIdentity.DoesNotExist:
        raise ApiError(404, "not_found", "No such linked sign-in.") from None
    except SignInFailed as exc:
        raise _error(exc) from exc
    return Status(204, None)
