"""Talking to an OpenID Provider, with Authlib: discovery, the authorization URL (code flow,
PKCE S256, nonce, state), the code exchange and the ID token's checks (signature through the
provider's JWKS, fetched again when a token names a key it has not seen: key rotation; ``iss``,
``aud``, ``exp``, ``iat``, ``nonce``, ``azp``, ``at_hash``).

One Authlib app per provider and process, rebuilt when the provider row changes or after
``METADATA_TTL``, so discovery and keys are not fetched on every sign-in.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.django_client import DjangoIntegration, DjangoOAuth2App
from joserfc.errors import JoseError

from backoffice.identity.models import IdentityProvider

METADATA_TTL = 3600  # seconds a provider's discovery document and keys are reused
HTTP_TIMEOUT = 10  # seconds for each call to the provider
LEEWAY = 60  # seconds of clock difference tolerated on exp / iat


class SignInFailed(Exception):
    """A sign-in that cannot go on; ``code`` is stable, the message safe to show (it never
    holds a token, a code or a secret)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Authorization:
    url: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str


@dataclass(frozen=True)
class SignIn:
    """A verified ID token: who the provider says signed in."""

    issuer: str
    subject: str
    claims: dict[str, Any]
    id_token: str

    @property
    def email(self) -> str:
        return str(self.claims.get("email") or "").strip().lower()

    def email_verified(self, claim: str) -> bool:
        # Some providers send the string "true".
        return self.claims.get(claim or "email_verified") in (True, "true", "True")


def _unreachable(provider: IdentityProvider, what: str = "") -> SignInFailed:
    """The failure for a provider (or its keys, ``what``) that did not answer."""
    name = f"{provider.name}'s {what}" if what else provider.name
    verb = "cannot be read" if what else "cannot be reached"
    return SignInFailed("provider_unreachable", f"{name} {verb} just now; try again.")


_apps: dict[int, tuple[float, Any, DjangoOAuth2App]] = {}
_lock = threading.Lock()


def _app(provider: IdentityProvider) -> DjangoOAuth2App:
    stamp = provider.updated_at
    with _lock:
        cached = _apps.get(provider.pk)
        if cached and cached[1] == stamp and time.monotonic() - cached[0] < METADATA_TTL:
            return cached[2]
    app = DjangoOAuth2App(
        DjangoIntegration(provider.slug), name=provider.slug,
        client_id=provider.client_id, client_secret=provider.client_secret,
        server_metadata_url=provider.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": provider.scopes, "code_challenge_method": "S256",
                       "token_endpoint_auth_method": provider.token_auth_method,
                       "default_timeout": HTTP_TIMEOUT},
    )
    try:
        metadata = app.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        raise _unreachable(provider) from exc
    # OpenID Connect Discovery 1.0, 4.3: the document's issuer must be the one configured.
    if metadata.get("issuer") != provider.issuer:
        raise SignInFailed("provider_misconfigured",
                           f"{provider.name}'s discovery document names another issuer.")
    with _lock:
        _apps[provider.pk] = (time.monotonic(), stamp, app)
    return app


def forget(provider_id: int | None = None) -> None:
    """Drop cached discovery and keys (one provider's, or all)."""
    with _lock:
        if provider_id is None:
            _apps.clear()
        else:
            _apps.pop(provider_id, None)


def authorization(provider: IdentityProvider, redirect_uri: str, **params: Any) -> Authorization:
    """Where to send the person: the provider's authorization URL, with a fresh state, nonce
    and PKCE verifier that the caller keeps server-side until the code comes back."""
    made = _app(provider).create_authorization_url(redirect_uri, **params)
    return Authorization(url=made["url"], state=made["state"], nonce=made["nonce"],
                         code_verifier=made["code_verifier"], redirect_uri=redirect_uri)


def complete(provider: IdentityProvider, *, code: str, redirect_uri: str, code_verifier: str,
             nonce: str) -> SignIn:
    """Trade the code for tokens and verify the ID token; ``SignInFailed`` otherwise."""
    app = _app(provider)
    try:
        token = app.fetch_access_token(redirect_uri=redirect_uri, code=code,
                                       code_verifier=code_verifier)
    except OAuthError as exc:
        # invalid_grant: expired, used, or issued for another redirect URI or verifier.
        raise SignInFailed("code_rejected", f"{provider.name} refused the sign-in code "
                           f"({exc.error}); start again.") from exc
    except (requests.RequestException, ValueError) as exc:
        raise _unreachable(provider) from exc
    if not token.get("id_token"):
        raise SignInFailed("invalid_id_token", f"{provider.name} sent no ID token (is the "
                           "'openid' scope configured?).")
    return verify_id_token(provider, token["id_token"], nonce=nonce,
                           access_token=token.get("access_token"))


def verify_id_token(provider: IdentityProvider, id_token: str, *, nonce: str,
                    access_token: str | None = None) -> SignIn:
    """The claims of ``id_token`` once its signature, issuer, audience, times and nonce hold."""
    app = _app(provider)
    token = {"id_token": id_token}
    if access_token:
        token["access_token"] = access_token
    options = {"iss": {"essential": True, "value": provider.issuer},
               "aud": {"essential": True, "value": provider.client_id},
               "sub": {"essential": True}}
    try:
        claims = app.parse_id_token(token, nonce=nonce, claims_options=options, leeway=LEEWAY)
    except JoseError as exc:
        raise SignInFailed("invalid_id_token", f"The ID token from {provider.name} was refused "
                           f"({exc.description or exc.error}).") from exc
    except (requests.RequestException, ValueError) as exc:
        raise _unreachable(provider, "keys") from exc
    if not nonce or claims.get("nonce") != nonce:  # Authlib skips the check for an empty nonce
        raise SignInFailed("invalid_id_token",
                           f"The ID token from {provider.name} was refused (nonce).")
    return SignIn(issuer=claims["iss"], subject=str(claims["sub"]), claims=dict(claims),
                  id_token=id_token)


def end_session_url(provider: IdentityProvider, *, id_token: str,
                    post_logout_redirect_uri: str) -> str | None:
    """The provider's RP-initiated logout URL, when its discovery offers one."""
    try:
        app = _app(provider)
        if not app.load_server_metadata().get("end_session_endpoint"):
            return None
        return app.create_logout_url(post_logout_redirect_uri=post_logout_redirect_uri,
                                     id_token_hint=id_token, client_id=provider.client_id)["url"]
    except SignInFailed:
        return None


def discovery(provider: IdentityProvider) -> dict[str, str]:
    """The endpoints read from the provider's discovery document, after reading its keys (the
    admin's "Check the connection")."""
    app = _app(provider)
    try:
        keys = app.fetch_jwk_set(force=True)
    except (requests.RequestException, ValueError, RuntimeError) as exc:
        raise _unreachable(provider, "keys") from exc
    metadata = app.load_server_metadata()
    found = {name: metadata.get(name, "") for name in (
        "authorization_endpoint", "token_endpoint", "jwks_uri", "end_session_endpoint")}
    found["keys"] = str(len(keys.get("keys", [])))
    return found
