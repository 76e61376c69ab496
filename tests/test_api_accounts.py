"""Accounts API: tokens that rotate and revoke, passwords, profile, and addresses kept private."""

import re
from datetime import timedelta

import jwt
import pytest
from django.core import mail
from django.utils import timezone

from backoffice.customers.models import Address, RefreshToken, TokenFamily
from backoffice.customers.services import ACCESS_TOKEN_LIFETIME
from backoffice.plugin_host.models import PluginEvent

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"


def post(client, url, data=None, token=None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(f"/api/v1{url}", data or {}, content_type="application/json",
                       **headers, **extra)


def get(client, url, token=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(f"/api/v1{url}", **headers)


def register(client, email="wanjiru@example.com", password=PASSWORD, **extra):
    return post(client, "/auth/register", {"email": email, "password": password, **extra})


@pytest.fixture
def tokens(client):
    response = register(client, first_name="Wanjiru")
    assert response.status_code == 201, response.content
    return response.json()


def test_registering_logs_the_customer_in(client, tokens):
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == int(ACCESS_TOKEN_LIFETIME.total_seconds())
    me = get(client, "/me", tokens["access_token"]).json()
    assert me["email"] == "wanjiru@example.com" and me["first_name"] == "Wanjiru"


def test_an_email_is_one_account_whatever_its_case(client, tokens):
    response = register(client, email="  WANJIRU@Example.com ")
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"
    assert response.json()["errors"][0]["field"] == "email"


@pytest.mark.parametrize(("password", "fragment"), [
    ("short1", "too short"), ("password123", "too common"), ("83920175563", "entirely numeric"),
])
def test_weak_passwords_are_refused(client, password, fragment):
    response = register(client, password=password)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "weak_password" and fragment in body["detail"]


def test_a_malformed_email_is_refused(client):
    response = register(client, email="not-an-email")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_email"


def test_registration_fires_the_customer_registered_event(client, register_plugin):
    from backoffice.hookspecs import hookimpl

    class Listener:
        hookspec_version = ">=1.0,<2"

        @hookimpl
        def customer_registered(self, email):
            pass

    register_plugin(Listener(), "listener")
    register(client, email="new@example.com")
    event = PluginEvent.objects.get(hook="customer_registered")
    assert event.payload["email"] == "new@example.com"


def test_wrong_credentials_get_one_answer(client, tokens):
    wrong_password = post(client, "/auth/login", {"email": "wanjiru@example.com",
                                                   "password": "nope"})
    no_account = post(client, "/auth/login", {"email": "nobody@example.com", "password": "x"})
    assert wrong_password.status_code == no_account.status_code == 401
    assert wrong_password.json() == no_account.json()


def test_a_refresh_token_rotates_and_works_once(client, tokens):
    first = post(client, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert get(client, "/me", rotated["access_token"]).status_code == 200


def test_reusing_a_refresh_token_ends_the_whole_session(client, tokens):
    rotated = post(client, "/auth/refresh", {"refresh_token": tokens["refresh_token"]}).json()
    # Someone replays the old token (it was stolen): both copies stop working.
    replay = post(client, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["code"] == "invalid_token"
    assert post(client, "/auth/refresh",
                {"refresh_token": rotated["refresh_token"]}).status_code == 401
    assert get(client, "/me", rotated["access_token"]).status_code == 401
    assert TokenFamily.objects.get().revoked_reason == "refresh token reused"


def test_refresh_tokens_are_stored_hashed(tokens):
    stored = RefreshToken.objects.values_list("token_hash", flat=True)
    assert tokens["refresh_token"] not in set(stored)
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in stored)


def test_logging_out_revokes_the_session_at_once(client, tokens):
    assert post(client, "/auth/logout",
                {"refresh_token": tokens["refresh_token"]}).status_code == 204
    assert get(client, "/me", tokens["access_token"]).status_code == 401
    assert post(client, "/auth/refresh",
                {"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_an_expired_or_forged_access_token_is_refused(client, tokens, settings):
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    claims["exp"] = int((timezone.now() - timedelta(seconds=1)).timestamp())
    # A guessed key as long as HS256 wants (PyJWT warns below 32 bytes): forged, not short.
    forged = jwt.encode(claims, "a-guessed-key-that-is-long-enough-for-hs256", algorithm="HS256")
    response = get(client, "/me", forged)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert get(client, "/me", "not-a-jwt").status_code == 401
    assert get(client, "/me").status_code == 401


def test_changing_the_password_ends_other_sessions(client, tokens):
    other_device = post(client, "/auth/login", {"email": "wanjiru@example.com",
                                                 "password": PASSWORD}).json()
    response = post(client, "/auth/password/change",
                    {"current_password": PASSWORD, "new_password": "another-long-secret-7"},
                    token=tokens["access_token"])
    assert response.status_code == 200
    assert get(client, "/me", other_device["access_token"]).status_code == 401
    assert get(client, "/me", response.json()["access_token"]).status_code == 200
    assert post(client, "/auth/login", {"email": "wanjiru@example.com",
                                         "password": "another-long-secret-7"}).status_code == 200


def test_a_wrong_current_password_changes_nothing(client, tokens):
    response = post(client, "/auth/password/change",
                    {"current_password": "wrong", "new_password": "another-long-secret-7"},
                    token=tokens["access_token"])
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "current_password"
    assert get(client, "/me", tokens["access_token"]).status_code == 200


def test_password_reset_answers_the_same_and_mails_only_real_accounts(
    client, tokens, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        known = post(client, "/auth/password/reset", {"email": "Wanjiru@example.com"})
        unknown = post(client, "/auth/password/reset", {"email": "ghost@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["wanjiru@example.com"]

    link = re.search(r"uid=(\S+)&token=(\S+)", mail.outbox[0].body)
    uid, token = link.group(1), link.group(2)
    done = post(client, "/auth/password/reset/confirm",
                {"uid": uid, "token": token, "new_password": "brand-new-secret-42"})
    assert done.status_code == 204
    assert get(client, "/me", tokens["access_token"]).status_code == 401, "sessions end"
    again = post(client, "/auth/password/reset/confirm",
                 {"uid": uid, "token": token, "new_password": "brand-new-secret-43"})
    assert again.status_code == 400, "a reset link works once"
    assert again.json()["code"] == "invalid_token"


def test_profile_updates_only_what_is_sent(client, tokens):
    response = client.patch("/api/v1/me", {"phone": "+254700000001", "accepts_marketing": True},
                            content_type="application/json",
                            HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert response.status_code == 200
    body = response.json()
    assert (body["phone"], body["accepts_marketing"], body["first_name"]) == (
        "+254700000001", True, "Wanjiru")


ADDRESS = {"first_name": "Wanjiru", "line1": "Moi Avenue 12", "city": "Nairobi",
           "country": "ke"}


def test_address_crud_and_defaults(client, tokens):
    token = tokens["access_token"]
    first = post(client, "/me/addresses", ADDRESS, token=token)
    assert first.status_code == 201
    assert first.json()["country"] == "KE"
    assert first.json()["is_default_shipping"] and first.json()["is_default_billing"]

    second = post(client, "/me/addresses", {**ADDRESS, "line1": "Kenyatta Ave 1",
                                            "is_default_shipping": True}, token=token).json()
    listed = get(client, "/me/addresses", token).json()
    defaults = {a["id"]: (a["is_default_shipping"], a["is_default_billing"]) for a in listed}
    assert defaults == {first.json()["id"]: (False, True), second["id"]: (True, False)}

    url = f"/api/v1/me/addresses/{second['id']}"
    patched = client.patch(url, {"city": "Mombasa"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert patched.json()["city"] == "Mombasa"
    assert client.delete(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 204
    assert Address.objects.count() == 1


def test_another_customers_address_is_not_found(client, tokens):
    mine = post(client, "/me/addresses", ADDRESS, token=tokens["access_token"]).json()
    other = register(client, email="juma@example.com").json()["access_token"]
    url = f"/api/v1/me/addresses/{mine['id']}"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {other}"}
    assert client.get(url, **auth).status_code == 404
    assert client.patch(url, {"city": "X"}, content_type="application/json",
                        **auth).status_code == 404
    assert client.delete(url, **auth).status_code == 404
    assert get(client, "/me/addresses", other).json() == []
    assert Address.objects.get().city == "Nairobi"


def test_a_bad_address_is_a_field_error(client, tokens):
    response = post(client, "/me/addresses", {**ADDRESS, "country": "Kenya"},
                    token=tokens["access_token"])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "country"


def test_log_in_is_rate_limited_per_client(client, settings):
    settings.AUTH_THROTTLE_RATES = {**settings.AUTH_THROTTLE_RATES, "login": "3/min"}
    answers = [post(client, "/auth/login", {"email": "a@example.com", "password": "x"})
               for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert answers[-1].json()["code"] == "throttled"
    assert int(answers[-1]["Retry-After"]) > 0


@pytest.mark.parametrize(("scope", "path", "body"), [
    ("register", "/auth/register", {"email": "x@example.com", "password": "short"}),
    ("password_reset", "/auth/password/reset", {"email": "ghost@example.com"}),
    ("password_reset", "/auth/password/reset/confirm",
     {"uid": "MQ", "token": "x-y", "new_password": "brand-new-secret-42"}),
    ("email_verification", "/auth/email/verify", {"uid": "MQ", "token": "x-y"}),
])
def test_register_reset_and_verification_are_rate_limited(client, settings, scope, path, body):
    settings.AUTH_THROTTLE_RATES = {**settings.AUTH_THROTTLE_RATES, scope: "2/min"}
    answers = [post(client, path, body) for _ in range(3)]
    assert [a.status_code for a in answers][-1] == 429
    assert all(a.status_code != 429 for a in answers[:2])
    assert answers[-1].json()["code"] == "throttled"


def test_staff_can_revoke_a_customers_session_from_the_admin(client, tokens, staff_client):
    family = TokenFamily.objects.get()
    response = staff_client.post("/admin/customers/tokenfamily/",
                                 {"action": "revoke", "_selected_action": [str(family.pk)]})
    assert response.status_code == 302
    assert get(client, "/me", tokens["access_token"]).status_code == 401


@pytest.mark.parametrize("url", ["/admin/customers/address/", "/admin/customers/tokenfamily/",
                                 "/admin/auth/user/"])
def test_customer_admin_pages_render(staff_client, tokens, url, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        assert staff_client.get(url).status_code == 200


@pytest.mark.parametrize("body", [
    "[null, null]",                   # not an object
    '"text"',
    '{"accepts_marketing": 0}',       # 0 is not false
    '{"phone": 254700000001}',        # a number is not a string
    '{"nickname": "x"}',              # an unknown field is a typo, not ignored
])
def test_a_malformed_body_is_refused_not_guessed(client, tokens, body):
    response = client.patch("/api/v1/me", body, content_type="application/json",
                            HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


def test_a_nul_character_in_a_body_is_a_field_error(client, tokens):
    response = client.post("/api/v1/me/addresses", {**ADDRESS, "city": "Nai\x00robi"},
                           content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "city"
    assert not Address.objects.exists()
