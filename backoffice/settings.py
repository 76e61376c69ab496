"""Settings for the back office, read from the environment (12-factor).

Every variable read here is listed in the README's settings table (a test keeps the two in step).
With nothing set, the project runs on an SQLite file under ``var/``, a file-based cache and the
django-q2 ORM broker, which needs nothing but Python packages. ``DATABASE_URL`` moves it to
PostgreSQL and ``REDIS_URL`` moves the cache and the job broker to Redis.

``DEBUG`` is off unless set: production is the default, and it passes ``manage.py check --deploy``.
"""

import hashlib
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no), not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# --- Core --------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
DATA_DIR = Path(env_str("DATA_DIR") or BASE_DIR / "var")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (50+ random characters), "
            "or set DEBUG=1 for a local development run."
        )
    # Development only: a fixed key would be a secret in code, so derive one per checkout.
    SECRET_KEY = "dev-only-" + str(BASE_DIR)
# Fernet keys for secrets stored in the database (plugin API keys...), comma-separated: the first
# encrypts, all decrypt (rotation: `manage.py rotate_plugin_secrets`). Unset, a key derived from
# SECRET_KEY is used; production should set its own (backoffice/crypto.py).
SECRETS_ENCRYPTION_KEYS = env_list("SECRETS_ENCRYPTION_KEYS")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

STORE_NAME = env_str("STORE_NAME", "Back office")
STORE_CURRENCY = env_str("STORE_CURRENCY", "USD").upper()
# ISO 3166 country: phone numbers written without a country code are read as this country's
# ("0712 345 678" is +254712345678 in KE).
STORE_COUNTRY = env_str("STORE_COUNTRY", "KE").upper()
# Where customers write back to (blank: DEFAULT_FROM_EMAIL).
STORE_REPLY_TO = env_str("STORE_REPLY_TO")
# Unpaid orders hold their stock this long, then a job cancels them (not cash on delivery).
ORDER_PAYMENT_WINDOW_MINUTES = env_int("ORDER_PAYMENT_WINDOW_MINUTES", 60)
# Payments. Where providers reach this back office (webhooks, M-Pesa's callback): the public
# https address of the API in production.
PUBLIC_URL = env_str("PUBLIC_URL", "http://localhost:8000").rstrip("/")
# Where a provider's hosted page sends the customer back ({order_number}, {payment_id} and
# {order_token} are filled in): pages of the storefront.
PAYMENT_RETURN_URL = env_str(
    "PAYMENT_RETURN_URL",
    "http://localhost:3000/orders/{order_number}/payment?payment={payment_id}",
)
PAYMENT_CANCEL_URL = env_str(
    "PAYMENT_CANCEL_URL",
    "http://localhost:3000/orders/{order_number}/payment?payment={payment_id}&cancelled=1",
)
# A payment still open this long is asked about at its provider (covers lost webhooks and
# M-Pesa callbacks that never come); after PAYMENT_ABANDON_AFTER_HOURS it is given up.
PAYMENT_RECONCILE_AFTER_MINUTES = env_int("PAYMENT_RECONCILE_AFTER_MINUTES", 5)
PAYMENT_ABANDON_AFTER_HOURS = env_int("PAYMENT_ABANDON_AFTER_HOURS", 24)
# Order numbers are this plus the order's id (10001, 10002...).
ORDER_NUMBER_START = env_int("ORDER_NUMBER_START", 10000)
# Unpublish products once every active variant is sold out (a scheduled job).
DEACTIVATE_SOLD_OUT_PRODUCTS = env_bool("DEACTIVATE_SOLD_OUT_PRODUCTS", True)

INSTALLED_APPS = [
    # unfold and its contrib apps must come before django.contrib.admin.
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.import_export",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "mptt",
    "import_export",
    "django_q",
    "cachalot",
    "ninja",
    "backoffice",
    "backoffice.catalog",
    "backoffice.inventory",
    "backoffice.plugin_host",
    "backoffice.customers",
    "backoffice.reviews",
    "backoffice.integrations",
    "backoffice.checkout",
    "backoffice.orders",
    "backoffice.payments",
    "backoffice.promotions",
    "backoffice.imports",
    "backoffice.notifications",
    # The audit trail and the staff roles (their post_migrate sync).
    "backoffice.audit",
    # The sales rollup and the reports (the dashboard reads them).
    "backoffice.reports",
    # OpenID Connect sign-in: staff to the admin, customers through the API.
    "backoffice.identity",
]

MIDDLEWARE = [
    "backoffice.observability.RequestIdMiddleware",
    "backoffice.observability.ServerTimingMiddleware",
    # Health probes are answered before the host check and the HTTPS redirect: load balancers
    # and kubelets call them by IP over plain HTTP.
    "backoffice.health.HealthCheckMiddleware",
    "backoffice.observability.NulCharacterGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "backoffice.wsgi.application"
ASGI_APPLICATION = "backoffice.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Before the apps' own: unfold (listed first) would otherwise shadow our admin templates.
        "DIRS": [BASE_DIR / "backoffice" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The job worker is a second process writing to the same file: take the write lock at BEGIN
    # and wait for it, and let readers work beside the writer (WAL), or writes fail with
    # "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

    # A fresh clone has no var/ (git ignores it): SQLite cannot create a file in a missing folder.
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache keys belong to one database: a cache (the file cache under DATA_DIR, or a shared Redis)
# can outlive the database it was filled from, and cachalot's cached rows, the storefront's
# answers or a plugin list from another database must never be read as this one's.
# One database spelt two ways (a default port left out, PgBouncer in front of the web processes
# but not the worker) must still share one prefix: the port is normalised, a path made absolute,
# and CACHE_KEY_PREFIX set in the environment wins over the computed one.
_database = DATABASES["default"]
_DEFAULT_PORTS = {"postgresql": "5432", "mysql": "3306"}
_engine = _database["ENGINE"].rsplit(".", 1)[-1]
_identity = (
    [_engine, str(Path(_database["NAME"]).resolve())]
    if _engine == "sqlite3" and _database["NAME"] not in ("", ":memory:")
    else [_engine, str(_database.get("HOST") or "").lower(),
          str(_database.get("PORT") or _DEFAULT_PORTS.get(_engine, "")),
          str(_database.get("NAME") or "")]
)
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX") or (
    "backoffice-" + hashlib.sha256("|".join(_identity).encode()).hexdigest()[:12]
)

# --- Cache, jobs and query caching ---------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        },
        # The storefront's cached answers: apart, so that their number (one per URL asked)
        # never pushes out throttling counters or query-cache marks.
        "storefront": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{CACHE_KEY_PREFIX}-storefront",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        },
    }
else:
    # Not local memory: the job worker and every web process must see one cache (cachalot's
    # invalidations, throttling counters). A directory on the machine is the simplest shared one.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"MAX_ENTRIES": 20000},
        },
        "storefront": {
            "BACKEND": "backoffice.cache.FileBasedCache",  # culls without listing every write
            "LOCATION": str(DATA_DIR / "storefront-cache"),
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"MAX_ENTRIES": 20000},
        },
    }

Q_CLUSTER = {
    "name": "backoffice",
    "label": "Jobs",
    "workers": env_int("Q_WORKERS", 2),
    # timeout must stay below retry, and failures must be acknowledged, or a failing task is
    # delivered again and again.
    "timeout": 300,
    "retry": 360,
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "poll": 1,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Only read-mostly apps may be cached: the catalog, and plugin settings (read on every call).
# Never stock (inventory), carts, orders, payments or django_q. An empty whitelist would make
# cachalot cache *every* table, so cachalot stays off until the list names something.
CACHALOT_ONLY_CACHABLE_APPS = frozenset({"catalog", "plugins"})
CACHALOT_UNCACHABLE_APPS = frozenset({"django_q", "sessions", "admin"})
CACHALOT_ENABLED = env_bool("CACHALOT_ENABLED", True) and bool(CACHALOT_ONLY_CACHABLE_APPS)
CACHALOT_TIMEOUT = 60 * 60
# Refuses a query on an uncachable table before compiling its SQL for a key (see the module).
CACHALOT_QUERY_KEYGEN = "backoffice.cachalot_keys.query_cache_key"

# --- Imports and exports -------------------------------------------------------------------

# Catalog imports run as jobs with their own log (ImportJob); an admin LogEntry per row would double
# the writes of a 100k-row import.
IMPORT_EXPORT_SKIP_ADMIN_LOG = True
IMPORT_EXPORT_USE_TRANSACTIONS = True
# A cell beginning with "=" would be a live formula in the merchant's spreadsheet: drop the "=".
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True

# --- Auth ----------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
# Signing in at /admin/login/ without ?next= lands on the dashboard, not Django's default
# /accounts/profile/ (which this project does not have).
LOGIN_REDIRECT_URL = "admin:index"

# Passwords for customers and (unless STAFF_PASSWORD_LOGIN is off) staff; single sign-on and the
# break-glass link keep their sessions through the second backend (backoffice.identity).
AUTHENTICATION_BACKENDS = [
    "backoffice.identity.backends.PasswordBackend",
    "backoffice.identity.backends.SignInBackend",
]
# Off once staff sign in through an OpenID Provider (a staff provider in the admin): the admin's
# password form goes away; `manage.py breakglass_login <superuser>` still lets one person in.
STAFF_PASSWORD_LOGIN = env_bool("STAFF_PASSWORD_LOGIN", True)

# Where the storefront's "choose a new password" page is; {uid} and {token} are filled in.
PASSWORD_RESET_URL = env_str(
    "PASSWORD_RESET_URL", "http://localhost:3000/reset-password?uid={uid}&token={token}"
)
EMAIL_VERIFICATION_URL = env_str(
    "EMAIL_VERIFICATION_URL", "http://localhost:3000/verify-email?uid={uid}&token={token}"
)
# The storefront's page of one order, linked from every order message ({order_number} and
# {order_token} are filled in; the token lets a guest open it). Blank: no link.
ORDER_STATUS_URL = env_str(
    "ORDER_STATUS_URL", "http://localhost:3000/orders/{order_number}?token={order_token}"
)
# The channels a customer hears on until they choose (guests always): each only where its
# plugin is active, the merchant's switch for the message is on and the order has the address.
NOTIFICATION_DEFAULT_CHANNELS = env_list("NOTIFICATION_DEFAULT_CHANNELS", "email,sms")

# --- Email ---------------------------------------------------------------------------------------

DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "store@localhost")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
# A mail server that hangs fails the send (retried later) instead of holding a worker.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20)
# Development prints emails to the console instead of sending them.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)

# --- Internationalisation ----------------------------------------------------------------------

LANGUAGE_CODE = env_str("LANGUAGE_CODE", "en-us")
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media files ----------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or DATA_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security ------------------------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that sets this header itself; otherwise a client could claim HTTPS.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^health/"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    # Off only for a local stack served over plain HTTP (check --deploy then says so).
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)

# The storefront is another origin: it may call the API, and nothing else.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-cart-token",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = ("x-request-id", "server-timing", "x-cache")

# --- Observability -------------------------------------------------------------------------------

SERVER_TIMING = env_bool("SERVER_TIMING", True)
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "json").lower()
if LOG_FORMAT not in {"json", "console"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'console', not {LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "backoffice.observability.RequestIdLogFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "console": {
            "format": "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s",
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "filters": ["request_id"],
            "formatter": LOG_FORMAT,
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default config gives these their own handlers; route them to ours, once.
        "django": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
        # runserver's access line repeats ours (which has the request id and timings).
        "django.server": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
        "django-q": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
    },
}

# --- Admin (django-unfold) -------------------------------------------------------------------

UNFOLD = {
    "SITE_TITLE": STORE_NAME,
    "SITE_HEADER": STORE_NAME,
    "SITE_SUBHEADER": _("Admin"),
    "SITE_URL": "/",
    "SITE_SYMBOL": "storefront",
    "SITE_FAVICONS": [
        {"rel": "icon", "type": "image/x-icon", "href": "backoffice.admin_navigation.favicon_url"},
    ],
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "ENVIRONMENT": "backoffice.admin_navigation.environment_label",
    "DASHBOARD_CALLBACK": "backoffice.dashboard.dashboard_callback",
    "COLORS": {
        "primary": {
            "50": "oklch(97.9% .021 166.113)",
            "100": "oklch(95% .052 163.051)",
            "200": "oklch(90.5% .093 164.15)",
            "300": "oklch(84.5% .143 164.978)",
            "400": "oklch(76.5% .177 163.223)",
            "500": "oklch(69.6% .17 162.48)",
            "600": "oklch(59.6% .145 163.225)",
            "700": "oklch(50.8% .118 165.612)",
            "800": "oklch(43.2% .095 166.913)",
            "900": "oklch(37.8% .077 168.94)",
            "950": "oklch(26.2% .051 172.552)",
        },
    },
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": True,
        "navigation": "backoffice.admin_navigation.sidebar_navigation",
    },
}

# --- Plugins ------------------------------------------------------------------------------------

# Entry-point names of the plugins to load (empty: all installed) and to never load.
PLUGINS_ALLOW = env_list("PLUGINS_ALLOW")
PLUGINS_BLOCK = env_list("PLUGINS_BLOCK")

# --- Storefront API ---------------------------------------------------------------------------

NINJA_PAGINATION_MAX_LIMIT = 100
# Seconds a public catalog answer (listing, product, categories) may be served from the cache;
# every catalog or stock write makes the next read miss anyway (backoffice/catalog/
# storefront_cache.py). 0 turns the response cache off.
STOREFRONT_CACHE_TIMEOUT = env_int("STOREFRONT_CACHE_TIMEOUT", 300)
if STOREFRONT_CACHE_TIMEOUT < 0:
    raise ImproperlyConfigured("STOREFRONT_CACHE_TIMEOUT must be 0 (off) or a number of seconds")
NINJA_PAGINATION_PER_PAGE = 24
# A listing the planner expects to hold more products than this answers PostgreSQL's estimate
# of its count (``count_exact: false``) instead of counting every matching row on each page;
# searches and smaller listings are always counted. 0: always count.
LISTING_EXACT_COUNT_UP_TO = env_int("LISTING_EXACT_COUNT_UP_TO", 10_000)
if LISTING_EXACT_COUNT_UP_TO < 0:
    raise ImproperlyConfigured("LISTING_EXACT_COUNT_UP_TO must be 0 (always count) or more")
# Per client address, on the routes an attacker would hammer.
AUTH_THROTTLE_RATES = {
    "login": env_str("THROTTLE_LOGIN", "10/min"),
    "register": env_str("THROTTLE_REGISTER", "10/hour"),
    "password_reset": env_str("THROTTLE_PASSWORD_RESET", "5/hour"),
    "email_verification": env_str("THROTTLE_EMAIL_VERIFICATION", "10/hour"),
    # Customers' sign-ins with an OpenID Provider (authorize and callback both count).
    "sign_in": env_str("THROTTLE_SIGN_IN", "30/min"),
    # Password attempts on the admin's login page, per client address.
    "staff_login": env_str("THROTTLE_STAFF_LOGIN", "10/min"),
}
# Trust exactly this many proxies' X-Forwarded-For entries when throttling by client address.
NINJA_NUM_PROXIES = env_int("NUM_PROXIES", 0)
