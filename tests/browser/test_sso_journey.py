"""Staff single sign-on in a real browser: the admin's "Sign in with Corp" button, the OpenID
Provider's own login and consent pages (panva's oidc-provider, tests/oidc_provider.py), back to
the dashboard in the mapped role; then the admin's logout ends the provider's session too."""

from __future__ import annotations

import pytest

from tests import oidc_provider as harness


@pytest.fixture
def corp(live_server, make_staff, migrated_state, oidc_provider_factory):
    """The provider, with a client whose redirect URIs are this live server's, and the staff
    sign-in "Corp" configured in the back office (the Fulfilment clerk role by group)."""
    from backoffice.identity.models import IdentityProvider

    make_staff("Fulfilment clerk", [])  # puts the role's group back after the last flush
    base = live_server.url
    idp = oidc_provider_factory(clients=[{
        "client_id": "backoffice-admin", "client_secret": "admin-secret-0123456789abcdef",
        "redirect_uris": [f"{base}/admin/sso/corp/callback/"],
        "post_logout_redirect_uris": [f"{base}/admin/login/"],
        "token_endpoint_auth_method": "client_secret_basic",
    }])
    provider = IdentityProvider(
        name="Corp", slug="corp", issuer=idp.issuer, client_id="backoffice-admin",
        scopes="openid email profile groups", for_staff=True,
        allowed_email_domains="corp.example",
        group_mapping={"backoffice-staff": "Fulfilment clerk"})
    provider.client_secret = "admin-secret-0123456789abcdef"
    provider.save()
    return idp


def test_staff_signs_in_with_the_company_provider_and_out_of_both(page, corp):
    assert harness.ACCOUNTS["alice"]["groups"] == ["backoffice-staff"]
    page.open("/admin/login/")
    page.click(page.link("Sign in with Corp"))
    # The provider's pages: its login form, then its consent.
    assert page.driver.current_url.startswith(corp.issuer)
    page.fill("login", "alice")
    page.fill("password", "whatever the provider wants")
    page.submit("button[type=submit]")
    page.see("Authorize")
    page.submit("button[autofocus], button[type=submit]")
    # Back in the admin, as the new staff account, in the mapped role only.
    page.wait(lambda d: page.path().startswith("/admin/") and "/login/" not in page.path(),
              "the admin did not open after the sign-in")
    page.see("Orders")
    from django.contrib.auth import get_user_model

    alice = get_user_model().objects.get(email="alice@corp.example")
    assert [g.name for g in alice.groups.all()] == ["Fulfilment clerk"]
    assert not alice.is_superuser
    assert page.status_of("/admin/orders/order/") == 200
    assert page.status_of("/admin/plugins/pluginconfig/") == 403

    # Log out: the admin's session ends, then the provider asks to end its own.
    # (The form sits in the user menu; submitted as its button would.)
    page.find("form#logout-form", visible=False)
    with page.navigation():
        page.driver.execute_script("document.getElementById('logout-form').requestSubmit()")
    assert page.driver.current_url.startswith(corp.issuer)
    page.submit("button[autofocus], button[type=submit]")
    page.wait(lambda d: page.path().startswith("/admin/login/"),
              "the provider did not send the browser back to the login page")
    page.open("/admin/")
    assert page.path().startswith("/admin/login/")  # signed out of the admin
