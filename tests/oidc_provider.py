"""A real OpenID Provider for the SSO tests: panva's oidc-provider (OpenID certified), run by
Node.js from ``tests/oidc`` on ``http://127.0.0.1:<free port>``.

- ``OIDCProvider`` writes the provider's JSON config (clients, accounts, RSA signing keys, TTLs),
  starts ``node tests/oidc/provider.mjs <config>``, waits for its ready line and stops it.
  ``restart(**changes)`` keeps the port, so the issuer too; ``rotate_keys()`` signs with a new
  key (a ``kid`` the relying party has not seen) and still publishes the old one.
- ``sign_in(authorization_url, account_id)`` is the user at the provider: its own login and
  consent pages (the library's development forms: any password), posted with ``requests``; it
  returns the redirect back to the client (``code`` and ``state``, or ``error``) unfollowed.
- ``exchange_code`` is the token endpoint as a client calls it, for a token a test needs
  directly (one issued to another client, for a wrong ``aud``).
- Everything the provider holds is in memory: a restart forgets codes, sessions and grants.
- Node or ``tests/oidc/node_modules`` (``make oidc-provider``) missing: the tests using the
  fixtures skip with the reason; in CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urljoin, urlsplit

import pytest
import requests

HERE = Path(__file__).resolve().parent / "oidc"
NODE = os.environ.get("NODE_BINARY", "node")
START_SECONDS = 15
TIMEOUT = 10  # each HTTP request to the provider

# Two relying parties, as the back office has them: staff SSO to the admin (a confidential
# server-side client) and the storefront's sign-in. Tests pass their own ``clients`` as needed.
CLIENTS: list[dict[str, Any]] = [
    {
        "client_id": "backoffice-admin",
        "client_secret": "admin-secret-0123456789abcdef",
        "redirect_uris": ["http://testserver/admin/sso/corp/callback/"],
        "post_logout_redirect_uris": ["http://testserver/admin/login/"],
        "token_endpoint_auth_method": "client_secret_basic",
    },
    {
        "client_id": "storefront",
        "client_secret": "storefront-secret-0123456789ab",
        "redirect_uris": ["http://127.0.0.1:3000/auth/callback"],
        "post_logout_redirect_uris": ["http://127.0.0.1:3000/"],
        "token_endpoint_auth_method": "client_secret_post",
    },
]

# Account id -> claims (``sub`` is the id unless given). Released per granted scope: email
# (email, email_verified), profile (name, given_name, family_name...), groups (groups).
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@corp.example", "email_verified": True, "name": "Alice Staff",
              "given_name": "Alice", "family_name": "Staff", "groups": ["backoffice-staff"]},
    "bob": {"email": "bob@example.com", "email_verified": True, "name": "Bob Buyer",
            "given_name": "Bob", "family_name": "Buyer", "groups": []},
    "mallory": {"email": "mallory@example.com", "email_verified": False, "name": "Mallory",
                "groups": ["backoffice-staff"]},
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing() -> str:
    """Why the provider cannot run here ("" when it can)."""
    if not shutil.which(NODE):
        return f"{NODE} (Node.js 20+) not found: the OpenID Provider tests need it"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        return "tests/oidc/node_modules is missing: run `make oidc-provider` (npm ci)"
    return ""


def available() -> bool:
    return not missing()


def require() -> None:
    """Skip the test when the provider cannot run here; fail it in CI."""
    reason = missing()
    if reason:
        if _in_ci():
            pytest.fail(f"OpenID Provider tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)


def new_signing_key() -> dict[str, Any]:
    """A fresh RS256 private JWK with a ``kid`` (the provider publishes its public half)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    jwk.pop("key_ops", None)  # PyJWT marks it "sign"; published as is, verifiers may refuse it
    return {**jwk, "kid": secrets.token_hex(8), "alg": "RS256", "use": "sig"}


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for S256."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


class SignInError(AssertionError):
    """The provider answered with its error page (nothing it could redirect to the client),
    or the pages were not the ones expected."""


@dataclass
class AuthRequest:
    """An authorization request built by ``OIDCProvider.authorization_url``."""

    url: str
    client_id: str
    redirect_uri: str
    state: str
    nonce: str
    code_verifier: str


@dataclass
class _Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)


class _Page(HTMLParser):
    """The forms (action, named inputs with their values) and link targets of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.links: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(_Form(attr.get("action", "")))
        elif tag == "input" and attr.get("name") and self.forms:
            self.forms[-1].fields[attr["name"]] = attr.get("value", "")
        elif tag == "a" and attr.get("href"):
            self.links.append(attr["href"])


class OIDCProvider:
    """One provider process. ``start()``/``stop()``, or use it as a context manager."""

    def __init__(self, *, clients: list[dict[str, Any]] | None = None,
                 accounts: dict[str, dict[str, Any]] | None = None,
                 ttl: dict[str, int] | None = None,
                 claims: dict[str, list[str]] | None = None,
                 conform_id_token_claims: bool = False,
                 keys: list[dict[str, Any]] | None = None) -> None:
        self.clients = [dict(client) for client in (CLIENTS if clients is None else clients)]
        self.accounts = dict(ACCOUNTS if accounts is None else accounts)
        self.ttl = dict(ttl or {})  # seconds by artifact: AuthorizationCode (60), IdToken...
        self.claims = claims  # scope -> claim names; None: provider.mjs's (with "groups")
        self.conform_id_token_claims = conform_id_token_claims  # True: only sub in ID tokens
        self.keys = keys or [new_signing_key()]  # private JWKs, the first signs
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="oidc-provider-"))
        self._log = self._dir / "provider.log"
        self._process: subprocess.Popen | None = None
        self.start_seconds = 0.0  # how long the last start took

    # -- the process --

    def start(self) -> OIDCProvider:
        config = self._dir / "config.json"
        config.write_text(json.dumps({
            "port": self.port, "clients": self.clients, "accounts": self.accounts,
            "jwks": {"keys": self.keys}, "ttl": self.ttl,
            "conform_id_token_claims": self.conform_id_token_claims,
            **({"claims": self.claims} if self.claims is not None else {}),
        }))
        began, earlier = time.monotonic(), len(self.log())  # the log runs on across restarts
        with self._log.open("ab") as log:  # the child keeps its own descriptor
            self._process = subprocess.Popen(
                [NODE, str(HERE / "provider.mjs"), str(config)], cwd=HERE,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        ready = f"oidc-provider ready {self.issuer}"
        while ready not in self.log()[earlier:]:
            if self._process.poll() is not None or time.monotonic() - began > START_SECONDS:
                self.stop()
                raise RuntimeError(f"the OpenID Provider did not start:\n{self.log()}")
            time.sleep(0.01)
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def restart(self, **changes: Any) -> OIDCProvider:
        """Stop, replace settings (``ttl={"AuthorizationCode": 1}``, ``clients=[...]``,
        ``accounts=...``, ``keys=...``: the constructor's), start on the same port: the same
        issuer, nothing remembered."""
        for name, value in changes.items():
            if name not in ("clients", "accounts", "ttl", "claims", "conform_id_token_claims",
                            "keys"):
                raise TypeError(f"restart() cannot change {name!r}")
            setattr(self, name, value)
        self.stop()
        return self.start()

    def rotate_keys(self) -> dict[str, Any]:
        """Restart signing with a new key, the old one still published second. Returns the
        new key (its ``kid`` is new to every relying party)."""
        key = new_signing_key()
        self.restart(keys=[key, self.keys[0]])
        return key

    def log(self) -> str:
        """What the provider printed: its warnings and, one a line, every error it answered."""
        try:
            return self._log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- what relying parties see --

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def discovery(self) -> dict[str, Any]:
        return requests.get(self.discovery_url, timeout=TIMEOUT).json()

    def jwks(self) -> dict[str, Any]:
        """The public keys as the provider publishes them (``/jwks``)."""
        return requests.get(f"{self.issuer}/jwks", timeout=TIMEOUT).json()

    def client(self, client_id: str) -> dict[str, Any]:
        return next(client for client in self.clients if client["client_id"] == client_id)

    def authorization_url(self, client_id: str, *, scope: str = "openid email profile groups",
                          redirect_uri: str | None = None, **params: str) -> AuthRequest:
        """A code flow request with PKCE S256, a fresh state and nonce, as a client makes
        it. ``params`` add or override query parameters (``prompt="login"``...)."""
        redirect_uri = redirect_uri or self.client(client_id)["redirect_uris"][0]
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = {"client_id": client_id, "response_type": "code", "scope": scope,
                 "redirect_uri": redirect_uri, "state": state, "nonce": nonce,
                 "code_challenge": challenge, "code_challenge_method": "S256", **params}
        return AuthRequest(f"{self.issuer}/auth?{urlencode(query)}", client_id, redirect_uri,
                           query["state"], query["nonce"], verifier)

    # -- the user at the provider --

    def sign_in(self, authorization_url: str, account_id: str, *, consent: bool = True,
                session: requests.Session | None = None) -> str:
        """Open the authorization URL, sign in as ``account_id`` and consent (or decline,
        ``consent=False``) on the provider's pages, and return the redirect back to the
        client, not followed: ``...?code=...&state=...&iss=...`` or ``...?error=...``.

        A ``session`` passed in keeps the provider's cookies: a second sign-in in it finds the
        user signed in (no login page) and the grant given (no consent page)."""
        if account_id not in self.accounts:
            raise ValueError(f"no account {account_id!r} at the provider")
        if session is None:
            with requests.Session() as own:
                return self.sign_in(authorization_url, account_id, consent=consent,
                                    session=own)

        response = session.get(authorization_url, allow_redirects=False, timeout=TIMEOUT)
        for _ in range(12):
            if response.is_redirect:
                location = urljoin(response.url, response.headers["Location"])
                if not location.startswith(f"{self.issuer}/"):
                    return location  # back to the client: the test delivers it
                response = session.get(location, allow_redirects=False, timeout=TIMEOUT)
                continue
            if response.status_code != 200:
                raise SignInError(f"the provider answered {response.status_code}:\n"
                                  f"{response.text}")
            page = _Page(response.text)
            form = next((f for f in page.forms if f.fields.get("prompt")), None)
            if form is None:
                raise SignInError(f"no login or consent form at {response.url}:\n"
                                  f"{response.text[:2000]}")
            data = dict(form.fields)
            if data["prompt"] == "login":
                data.update(login=account_id, password="any password")
            elif not consent:
                # The page's "[ Cancel ]" link: the provider sends access_denied back.
                abort = next(link for link in page.links if link.endswith("/abort"))
                response = session.get(urljoin(response.url, abort), allow_redirects=False,
                                       timeout=TIMEOUT)
                continue
            response = session.post(urljoin(response.url, form.action), data=data,
                                    allow_redirects=False, timeout=TIMEOUT)
        raise SignInError(f"no redirect back to the client after 12 steps; last page:\n"
                          f"{response.status_code} {response.text[:2000]}")

    def sign_out(self, logout_url: str, *, session: requests.Session) -> str:
        """Open an RP-initiated logout URL (``end_session_endpoint?id_token_hint=...&
        post_logout_redirect_uri=...&state=...``) in the ``session`` that signed in, confirm
        "Yes, sign me out", and return the redirect back (unfollowed; the provider's own
        "signed out" page's URL when no ``post_logout_redirect_uri`` was given)."""
        response = session.get(logout_url, allow_redirects=False, timeout=TIMEOUT)
        if response.status_code != 200:
            raise SignInError(f"the provider answered {response.status_code}:\n{response.text}")
        form = _Page(response.text).forms[0]
        response = session.post(urljoin(response.url, form.action),
                                data={**form.fields, "logout": "yes"}, allow_redirects=False,
                                timeout=TIMEOUT)
        if not response.is_redirect:
            raise SignInError(f"the provider answered {response.status_code}:\n{response.text}")
        return urljoin(response.url, response.headers["Location"])

    # -- the client's back channel --

    def exchange_code(self, client_id: str, client_secret: str, code: str, redirect_uri: str,
                      code_verifier: str) -> dict[str, Any]:
        """The token endpoint's answer (JSON, errors included: ``{"error": "invalid_grant",
        ...}``), authenticating as the client is registered (``client_secret_post`` or
        ``client_secret_basic``, the latter form-encoded as RFC 6749 2.3.1 wants)."""
        data = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri, "code_verifier": code_verifier}
        headers = {}
        method = next((c.get("token_endpoint_auth_method") for c in self.clients
                       if c["client_id"] == client_id), None)
        if method == "client_secret_post":
            data.update(client_id=client_id, client_secret=client_secret)
        else:
            basic = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(basic).decode()}"
        return requests.post(f"{self.issuer}/token", data=data, headers=headers,
                             timeout=TIMEOUT).json()

    def tokens_for(self, client_id: str, account_id: str, **params: str) -> dict[str, Any]:
        """The whole code flow for ``client_id``: the token response (``id_token``,
        ``access_token``...) plus ``"request"``, the ``AuthRequest`` (its nonce...)."""
        request = self.authorization_url(client_id, **params)
        back = self.sign_in(request.url, account_id)
        code = dict(parse_qsl(urlsplit(back).query)).get("code")
        if not code:
            raise SignInError(f"no code in {back}")
        client = self.client(client_id)
        tokens = self.exchange_code(client_id, client["client_secret"], code,
                                    request.redirect_uri, request.code_verifier)
        return {**tokens, "request": request}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def oidc_provider_factory():
    """``make(**options) -> OIDCProvider``, started (options: ``OIDCProvider``'s); every one
    stopped after the test. Skips when Node.js or the package is missing (fails in CI)."""
    require()
    started: list[OIDCProvider] = []

    def make(**options: Any) -> OIDCProvider:
        provider = OIDCProvider(**options)
        started.append(provider)
        return provider.start()

    yield make
    for provider in started:
        provider.close()


@pytest.fixture
def oidc_provider(oidc_provider_factory) -> OIDCProvider:
    """A started provider with the default ``CLIENTS`` and ``ACCOUNTS``."""
    return oidc_provider_factory()
