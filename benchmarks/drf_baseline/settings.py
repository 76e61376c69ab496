"""The back office's own settings plus DRF and django-filter, for the baseline listing only."""

from backoffice.settings import *  # noqa: F403
from backoffice.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework", "django_filters"]
ROOT_URLCONF = "benchmarks.drf_baseline.urls"

REST_FRAMEWORK = {
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 24,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # A public catalog: no session or CSRF machinery on reads.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
}

# The baseline builds every answer from the database, whatever the environment says: no query
# cache (the benchmark's verdicts compare database paths).
CACHALOT_ENABLED = False
