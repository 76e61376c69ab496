"""A schemathesis check of this API's own: a request the schema calls valid is never refused as
malformed.

schemathesis's ``positive_data_acceptance`` refuses any 400 or 422 to a schema-valid request, and
so also the API's business rules (an unknown SKU, an empty cart, a wrong current password), which
no schema can say. This check tells the two apart by what the API answers: a request refused by
its validation is ``{"detail": "The request is not valid.", "code": "validation_error"}`` (422),
or the 400 of a NUL character in the URL; business rules have codes of their own. Where an
operation has business rules, the long run (``tests/test_api_schema_fuzz.py``) lets
``positive_data_acceptance`` take their statuses, and this check still catches any schema-valid
request the validation refuses, on every operation. Imported there (the in-process run), and
loaded by ``st run`` as ``SCHEMATHESIS_HOOKS=tests.schemathesis_checks``.
"""

import json

import schemathesis
from schemathesis.specs.openapi.checks import (
    requires_case_meta,
    skips_on_unexpected_http_status,
)

REFUSED_AS_MALFORMED = {
    (422, "The request is not valid."),
    (400, "The URL must not contain NUL characters."),
}


@schemathesis.check
@skips_on_unexpected_http_status
@requires_case_meta
def schema_valid_requests_pass_validation(ctx, response, case):
    """A schema-valid request is not refused by the API's request validation."""
    if not case.meta.generation.mode.is_positive:
        return None
    if response.status_code not in {status for status, _ in REFUSED_AS_MALFORMED}:
        return None
    try:
        detail = json.loads(response.content).get("detail")
    except (ValueError, AttributeError):
        return None
    if (response.status_code, detail) in REFUSED_AS_MALFORMED:
        raise AssertionError(
            "The schema calls this request valid, but the API refused it as malformed: "
            f"{response.status_code} {response.content[:500]!r}"
        )
    return None
