"""Schemathesis over the OpenAPI schema: no 500 and no answer that breaks the schema.

Checks: no 5xx, only documented status codes, responses that match their schema, and
schema-invalid requests rejected. Bounded and derandomized so the suite stays quick and
repeatable. Requests carry a customer's access token and an integration key with every scope
(the cart's, a guest's cart token), so generated cases reach past the authentication into the
routes' own validation.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from backoffice.catalog.models import Product, Variant
from backoffice.checkout.cart import guest_cart
from backoffice.customers.services import register_customer, start_session
from backoffice.integrations.models import Scope
from backoffice.integrations.services import create_api_key
from backoffice.wsgi import application

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


@pytest.fixture
def credentials(db):
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


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,  # no replay of earlier runs' examples: the same cases on every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)
@pytest.mark.django_db
def test_the_api_keeps_its_schema_and_never_fails(case, credentials):
    # "Schema-valid data is accepted" does not hold for business rules (a wrong current
    # password is a well-formed 400); every other check stays on.
    who = "guest" if case.path.startswith("/cart") else "customer"
    case.call_and_validate(headers=credentials[who], excluded_checks=[positive_data_acceptance])
