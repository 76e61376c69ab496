"""Schemathesis over the OpenAPI schema: no 500 and no answer that breaks the schema.

Checks: no 5xx, only documented status codes, responses that match their schema,
schema-invalid requests rejected, and no schema-valid request refused as malformed
(``tests/schemathesis_checks.py``). Bounded and derandomized so the suite stays quick and
repeatable: 25 examples an operation. Requests carry a customer's access token and an
integration key with every scope (the cart's, a guest's cart token), so generated cases reach
past the authentication into the routes' own validation.

A longer run is opt-in: ``SCHEMATHESIS_EXAMPLES=30`` (examples an operation; ``SCHEMATHESIS_SEED``
for other cases than the fixed ones) runs the test above with that many, and runs the whole
API through ``st run`` against a live server too: every phase (examples, coverage, fuzzing,
stateful) and every check (``--checks all``), failures counted once each::

    SCHEMATHESIS_EXAMPLES=30 pytest tests/test_api_schema_fuzz.py -s
"""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, seed, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from backoffice.catalog.models import Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.cart import guest_cart
from backoffice.checkout.services import CheckoutRequest, place_order
from backoffice.customers import services as customer_services
from backoffice.customers.models import Address
from backoffice.customers.services import register_customer, start_session
from backoffice.integrations.models import Scope
from backoffice.integrations.services import create_api_key
from backoffice.inventory.services import Actor, adjust_stock
from backoffice.payments import services as payments
from backoffice.plugin_host.services import activate_plugins
from backoffice.reviews.models import Review
from backoffice.wsgi import application
from tests import schemathesis_checks  # noqa: F401 - registers the API's own check

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES") or 25)
SEED = os.environ.get("SCHEMATHESIS_SEED") or None

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)
# Unknown query parameters are ignored on purpose (cache-busters, newer clients): don't invent
# them. Every other kind of invalid input is still generated.
schema.config.generation.update(allow_extra_parameters=False)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Calls go straight to the WSGI handler, which closes "old" database connections when a
    request ends; that would close the test's own connection, inside its transaction. Django's
    test client disconnects the same receivers for the same reason."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _credentials():
    user = register_customer(email="fuzz@example.com", password="correct-horse-battery-9")
    product = Product.objects.create(name="Fuzz", slug="fuzz")
    Variant.objects.create(product=product, sku="FUZZ-1", price="10.00")
    _, key = create_api_key(name="fuzz", scopes=Scope.values)
    return {
        "customer": {
            "Authorization": f"Bearer {start_session(user).access_token}",
            "X-API-Key": key,
        },
        # The cart's routes take a bearer token *or* a cart token: fuzz the guest's way (the
        # customer's is the same code after authentication).
        "guest": {"X-Cart-Token": str(guest_cart(None, create=True).token)},
    }


@pytest.fixture
def credentials(db):
    return _credentials()


def _seeded(test):
    return seed(int(SEED))(test) if SEED else test


@schema.parametrize()
@_seeded
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEED is None,
    database=None,  # no replay of earlier runs' examples: the same cases on every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)
@pytest.mark.django_db
def test_the_api_keeps_its_schema_and_never_fails(case, credentials):
    # "Schema-valid data is accepted" does not hold for business rules (a wrong current
    # password is a well-formed 400); every other check stays on, and the API's own
    # schema_valid_requests_pass_validation still fails a schema-valid request refused as
    # malformed.
    who = "guest" if case.path.startswith("/cart") else "customer"
    case.call_and_validate(headers=credentials[who], excluded_checks=[positive_data_acceptance])


LONG_RUN = bool(os.environ.get("SCHEMATHESIS_EXAMPLES"))
ADDRESS = {"first_name": "Amina", "line1": "Moi Avenue 1", "city": "Nairobi", "country": "KE"}


def _a_store_to_fuzz() -> dict:
    """What the schema's examples name (the SKU TEE-M in the warehouse "main", the product
    "tee", the flat-rate shipping and manual payment methods), a customer with a cart line, an
    address, a review and orders, and an integration key with every scope. The customer's
    password is not the examples': the example of a password change must not end the session
    every other request runs in."""
    activate_plugins(["flat_rate_shipping", "manual_payment"])
    product = Product.objects.create(name="Tee", slug="tee")
    tee = Variant.objects.create(product=product, sku="TEE-M", name="M", price="75.00")
    adjust_stock(variant_id=tee.pk, quantity_change=1000)
    user = register_customer(email="fuzz@example.com", password="a-password-of-the-fuzzer-3",
                             first_name="Fuzz")
    address = Address.objects.create(user=user, **ADDRESS)
    review = Review.objects.create(product=product, user=user, rating=4)
    orders = []
    for key in ("unpaid", "paid"):
        cart = carts.customer_cart(user)
        carts.add_to_cart(cart=cart, sku="TEE-M", quantity=1)
        order, _ = place_order(cart, CheckoutRequest(
            shipping_address=ADDRESS, shipping_method="flat_rate", email=user.email,
            payment_method="manual"), user=user, idempotency_key=key)
        orders.append(order)
    payments.record_manual_payment(orders[1], actor=Actor(label="staff"))
    line = carts.add_to_cart(cart=carts.customer_cart(user), sku="TEE-M", quantity=1)
    _, key = create_api_key(name="fuzz", scopes=Scope.values)
    return {
        "headers": {"Authorization": f"Bearer {start_session(user).access_token}",
                    "X-API-Key": key},
        # Path parameters naming what exists, drawn half the time (the other half generated).
        "dictionaries": {
            "number": [order.number for order in orders],
            "token": [str(order.token) for order in orders],
            "slug": ["tee"], "address_id": [address.pk], "review_id": [review.pk],
            "line_id": [line.pk],
        },
    }


# Business rules no schema can say: these operations refuse some well-formed requests with a 400
# or a 422 of a code of their own (an unknown SKU, an empty cart, a wrong current password, a
# weak password, a stale link). ``positive_data_acceptance`` takes those statuses for them;
# ``schema_valid_requests_pass_validation`` still fails any schema-valid request that the API's
# validation refuses, on every operation.
BUSINESS_RULES = {
    "POST /api/v1/auth/register": [400],  # weak_password, invalid_email
    "POST /api/v1/auth/password/change": [400],  # invalid_password, weak_password
    "DELETE /api/v1/me": [400],  # password_required, invalid_password
    "POST /api/v1/auth/password/reset/confirm": [400],  # invalid_token, weak_password
    "POST /api/v1/auth/email/verify": [400],  # invalid_token
    "POST /api/v1/cart/lines": [400],  # not_for_sale (an unknown SKU), invalid_quantity
    "POST /api/v1/checkout/quote": [400],  # empty_cart, no such shipping or payment method
    "POST /api/v1/checkout": [400],  # empty_cart, no such shipping or payment method
    "PUT /api/v1/integrations/stock": [422],  # unknown_sku, unknown_warehouse
    "POST /api/v1/integrations/products": [422],  # the import engine's (a SKU twice...)
    "POST /api/v1/integrations/orders/{number}/shipments": [422],  # unknown_line
}
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis's default


def _cli_config(dictionaries: dict) -> str:
    # Unknown query parameters are ignored on purpose, as above.
    lines = ["[generation]", "allow-extra-parameters = false", ""]
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}'
              for name in dictionaries]
    for operation, statuses in BUSINESS_RULES.items():
        expected = json.dumps([*ACCEPTED, *map(str, statuses)])
        lines += ["", "[[operations]]", f"include-name = {json.dumps(operation)}",
                  f"checks.positive_data_acceptance.expected-statuses = {expected}"]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not LONG_RUN, reason="opt-in: SCHEMATHESIS_EXAMPLES=30")
@pytest.mark.django_db(transaction=True)
def test_the_whole_api_with_every_check(live_server, settings, tmp_path, monkeypatch):
    """``st run --checks all`` over every operation, against a live server: the figures (operations,
    test cases, distinct failures) are printed, and the run must find no failure."""
    # An access token lasts 15 minutes; a long run takes longer.
    monkeypatch.setattr(customer_services, "ACCESS_TOKEN_LIFETIME", timedelta(hours=12))
    # The throttles would answer most logins and registrations with a 429: untested logic.
    settings.AUTH_THROTTLE_RATES = {scope: "100000/min" for scope in settings.AUTH_THROTTLE_RATES}
    store = _a_store_to_fuzz()
    config = tmp_path / "schemathesis.toml"
    config.write_text(_cli_config(store["dictionaries"]))
    report = tmp_path / "report.json"
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(config), "--no-color",
        "run", f"{live_server.url}/api/v1/openapi.json", "--checks", "all",
        "--max-examples", str(EXAMPLES), "--seed", SEED or "0", "--workers", "1",
        "--report", "json", "--report-json-path", str(report),
        *[arg for name, value in store["headers"].items() for arg in ("-H", f"{name}: {value}")],
    ]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_checks",
                   "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    # In the test's own folder: schemathesis keeps a cache (and replays its crashes) where it runs.
    run = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False,
                         env=environment, cwd=tmp_path)
    print(run.stdout, run.stderr[-5000:])
    assert report.exists(), run.stderr
    summary = json.loads(report.read_text())
    print(json.dumps({key: summary[key] for key in ("operations", "test_cases")}, indent=1))
    assert run.returncode == 0, run.stdout[-20000:]
