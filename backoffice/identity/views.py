"""Staff single sign-on to the admin: "Sign in with <provider>", the provider's callback, the
login page (passwords throttled, or switched off) and the logout (the provider's too, where its
discovery offers an end-session endpoint); the break-glass link of ``manage.py
breakglass_login``.

The sign-in's state, nonce and PKCE verifier wait in the Django session (server-side), keyed by
state, for ``SIGN_IN_TTL``.
"""

from __future__ import annotations

import time

from django.contrib import admin, messages
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from backoffice.identity import breakglass, client, services
from backoffice.identity.backends import SIGN_IN_BACKEND, staff_passwords_allowed
from backoffice.identity.client import SignInFailed
from backoffice.identity.models import IdentityProvider

SESSION_KEY = "sso_pending"
ID_TOKEN_KEY = "sso_id_token"  # noqa: S105 - a session key's name
PROVIDER_KEY = "sso_provider"
MAX_PENDING = 5  # sign-ins started in other tabs that are kept


def _safe_next(request: HttpRequest, url: str | None) -> str:
    if url and url_has_allowed_host_and_scheme(url, {request.get_host()},
                                               require_https=request.is_secure()):
        return url
    return reverse("admin:index")


def _provider_or_404(slug: str) -> IdentityProvider:
    provider = services.staff_provider(slug)
    if provider is None:
        raise Http404("No such sign-in provider.")
    return provider


def _start(request: HttpRequest, provider: IdentityProvider, *, link: bool) -> HttpResponse:
    redirect_uri = request.build_absolute_uri(reverse("sso-callback", args=[provider.slug]))
    try:
        made = client.authorization(provider, redirect_uri)
    except SignInFailed as exc:
        messages.error(request, str(exc))
        return redirect("admin:login")
    pending = {state: data for state, data in request.session.get(SESSION_KEY, {}).items()
               if data["expires"] > time.time()}
    pending[made.state] = {
        "provider": provider.pk, "nonce": made.nonce, "verifier": made.code_verifier,
        "redirect_uri": redirect_uri, "next": _safe_next(request, request.GET.get("next")),
        "link": request.user.pk if link else None,
        "expires": time.time() + services.SIGN_IN_TTL.total_seconds(),
    }
    request.session[SESSION_KEY] = dict(list(pending.items())[-MAX_PENDING:])
    return HttpResponseRedirect(made.url)


@never_cache
def sso_start(request: HttpRequest, slug: str) -> HttpResponse:
    """Send the browser to the provider."""
    return _start(request, _provider_or_404(slug), link=False)


@never_cache
def sso_link(request: HttpRequest, slug: str) -> HttpResponse:
    """A signed-in staff user links the provider's account to theirs (an existing account is
    never matched by email)."""
    if not (request.user.is_authenticated and request.user.is_staff):
        return redirect(f"{reverse('admin:login')}?next={request.path}")
    return _start(request, _provider_or_404(slug), link=True)


@never_cache
def sso_callback(request: HttpRequest, slug: str) -> HttpResponse:
    """The provider sends the browser back here with a code (or an error)."""
    provider = _provider_or_404(slug)
    pending = request.session.get(SESSION_KEY, {})
    data = pending.pop(request.GET.get("state", ""), None)
    request.session[SESSION_KEY] = pending
    try:
        if request.GET.get("error"):
            raise SignInFailed(request.GET["error"], f"{provider.name} did not sign you in "
                               f"({request.GET['error']}).")
        if data is None or data["provider"] != provider.pk or data["expires"] <= time.time():
            raise SignInFailed("invalid_state", "This sign-in expired or was started in "
                               "another browser; start again.")
        sign_in = client.complete(provider, code=request.GET.get("code", ""),
                                  redirect_uri=data["redirect_uri"],
                                  code_verifier=data["verifier"], nonce=data["nonce"])
        link_user = None
        if data["link"] is not None:
            if request.user.pk != data["link"]:
                raise SignInFailed("invalid_state", "Sign in again to link this account.")
            link_user = request.user
        user = services.staff_sign_in(provider, sign_in, link_user=link_user)
    except SignInFailed as exc:
        messages.error(request, str(exc))
        return redirect("admin:login")
    login(request, user, backend=SIGN_IN_BACKEND)
    request.session[PROVIDER_KEY] = provider.pk
    request.session[ID_TOKEN_KEY] = sign_in.id_token
    if link_user is not None:
        messages.success(request, f"{provider.name} is linked to your account.")
    return HttpResponseRedirect(data["next"])


def _throttled(request: HttpRequest) -> bool:
    from shop_api.auth import ClientAddressThrottle

    return not ClientAddressThrottle("staff_login").allow_request(request)


@never_cache
def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login page, with a button per staff provider; password attempts are
    throttled per client address, and refused when ``STAFF_PASSWORD_LOGIN`` is off."""
    providers = list(IdentityProvider.objects.filter(is_active=True, for_staff=True)
                     .values("slug", "name"))
    next_url = request.GET.get("next", "")
    for provider in providers:
        provider["url"] = reverse("sso-start", args=[provider["slug"]]) + (
            f"?{urlencode({'next': next_url})}" if next_url else "")
    context = {"sso_providers": providers, "password_login": staff_passwords_allowed()}
    if request.method == "POST":
        if not staff_passwords_allowed():
            messages.error(request, "Password sign-in is switched off for staff; use your "
                           "company's sign-in.")
            response = admin.site.login(_as_get(request), extra_context=context)
            response.status_code = 403
            return response
        if _throttled(request):
            messages.error(request, "Too many sign-in attempts; wait a minute and try again.")
            response = admin.site.login(_as_get(request), extra_context=context)
            response.status_code = 429
            return response
    return admin.site.login(request, extra_context=context)


def _as_get(request: HttpRequest) -> HttpRequest:
    request.method = "GET"
    return request


@require_POST
def admin_logout(request: HttpRequest) -> HttpResponse:
    """End the admin session, then the provider's where it offers an end-session endpoint."""
    provider_id = request.session.get(PROVIDER_KEY)
    id_token = request.session.get(ID_TOKEN_KEY)
    response = admin.site.logout(request)
    provider = IdentityProvider.objects.filter(pk=provider_id).first() if provider_id else None
    if provider is not None and id_token:
        url = client.end_session_url(
            provider, id_token=id_token,
            post_logout_redirect_uri=request.build_absolute_uri(reverse("admin:login")))
        if url:
            return HttpResponseRedirect(url)
    return response


@never_cache
def breakglass_login(request: HttpRequest, token: str) -> HttpResponse:
    """A one-time link printed by ``manage.py breakglass_login``: a superuser enters with no
    password and no provider (for when SSO is down and passwords are off)."""
    user = breakglass.user_for(token)
    if user is None:
        messages.error(request, "This break-glass link is not valid, was used, or expired.")
        return redirect("admin:login")
    login(request, user, backend=SIGN_IN_BACKEND)
    breakglass.record_use(user)
    return redirect("admin:index")


urlpatterns = [
    # Before admin.site.urls, so these answer /admin/login/ and /admin/logout/.
    path("admin/login/", admin_login),
    path("admin/logout/", admin_logout),
    path("admin/sso/<slug:slug>/", sso_start, name="sso-start"),
    path("admin/sso/<slug:slug>/link/", sso_link, name="sso-link"),
    path("admin/sso/<slug:slug>/callback/", sso_callback, name="sso-callback"),
    path("admin/breakglass/<str:token>/", breakglass_login, name="sso-breakglass"),
]
