"""OpenID Connect sign-in against a real OpenID Provider (panva's oidc-provider on Node.js,
tests/oidc_provider.py): staff single sign-on to the admin and customers' sign-in through the
API. Discovery, the provider's own login and consent pages, the code exchange with PKCE and the
ID token's checks all run for real; what a test changes is the provider (its accounts, keys,
code lifetime) or the state the back office kept."""

from __future__ import annotations

import time
from io import StringIO
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from backoffice.audit.models import AuditAction, AuditEntry
from backoffice.customers.models import CustomerProfile
from backoffice.identity import client as oidc_client
from backoffice.identity.client import SignInFailed
from backoffice.identity.models import ExternalIdentity, IdentityProvider, PendingSignIn
from backoffice.notifications.models import Notification
from tests import oidc_provider as harness
from tests.test_notifications_admin import make_order

pytestmark = pytest.mark.django_db

STOREFRONT_CALLBACK = "http://127.0.0.1:3000/auth/callback"


@pytest.fixture(scope="module")
def idp():
    """One provider process for the module (about a second to start); tests that restart it
    put it back as it was."""
    harness.require()
    provider = harness.OIDCProvider()
    provider.start()
    yield provider
    provider.close()


@pytest.fixture(autouse=True)
def _fresh_discovery():
    oidc_client.forget()
    yield
    oidc_client.forget()


def _client_secret(idp, client_id: str) -> str:
    return idp.client(client_id)["client_secret"]


@pytest.fixture
def corp(idp) -> IdentityProvider:
    """The staff provider "corp": verified emails of corp.example."""
    provider = IdentityProvider(
        name="Corp", slug="corp", issuer=idp.issuer, client_id="backoffice-admin",
        scopes="openid email profile groups", for_staff=True,
        allowed_email_domains="corp.example")
    provider.client_secret = _client_secret(idp, "backoffice-admin")
    provider.save()
    return provider


@pytest.fixture
def shop_idp(idp) -> IdentityProvider:
    """The customers' provider "acme" (client_secret_post at the token endpoint)."""
    provider = IdentityProvider(
        name="Acme ID", slug="acme", issuer=idp.issuer, client_id="storefront",
        token_auth_method="client_secret_post", for_customers=True,
        storefront_redirect_uris=STOREFRONT_CALLBACK)
    provider.client_secret = _client_secret(idp, "storefront")
    provider.save()
    return provider


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def staff_sso(client, idp, account: str, *, start: str = "/admin/sso/corp/"):
    """The browser: our start URL, the provider's pages, back to our callback."""
    started = client.get(start)
    assert started.status_code == 302, started.content[:500]
    assert started["Location"].startswith(f"{idp.issuer}/auth?")
    back = idp.sign_in(started["Location"], account)
    assert back.startswith("http://testserver/admin/sso/corp/callback/"), back
    return client.get(back.removeprefix("http://testserver"))


def _messages(response) -> list[str]:
    return [str(message) for message in response.wsgi_request._messages]


# --- Staff ---------------------------------------------------------------------------------------


def test_staff_sign_in_creates_the_account_with_mapped_roles_never_superuser(client, idp, corp):
    clerk = Group.objects.get(name="Fulfilment clerk")
    corp.group_mapping = {"backoffice-staff": "Fulfilment clerk", "finance": "Finance"}
    corp.save()
    login_page = client.get("/admin/login/")
    assert b"Sign in with Corp" in login_page.content

    response = staff_sso(client, idp, "alice")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    user = get_user_model().objects.get(email="alice@corp.example")
    assert user.is_staff and not user.is_superuser and not user.has_usable_password()
    assert list(user.groups.all()) == [clerk]
    identity = ExternalIdentity.objects.get(user=user)
    assert (identity.issuer, identity.subject) == (idp.issuer, "alice")
    assert client.get("/admin/").status_code == 200

    # The claim changes at the provider: the roles follow at the next sign-in; a group the
    # mapping does not manage stays.
    support = Group.objects.get(name="Customer support")
    user.groups.add(support)
    accounts = {**idp.accounts, "alice": {**idp.accounts["alice"], "groups": ["finance"]}}
    idp.restart(accounts=accounts)
    try:
        client.logout()
        assert staff_sso(client, idp, "alice").status_code == 302
    finally:
        idp.restart(accounts=harness.ACCOUNTS)
    assert get_user_model().objects.filter(email="alice@corp.example").count() == 1
    assert set(user.groups.values_list("name", flat=True)) == {"Finance", "Customer support"}


def test_staff_who_may_not_enter_are_refused_and_nothing_is_made(client, idp, corp):
    before = get_user_model().objects.count()
    # An unverified email, and a verified one outside the allowed domains.
    for account in ("mallory", "bob"):
        response = staff_sso(client, idp, account)
        assert response.status_code == 302 and response["Location"] == "/admin/login/"
        assert any("may not enter" in message for message in _messages(response))
    # A mapping the person has no group of.
    corp.allowed_email_domains = ""
    corp.group_mapping = {"shop-owners": "Owner"}
    corp.save()
    response = staff_sso(client, idp, "alice")
    assert any("no role" in message for message in _messages(response))
    assert get_user_model().objects.count() == before
    assert client.get("/admin/").status_code == 302


def test_an_existing_account_is_linked_by_its_owner_never_by_email(client, idp, corp):
    owner = get_user_model().objects.create_user("alice", "alice@corp.example", "pw-alice-123",
                                                 is_staff=True)
    response = staff_sso(client, idp, "alice")
    assert any("exists already" in message for message in _messages(response))
    assert not ExternalIdentity.objects.exists()

    client.force_login(owner)
    response = staff_sso(client, idp, "alice", start="/admin/sso/corp/link/")
    assert response.status_code == 302
    assert ExternalIdentity.objects.get().user == owner
    client.logout()
    staff_sso(client, idp, "alice")
    assert client.get("/admin/").wsgi_request.user == owner


def test_a_shoppers_account_never_becomes_staff_by_a_staff_sign_in(client, idp, corp):
    shopper = get_user_model().objects.create_user("alice@corp.example", "alice@corp.example")
    ExternalIdentity.objects.create(user=shopper, provider=corp, issuer=idp.issuer,
                                    subject="alice")
    response = staff_sso(client, idp, "alice")
    assert any("customer account" in m for m in _messages(response))
    shopper.refresh_from_db()
    assert not shopper.is_staff


def test_a_replayed_or_foreign_state_and_a_wrong_nonce_are_refused(client, idp, corp):
    started = client.get("/admin/sso/corp/")
    back = idp.sign_in(started["Location"], "alice").removeprefix("http://testserver")
    # The nonce the back office kept is not the one in the ID token.
    session = client.session
    pending = session["sso_pending"]
    state = _query(back)["state"]
    pending[state]["nonce"] = "another-nonce"
    session["sso_pending"] = pending
    session.save()
    response = client.get(back)
    assert any("refused (Invalid claim: 'nonce')" in m for m in _messages(response)), \
        _messages(response)
    # Used once: the same callback again is an unknown state.
    response = client.get(back)
    assert any("expired or was started in another browser" in m for m in _messages(response))
    assert not get_user_model().objects.filter(email="alice@corp.example").exists()


def test_logout_ends_the_provider_session_too(client, idp, corp):
    staff_sso(client, idp, "alice")
    response = client.post("/admin/logout/")
    assert response.status_code == 302
    end = response["Location"]
    assert end.startswith(f"{idp.issuer}/session/end")
    assert _query(end)["post_logout_redirect_uri"] == "http://testserver/admin/login/"
    assert _query(end)["id_token_hint"].count(".") == 2
    assert client.get("/admin/").status_code == 302


def test_a_rotated_signing_key_is_fetched_again(client, idp, corp):
    staff_sso(client, idp, "alice")
    cached = oidc_client._app(corp).server_metadata["jwks"]
    old_kids = {key["kid"] for key in cached["keys"]}
    original = list(idp.keys)
    idp.rotate_keys()
    try:
        client.logout()
        response = staff_sso(client, idp, "alice")
        assert response["Location"] == "/admin/", _messages(response)
        new_kids = {key["kid"] for key in oidc_client._app(corp).server_metadata["jwks"]["keys"]}
        assert new_kids - old_kids
    finally:
        idp.restart(keys=original)


def test_an_expired_code_is_refused(client, idp, corp):
    idp.restart(ttl={"AuthorizationCode": 1})
    try:
        started = client.get("/admin/sso/corp/")
        back = idp.sign_in(started["Location"], "alice")
        time.sleep(2.1)
        response = client.get(back.removeprefix("http://testserver"))
    finally:
        idp.restart(ttl={})
    assert any("refused the sign-in code (invalid_grant)" in m for m in _messages(response))
    assert client.get("/admin/").status_code == 302


def test_an_id_token_for_another_client_is_refused(idp, corp):
    tokens = idp.tokens_for("storefront", "alice")
    with pytest.raises(SignInFailed) as refused:
        oidc_client.verify_id_token(corp, tokens["id_token"], nonce=tokens["request"].nonce)
    assert refused.value.code == "invalid_id_token" and "aud" in str(refused.value)


@override_settings(STAFF_PASSWORD_LOGIN=False)
def test_passwords_off_leaves_sso_and_a_one_time_break_glass_link(client, idp, corp):
    root = get_user_model().objects.create_superuser("root", "root@corp.example", "pw-root-123")
    page = client.get("/admin/login/")
    assert b"Sign in with Corp" in page.content and b'name="password"' not in page.content
    refused = client.post("/admin/login/", {"username": "root", "password": "pw-root-123"})
    assert refused.status_code == 403
    assert client.get("/admin/").status_code == 302

    out = StringIO()
    call_command("breakglass_login", "root", stdout=out, stderr=StringIO())
    link = out.getvalue().strip().removeprefix("http://localhost:8000")
    assert client.get(link)["Location"] == "/admin/"
    assert client.get("/admin/").wsgi_request.user == root
    assert AuditEntry.objects.filter(action=AuditAction.BREAKGLASS_LOGIN,
                                     object_id=str(root.pk)).count() == 1
    client.logout()
    assert client.get(link)["Location"] == "/admin/login/"  # used once
    # SSO still works with passwords off.
    assert staff_sso(client, idp, "alice")["Location"] == "/admin/"


def test_the_admin_password_form_is_throttled(client, settings):
    settings.AUTH_THROTTLE_RATES = {**settings.AUTH_THROTTLE_RATES, "staff_login": "3/min"}
    statuses = [client.post("/admin/login/", {"username": "x", "password": "wrong"}).status_code
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_the_provider_form_keeps_the_secret_sealed_and_audits(admin_client, idp):
    response = admin_client.post("/admin/identity/identityprovider/add/", {
        "name": "Corp", "slug": "corp", "issuer": idp.issuer, "client_id": "backoffice-admin",
        "client_secret": "s3cret-value", "token_auth_method": "client_secret_basic",
        "scopes": "openid email profile", "for_staff": "on",
        "allowed_email_domains": "corp.example", "email_verified_claim": "email_verified",
        "group_claim": "groups", "group_mapping": "{}", "storefront_redirect_uris": "",
        "is_active": "on"})
    assert response.status_code == 302, response.content[:2000]
    provider = IdentityProvider.objects.get()
    assert provider.client_secret == "s3cret-value"
    assert "s3cret-value" not in str(provider.client_secret_sealed)
    page = admin_client.get(f"/admin/identity/identityprovider/{provider.pk}/change/")
    assert b"s3cret-value" not in page.content
    assert AuditEntry.objects.filter(action=AuditAction.SIGN_IN_PROVIDER_CHANGED).exists()
    checked = admin_client.get(f"/admin/identity/identityprovider/{provider.pk}/check/",
                               follow=True)
    assert any("Discovery and keys read" in m and f"{idp.issuer}/token" in m
               for m in _messages(checked)), _messages(checked)
    # A staff provider that lets anyone in is refused.
    response = admin_client.post(f"/admin/identity/identityprovider/{provider.pk}/change/", {
        "name": "Corp", "slug": "corp", "issuer": idp.issuer, "client_id": "backoffice-admin",
        "client_secret": "", "token_auth_method": "client_secret_basic", "scopes": "openid",
        "for_staff": "on", "allowed_email_domains": "", "email_verified_claim": "email_verified",
        "group_claim": "groups", "group_mapping": "{}", "storefront_redirect_uris": "",
        "is_active": "on"})
    assert response.status_code == 200 and b"could enter" in response.content
    provider.refresh_from_db()
    assert provider.client_secret == "s3cret-value"


# --- Customers through the API -------------------------------------------------------------------


def api_sign_in(client, idp, account: str, *, slug: str = "acme", token: str | None = None,
                **headers):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    started = client.post(f"/api/v1/auth/providers/{slug}/authorize",
                          {"redirect_uri": STOREFRONT_CALLBACK},
                          content_type="application/json", **auth)
    assert started.status_code == 200, started.json()
    back = idp.sign_in(started.json()["authorization_url"], account)
    assert back.startswith(STOREFRONT_CALLBACK), back
    params = _query(back)
    assert params["state"] == started.json()["state"]
    return client.post(f"/api/v1/auth/providers/{slug}/callback",
                       {"code": params["code"], "state": params["state"]},
                       content_type="application/json", **headers)


def _me(client, tokens: dict):
    return client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")


def test_a_first_sign_in_makes_a_confirmed_account_then_finds_it(client, idp, shop_idp):
    guest_order = make_order("bob@example.com")
    providers = client.get("/api/v1/auth/providers").json()
    assert providers == [{"slug": "acme", "name": "Acme ID"}]
    first = api_sign_in(client, idp, "bob")
    assert first.status_code == 200, first.json()
    assert first.json()["account_created"] is True
    me = _me(client, first.json()).json()
    assert me["email"] == "bob@example.com" and me["email_verified"] is True
    assert me["first_name"] == "Bob"
    guest_order.refresh_from_db()  # the provider vouched for the email: the guest order joins
    assert guest_order.user.email == "bob@example.com"
    again = api_sign_in(client, idp, "bob")
    assert again.json()["account_created"] is False
    assert get_user_model().objects.filter(email="bob@example.com").count() == 1
    assert not PendingSignIn.objects.exists()  # each state used once


def test_an_existing_account_is_joined_only_when_both_sides_confirmed_the_email(
        client, idp, shop_idp):
    user = get_user_model().objects.create_user("bob@example.com", "bob@example.com", "pw-bob")
    profile = CustomerProfile.objects.create(user=user)
    refused = api_sign_in(client, idp, "bob")
    assert refused.status_code == 409 and refused.json()["code"] == "account_exists"
    profile.email_verified_at = timezone.now()
    profile.save()
    joined = api_sign_in(client, idp, "bob")
    assert joined.status_code == 200 and joined.json()["account_created"] is False
    assert _me(client, joined.json()).json()["email"] == "bob@example.com"
    assert ExternalIdentity.objects.get().user == user


def test_an_unverified_email_never_joins_and_a_new_account_must_confirm_it(client, idp,
                                                                          shop_idp):
    guest_order = make_order("mallory@example.com")
    made = api_sign_in(client, idp, "mallory")
    assert made.status_code == 200 and made.json()["account_created"] is True
    assert _me(client, made.json()).json()["email_verified"] is False
    guest_order.refresh_from_db()  # not until the mailed link is opened
    assert guest_order.user is None
    assert Notification.objects.filter(event="email_verification",
                                       recipient="mallory@example.com").count() == 1
    # Someone else's account with that email is never joined by an unverified claim.
    ExternalIdentity.objects.all().delete()
    user = get_user_model().objects.get(email="mallory@example.com")
    CustomerProfile.objects.filter(user=user).update(email_verified_at=timezone.now())
    refused = api_sign_in(client, idp, "mallory")
    assert refused.status_code == 409 and "does not say this email is verified" in \
        refused.json()["detail"]


def test_staff_accounts_never_sign_in_through_the_storefront(client, idp, shop_idp):
    get_user_model().objects.create_user("bob@example.com", "bob@example.com", "pw",
                                         is_staff=True)
    refused = api_sign_in(client, idp, "bob")
    assert refused.status_code == 409


def test_bad_requests_get_the_api_error_body(client, idp, shop_idp):
    wrong_uri = client.post("/api/v1/auth/providers/acme/authorize",
                            {"redirect_uri": "https://evil.example/cb"},
                            content_type="application/json")
    assert wrong_uri.status_code == 400
    assert wrong_uri.json()["code"] == "redirect_uri_not_allowed"
    unknown = client.post("/api/v1/auth/providers/nope/authorize",
                          {"redirect_uri": STOREFRONT_CALLBACK}, content_type="application/json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_provider"
    bad_state = client.post("/api/v1/auth/providers/acme/callback",
                            {"code": "x", "state": "never-issued"},
                            content_type="application/json")
    assert bad_state.status_code == 400 and bad_state.json()["code"] == "invalid_state"


def test_a_replayed_callback_and_a_wrong_nonce_are_refused(client, idp, shop_idp):
    started = client.post("/api/v1/auth/providers/acme/authorize",
                          {"redirect_uri": STOREFRONT_CALLBACK}, content_type="application/json")
    PendingSignIn.objects.update(nonce="not-the-one-sent")
    params = _query(idp.sign_in(started.json()["authorization_url"], "bob"))
    body = {"code": params["code"], "state": params["state"]}
    refused = client.post("/api/v1/auth/providers/acme/callback", body,
                          content_type="application/json")
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_id_token"
    replay = client.post("/api/v1/auth/providers/acme/callback", body,
                         content_type="application/json")
    assert replay.status_code == 400 and replay.json()["code"] == "invalid_state"
    assert not get_user_model().objects.filter(email="bob@example.com").exists()


def test_link_list_and_unlink_but_never_the_last_way_in(client, idp, shop_idp):
    get_user_model().objects.create_user("carol@shop.example", "carol@shop.example", "pw-c-1234")
    login = client.post("/api/v1/auth/login",
                        {"email": "carol@shop.example", "password": "pw-c-1234"},
                        content_type="application/json").json()
    # A link started by Carol cannot be finished by someone else's browser.
    started = client.post("/api/v1/auth/providers/acme/authorize",
                          {"redirect_uri": STOREFRONT_CALLBACK}, content_type="application/json",
                          HTTP_AUTHORIZATION=f"Bearer {login['access_token']}")
    params = _query(idp.sign_in(started.json()["authorization_url"], "bob"))
    hijack = client.post("/api/v1/auth/providers/acme/callback",
                         {"code": params["code"], "state": params["state"]},
                         content_type="application/json")
    assert hijack.status_code == 400 and hijack.json()["code"] == "invalid_state"
    assert not ExternalIdentity.objects.exists()

    linked = api_sign_in(client, idp, "bob", token=login["access_token"],
                         HTTP_AUTHORIZATION=f"Bearer {login['access_token']}")
    assert linked.status_code == 200, linked.json()
    assert _me(client, linked.json()).json()["email"] == "carol@shop.example"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {login['access_token']}"}
    listed = client.get("/api/v1/me/sign-ins", **auth).json()
    assert [(s["provider"], s["email"]) for s in listed] == [("acme", "bob@example.com")]
    # Bob's provider account now signs in as Carol, never as a new account.
    assert _me(client, api_sign_in(client, idp, "bob").json()).json()["email"] == \
        "carol@shop.example"
    assert client.delete(f"/api/v1/me/sign-ins/{listed[0]['id']}", **auth).status_code == 204

    # An account made by a sign-in has no password: its only provider stays.
    made = api_sign_in(client, idp, "mallory").json()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {made['access_token']}"}
    only = client.get("/api/v1/me/sign-ins", **auth).json()[0]
    refused = client.delete(f"/api/v1/me/sign-ins/{only['id']}", **auth)
    assert refused.status_code == 409 and refused.json()["code"] == "last_sign_in_method"
    assert client.delete(f"/api/v1/me/sign-ins/{listed[0]['id']}", **auth).status_code == 404
