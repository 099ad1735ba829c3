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

import inspect
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Read:
    """One ``GET /<kind>/{<param>}`` read: the path parameter's name (the one the rest of
    the API gives that kind of id), the permission it needs, and what it answers."""

    kind: str
    param: str
    action: str
    what: str
    note: str = ""


READS = (
    Read("Patient", "patient_id", "patients:read", "The patient"),
    Read("Practitioner", "doctor_id", "clinic:read", "A doctor"),
    Read(
        "Organization",
        "clinic_id",
        "clinic:read",
        "Your clinic",
        "Only the signed-in clinic's own id: any other clinic's is 404.",
    ),
    Read("Appointment", "appointment_id", "appointments:read", "An appointment"),
    Read("Encounter", "visit_id", "visits:read", "A visit"),
    Read("Condition", "diagnosis_id", "visits:read", "A visit's diagnosis"),
    Read(
        "Observation",
        "vital_id",
        "vitals:read",
        "A vital sign",
        "A blood pressure is one panel, under its systolic reading's id.",
    ),
    Read(
        "MedicationRequest",
        "medication_request_id",
        "prescriptions:read",
        "One medicine of a prescription",
    ),
    Read(
        "ServiceRequest",
        "service_request_id",
        "orders:read",
        "One test of a lab, imaging or procedure order",
    ),
    Read("DiagnosticReport", "order_id", "orders:results", "The report on a lab or imaging order"),
    Read(
        "DocumentReference",
        "document_id",
        "documents:read",
        "A document of the patient, its file inline",
        "Only documents of a category your role reads (any other answers 404).",
    ),
    Read("Consent", "consent_id", "patients:read", "A consent the patient signed"),
    Read(
        "Invoice",
        "invoice_id",
        "invoices:read",
        "An issued invoice",
        "A draft has no number yet and is not sent: 404.",
    ),
    Read("ChargeItem", "charge_item_id", "invoices:read", "One line of an issued invoice"),
)


class _Reader:
    """The endpoint of one :class:`Read`. Its signature is written out for FastAPI, which
    reads the path parameter's name and the permission from it."""

    def __init__(self, read: Read) -> None:
        self.read = read
        named = inspect.Parameter.KEYWORD_ONLY
        given = [
            (read.param, uuid.UUID),
            ("session", DbSession),
            ("ctx", Ctx),
            ("who", Annotated[Principal, acting(read.action)]),
            ("cipher", Cipher),
            ("storage", Store),
        ]
        self.__signature__ = inspect.Signature(
            [inspect.Parameter(name, named, annotation=kind) for name, kind in given],
            return_annotation=Response,
        )

    def __call__(self, **given: Any) -> Response:
        return _read(
            given["session"],
            given["cipher"],
            given["ctx"],
            given["storage"],
            self.read.kind,
            given[self.read.param],
        )


for _one in READS:
    router.add_api_route(
        f"/{_one.kind}/{{{_one.param}}}",
        _Reader(_one),
        methods=["GET"],
        name=f"read_{_one.kind.lower()}",
        summary=f"Read {_one.kind}",
        description=_one.note or None,
        responses=found(_one.kind, _one.what),
    )


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
