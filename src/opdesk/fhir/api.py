"""FHIR R4 read API: ``GET /fhir/R4/<Type>/<id>`` for each resource OPDesk makes, and
``GET /fhir/R4/Patient/<id>/$everything``.

One route per type, each declaring its own permission (a generic ``/{type}/{id}`` route
could declare only one). Answers are ``application/fhir+json``: the resource's JSON without
empty fields, never cached. The id path parameters carry the names the rest of the API
uses (``patient_id``, ``visit_id``...), so the generated role and other-clinic tests cover
these routes too.

Refusals keep the project's statuses (401 not signed in, 403 a role without the action,
404 an unknown or another clinic's id, 422 a malformed id naming the parameter), with an
OperationOutcome body instead of a problem document, as FHIR clients expect. They are
written by :class:`FhirRoute`, for these routes alone: the rest of the app keeps its
problem documents and pages. What happens outside a route (an address no route matches,
the database being away) is still answered by the app's own handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue
from fhir.resources.R4B.resource import Resource
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from opdesk.context import RequestContext
from opdesk.documents.deps import Store
from opdesk.documents.storage import Storage
from opdesk.errors import DomainError, InvalidInput, TooManyRequests, Unauthorized
from opdesk.fhir import export, sources
from opdesk.identity.sessions import Principal
from opdesk.security.crypto import FieldCipher
from opdesk.web.deps import AppSettings, Cipher, Ctx, DbSession, acting
from opdesk.web.problems import field_name
from opdesk.web.templating import clean_message

FHIR_JSON = "application/fhir+json"

# The OperationOutcome issue type (http://hl7.org/fhir/issue-type) of each status.
ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    422: "invalid",
    429: "throttled",
}


class FhirJSONResponse(JSONResponse):
    """Declares the media type in the OpenAPI document (routes answer with :func:`fhir`)."""

    media_type = FHIR_JSON


def fhir(
    resource: Resource, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The resource's JSON (no empty fields), as a FHIR server sends it."""
    return Response(
        resource.model_dump_json(exclude_none=True),
        status_code=status_code,
        media_type=FHIR_JSON,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def outcome(status: int, issues: Sequence[tuple[str, str | None]]) -> OperationOutcome:
    """An OperationOutcome of errors: ``(what went wrong, the parameter at fault)`` each."""
    code = ISSUE_TYPES.get(status, "processing")
    return OperationOutcome(
        issue=[
            OperationOutcomeIssue(
                severity="error",
                code=code,
                diagnostics=said,
                expression=[where] if where else None,
            )
            for said, where in issues
        ]
    )


def refused(exc: DomainError) -> Response:
    issues: list[tuple[str, str | None]] = [(exc.detail, None)]
    if isinstance(exc, InvalidInput):
        issues = [(f"{e.field}: {e.reason}", e.field) for e in exc.errors]
    headers = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after.total_seconds()) + 1)
    return fhir(outcome(exc.status, issues), exc.status, headers)


def invalid(exc: RequestValidationError) -> Response:
    issues: list[tuple[str, str | None]] = []
    for error in exc.errors():
        name = field_name(tuple(error["loc"]))
        issues.append((f"{name}: {clean_message(error['msg'])}", name))
    return fhir(outcome(422, issues), 422)


class FhirRoute(APIRoute):
    """A route whose refusals are OperationOutcomes.

    The refusal is caught inside the route's handler, so the request's transaction then
    ends as after an answer (it commits). These routes only read, and the one write
    (``$everything``'s audit event) is their last step: there is never anything of a
    refused request to commit.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handle(request)
            except DomainError as exc:
                return refused(exc)
            except RequestValidationError as exc:
                return invalid(exc)
            except StarletteHTTPException as exc:
                said = str(exc.detail)
                return fhir(outcome(exc.status_code, [(said, None)]), exc.status_code)

        return answer


OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {"type": "array", "items": {"type": "object"}},
    },
}
REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"description": described, "content": {FHIR_JSON: {"schema": OUTCOME_SCHEMA}}}
    for status, described in (
        (401, "Sign-in required (OperationOutcome)"),
        (403, "Not allowed (OperationOutcome)"),
        (404, "Not found: an unknown id, or another clinic's (OperationOutcome)"),
        (422, "Invalid id; the issue's expression names the parameter (OperationOutcome)"),
    )
}


def found(kind: str, what: str) -> dict[int | str, dict[str, Any]]:
    """The 200 answer of a read of ``kind``, for the OpenAPI document."""
    schema = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [kind]}},
    }
    return {200: {"description": what, "content": {FHIR_JSON: {"schema": schema}}}}


router = APIRouter(
    prefix="/fhir/R4",
    tags=["fhir"],
    route_class=FhirRoute,
    default_response_class=FhirJSONResponse,
    responses=REFUSALS,
)


def _read(
    session: Session,
    cipher: FieldCipher,
    ctx: RequestContext,
    storage: Storage,
    kind: str,
    id_: uuid.UUID,
) -> Response:
    return fhir(sources.resource(session, cipher, ctx, kind, id_, storage=storage))


@router.get("/Patient/{patient_id}", responses=found("Patient", "The patient"))
def read_patient(
    patient_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "Patient", patient_id)


@router.get(
    "/Patient/{patient_id}/$everything",
    responses=found("Bundle", "Every resource of the patient, as a searchset Bundle"),
)
def patient_everything(
    patient_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:export")],
    cipher: Cipher,
    storage: Store,
    settings: AppSettings,
) -> Response:
    """Everything the clinic hands out about the patient (visit diagnoses once signed,
    issued prescriptions, reviewed results), as the patient's data export does; each
    call is recorded in the audit trail.
    """
    answer = export.everything(
        session, cipher, ctx, patient_id, storage=storage, base_url=settings.base_url
    )
    return fhir(answer)


@router.get("/Practitioner/{doctor_id}", responses=found("Practitioner", "A doctor"))
def read_practitioner(
    doctor_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("clinic:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "Practitioner", doctor_id)


@router.get("/Organization/{clinic_id}", responses=found("Organization", "Your clinic"))
def read_organization(
    clinic_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("clinic:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    """Only the signed-in clinic's own id: any other clinic's is 404."""
    return _read(session, cipher, ctx, storage, "Organization", clinic_id)


@router.get("/Appointment/{appointment_id}", responses=found("Appointment", "An appointment"))
def read_appointment(
    appointment_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("appointments:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "Appointment", appointment_id)


@router.get("/Encounter/{visit_id}", responses=found("Encounter", "A visit"))
def read_encounter(
    visit_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("visits:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "Encounter", visit_id)


@router.get("/Condition/{diagnosis_id}", responses=found("Condition", "A visit's diagnosis"))
def read_condition(
    diagnosis_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("visits:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "Condition", diagnosis_id)


@router.get("/Observation/{vital_id}", responses=found("Observation", "A vital sign"))
def read_observation(
    vital_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("vitals:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    """A blood pressure is one panel, under its systolic reading's id."""
    return _read(session, cipher, ctx, storage, "Observation", vital_id)


@router.get(
    "/MedicationRequest/{medication_request_id}",
    responses=found("MedicationRequest", "One medicine of a prescription"),
)
def read_medication_request(
    medication_request_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("prescriptions:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "MedicationRequest", medication_request_id)


@router.get(
    "/ServiceRequest/{service_request_id}",
    responses=found("ServiceRequest", "One test of a lab, imaging or procedure order"),
)
def read_service_request(
    service_request_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("orders:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "ServiceRequest", service_request_id)


@router.get(
    "/DiagnosticReport/{order_id}",
    responses=found("DiagnosticReport", "The report on a lab or imaging order"),
)
def read_diagnostic_report(
    order_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("orders:results")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "DiagnosticReport", order_id)


@router.get(
    "/DocumentReference/{document_id}",
    responses=found("DocumentReference", "A document of the patient, its file inline"),
)
def read_document_reference(
    document_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("documents:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    """Only documents of a category your role reads (any other answers 404)."""
    return _read(session, cipher, ctx, storage, "DocumentReference", document_id)


@router.get("/Consent/{consent_id}", responses=found("Consent", "A consent the patient signed"))
def read_consent(
    consent_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "Consent", consent_id)


@router.get("/Invoice/{invoice_id}", responses=found("Invoice", "An issued invoice"))
def read_invoice(
    invoice_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("invoices:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    """A draft has no number yet and is not sent: 404."""
    return _read(session, cipher, ctx, storage, "Invoice", invoice_id)


@router.get(
    "/ChargeItem/{charge_item_id}",
    responses=found("ChargeItem", "One line of an issued invoice"),
)
def read_charge_item(
    charge_item_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("invoices:read")],
    cipher: Cipher,
    storage: Store,
) -> Response:
    return _read(session, cipher, ctx, storage, "ChargeItem", charge_item_id)
