from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static as static_url
from django.urls import path, re_path
from django.views.generic import RedirectView

from backoffice.identity.views import urlpatterns as identity_urls
from shop_api.api import api_urls, unknown_api_path


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico on every page; the icon is a static file (hashed name)."""
    return HttpResponseRedirect(static_url("favicon.ico"))


urlpatterns = [
    path("favicon.ico", favicon),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    *identity_urls,
    path("admin/", admin.site.urls),
    path("api/v1/", api_urls()),
    # Any other path under the API, newlines too (``.`` alone stops at one): the API's 404.
    re_path(r"^api/v1/(?P<rest>(?s:.*))$", unknown_api_path),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
