# The two commands: `make demo` starts the back office, `make test` runs the whole suite.
# Everything else here is what those two need.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
ADDR ?= 127.0.0.1:8000

.PHONY: demo test install lint check-migrations clean bench-api bench-checkout bench-webhooks \
	bench-notifications bench-reports bench-admin-search fuzz-api chromium oidc-provider

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=python3.x)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,redis]"
	@touch $(STAMP)

install: $(STAMP) $(TEST_STAMP) chromium oidc-provider

# Debian's Chromium and its driver for the browser tests (tests/browser), which Selenium drives
# without downloading anything. Installed with apt when missing and running as root (CI);
# otherwise said here, and the browser tests skip (fail under CI=true). `make demo` needs neither.
CHROMIUM_PACKAGES := chromium chromium-driver
chromium:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing $(CHROMIUM_PACKAGES) for the browser tests (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq $(CHROMIUM_PACKAGES) \
			|| echo "WARNING: apt-get could not install $(CHROMIUM_PACKAGES): the browser tests will not run"; \
	else \
		echo "NOTE: /usr/bin/chromium or /usr/bin/chromedriver is missing and this is not root:" \
			"the browser tests will be skipped (sudo apt-get install -y $(CHROMIUM_PACKAGES))"; \
	fi

# The real OpenID Provider of the SSO tests (tests/oidc: panva's oidc-provider on Node.js 20+),
# installed from its lock file when missing or older than it. Without npm, said here, and those
# tests skip (fail under CI=true). npm writes node_modules/.package-lock.json last.
OIDC_DIR := tests/oidc
oidc-provider:
	@if [ $(OIDC_DIR)/node_modules/.package-lock.json -nt $(OIDC_DIR)/package-lock.json ]; then :; \
	elif command -v npm >/dev/null; then \
		echo "Installing the OpenID Provider for the SSO tests (npm ci --prefix $(OIDC_DIR))"; \
		npm ci --prefix $(OIDC_DIR) --no-audit --no-fund --loglevel=error >/dev/null \
			|| echo "WARNING: npm ci failed: the OpenID Provider tests will not run"; \
	else \
		echo "NOTE: npm is missing: the OpenID Provider tests will be skipped (fail under CI=true);" \
			"install Node.js 20+ with npm, then make oidc-provider"; \
	fi

# The example third-party plugin, installed through its own package as a stranger's would be,
# for the tests that prove that path.
$(TEST_STAMP): $(STAMP) examples/backoffice-webhook-notifier/pyproject.toml
	$(PY) -m pip install --quiet -e examples/backoffice-webhook-notifier
	@touch $(TEST_STAMP)

## Start the back office on SQLite with demo data: web server and job worker, Ctrl-C stops both.
demo: export DEBUG ?= 1
demo: export LOG_FORMAT ?= console
demo: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup --addr $(ADDR)
	$(PY) manage.py serve --addr $(ADDR)

## Run the whole test suite (SQLite by default; set DATABASE_URL for PostgreSQL).
test: $(STAMP) $(TEST_STAMP) chromium oidc-provider
	$(PY) -m pytest $(PYTEST_ARGS)

## Import benchmark: 100k Shopify variant rows, ours vs django-import-export (prints numbers).
## SQLite by default; DATABASE_URL=postgres://... runs it in a fresh temporary database there.
bench: $(STAMP)
	$(PY) benchmarks/import_bench.py $(BENCH_ARGS)

## The long schemathesis run: the suite's with 30 examples an operation (FUZZ_EXAMPLES), then
## every operation, phase and check (`st run --checks all`) against a live server; SCHEMATHESIS_SEED=1 for other
## cases, DATABASE_URL=postgres://... for PostgreSQL. Prints the figures; fails on any failure.
FUZZ_EXAMPLES ?= 30
fuzz-api: $(STAMP) $(TEST_STAMP)
	SCHEMATHESIS_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/test_api_schema_fuzz.py -s \
		$(PYTEST_ARGS)

## API benchmark: the storefront listing and detail under wrk on the database path (response cache
## and cachalot off, no URL asked twice), ours vs plain DRF alternating; prints numbers and a
## PASS/FAIL verdict per goal. Needs a PostgreSQL database holding a catalog, e.g.
## DATABASE_URL=postgres://postgres@127.0.0.1:5432/backoffice_a make bench-api
## or a fresh one made and dropped: BENCH_ARGS="--catalog 100000" with DATABASE_URL=.../postgres
bench-api: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/api_bench.py $(BENCH_ARGS)

## Checkout benchmark: POST /api/v1/checkout under gunicorn, a hot-SKU race (200 buyers, 50 units)
## and 2,000 spread checkouts (prints numbers; exits non-zero if an invariant breaks). PostgreSQL
## only: a fresh temporary database on that server, dropped at the end, e.g.
## DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench-checkout
bench-checkout: $(STAMP)
	$(PY) benchmarks/checkout_bench.py $(BENCH_ARGS)

## Webhook benchmark: Stripe webhooks taken in (new and replayed) through gunicorn with DEBUG=0,
## and processed by the job (prints numbers and a PASS/FAIL verdict; BENCH_ARGS=--in-process for
## the test client). SQLite in a temporary folder, or a fresh database on DATABASE_URL's server.
bench-webhooks: $(STAMP)
	$(PY) benchmarks/webhook_bench.py $(BENCH_ARGS)

## Notifications benchmark: 10,000 order confirmations sent by two django-q2 workers to a local
## SMTP server (messages/s, latency, CPU), then checkout under gunicorn with notifications on and
## off, alternating (prints numbers; exits non-zero if an invariant breaks). Fresh PostgreSQL
## databases on DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432/postgres), or
## BENCH_ARGS=--sqlite; Redis db 14 as broker and cache when it answers, else the ORM broker.
bench-notifications: $(STAMP)
	$(PY) benchmarks/notifications_bench.py $(BENCH_ARGS)

## Dashboard and reports benchmark: 100k products and 200k orders over a year (COPY), the rollup
## built from nothing, then the dashboard and every report page as a superuser: queries, database
## time and response time per page against the budget (12 queries, 300 ms of database time).
## PostgreSQL only: a fresh temporary database on that server, dropped at the end, e.g.
## DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench-reports
bench-reports: $(STAMP)
	$(PY) benchmarks/reports_bench.py $(BENCH_ARGS)

## Admin search benchmark: the reports benchmark's data (100k products, 200k orders), then the
## variant, stock, order and product searches (exact SKU, prefix, middle part, number, email,
## phone, name) as a superuser, one distinct term a request: p50/max response and database time,
## queries, PASS/FAIL against 300 ms. PostgreSQL only: a fresh temporary database on
## DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432/postgres), dropped at the end.
bench-admin-search: $(STAMP)
	$(PY) benchmarks/admin_search_bench.py $(BENCH_ARGS)

## Integration API benchmark: an ERP pushing 100k variants (50k products, batches of 500) through
## POST /api/v1/integrations/products with the Django test client in-process: upserts and variants
## per second, seconds per batch p50/max, queries per batch, PASS/FAIL against 100k variants in
## under a minute; then a resend (unchanged, new prices) and a full cursor read-back. PostgreSQL
## only: a fresh temporary database on DATABASE_URL's server, dropped at the end.
## BENCH_ARGS="--variants 20000" make bench-integrations    # a smaller run
.PHONY: bench-integrations
bench-integrations: $(STAMP)
	$(PY) benchmarks/integration_bench.py $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

check-migrations: $(STAMP)
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
