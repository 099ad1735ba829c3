"""Schemathesis over the whole OpenAPI document: no server errors, responses match it.

Every operation in the document is fuzzed, so routes that later issues add are covered
without touching this file.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.factories import bearer, make_tenant, make_user, open_session

# Schema-valid input may still be refused for reasons a JSON schema cannot state (a
# GSTIN check digit, a phone number's real ranges): that is a 422, not a defect.
SEMANTIC_REFUSALS_ALLOWED = [positive_data_acceptance]


def all_operations(schema: Any) -> list[Any]:
    """Every operation of the document; one the loader cannot read fails the test."""
    return [result.ok() for result in schema.get_all_operations()]


def test_api_conforms_to_its_openapi_document(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    operations = all_operations(schema)
    assert len(operations) >= 3  # health, readiness, clinics at least
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            case.call_and_validate(excluded_checks=SEMANTIC_REFUSALS_ALLOWED)

        fuzz()


def test_api_conforms_for_a_signed_in_admin(app: FastAPI, db: Any, ident: Any) -> None:
    """The same, past the sign-in check: every case carries a fresh admin session."""
    clinic = make_tenant(db, "Fuzz Clinic")
    admin = make_user(db, ident, clinic, "admin")
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    statuses: list[int] = []
    for operation in all_operations(schema):

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            headers = bearer(open_session(db, ident, admin))
            response = case.call_and_validate(
                headers=headers, excluded_checks=SEMANTIC_REFUSALS_ALLOWED
            )
            statuses.append(response.status_code)

        fuzz()
    # The admin got past the door: successes and not-founds, not only 401s.
    assert {200, 404} <= set(statuses)


def test_the_fuzzer_notices_a_response_that_breaks_the_document() -> None:
    """Guards the guard: an operation answering outside its schema must fail the check."""
    import traceback

    import pytest
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel

    class Count(BaseModel):
        count: int

    broken = FastAPI(openapi_url="/openapi.json")

    @broken.get("/count", response_model=Count)
    def count() -> JSONResponse:
        return JSONResponse({"count": "many"})

    schema = schemathesis.openapi.from_asgi("/openapi.json", broken)
    [operation] = all_operations(schema)

    @given(case=operation.as_strategy())
    @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        case.call_and_validate()

    with pytest.raises(BaseException) as failure:  # noqa: PT011 - a group; checked below
        fuzz()
    assert "Response violates schema" in "".join(traceback.format_exception(failure.value))
