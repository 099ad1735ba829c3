"""Browsing the pages without a browser: cookie sessions, CSRF tokens, portal sign-in."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from opdesk.db import Database
from opdesk.documents import service as documents
from opdesk.documents.models import Document
from opdesk.documents.storage import LocalStorage
from opdesk.identity.models import User
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from opdesk.web.deps import SESSION_COOKIE, Allow
from tests.factories.clinical_visits import VISIT_IDS, visit_maker
from tests.factories.clinics import clinic_session, ctx_for
from tests.factories.messages import failed_event, failed_message
from tests.factories.people import (
    bearer,
    make_device,
    make_doctor,
    make_patient,
    make_user,
    open_session,
    patients,
)
from tests.factories.records import make_consent, make_document, make_share_link
from tests.factories.scheduling import book, clinic_with_slots, make_exception, offered, waiting


def browser_for(app: FastAPI, token: str) -> TestClient:
    """A client sending ``token`` as the session cookie, as a browser would."""
    client = TestClient(app)
    client.cookies.set(SESSION_COOKIE, token)
    return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{40})"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def portal_login(db: Database, ident: Any, tenant: Tenant, patient: Any) -> dict[str, str]:
    """Bearer headers of the patient's portal login (made when they were registered)."""
    with clinic_session(db, tenant.id) as session:
        user = session.execute(
            select(User).where(User.role == "patient", User.phone_hash == patient.phone_hash)
        ).scalar_one()
    return bearer(open_session(db, ident, user))


# --------------------------------------------------------------------------- route tables


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Declared:
    """One method of one route and the action it declares (``<n declarations>`` when it
    does not declare exactly one).
    """

    method: str
    path: str
    action: str

    @property
    def is_api(self) -> bool:
        return self.path.startswith(("/api/", "/fhir/"))

    @property
    def unsafe(self) -> bool:
        return self.method in UNSAFE_METHODS

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.action}]"


def declared_routes(app: FastAPI) -> list[Declared]:
    """Every method of every route of ``app`` with the action its ``Allow`` declares."""

    def actions(dependant: Any) -> list[str]:
        call = getattr(dependant, "call", None)
        own = [call.action] if isinstance(call, Allow) else []
        return own + [a for sub in dependant.dependencies for a in actions(sub)]

    found = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        declared = actions(route.dependant)
        action = declared[0] if len(declared) == 1 else f"<{len(declared)} declarations>"
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.append(Declared(method, route.path or "", action))
    return found


def row_counts(db: Database, tenant_id: uuid.UUID) -> dict[str, int]:
    """Rows in every table, and the length of the clinic's audit chain (which every
    audited update, not only an insert, lengthens). One query, so tests can afford it
    around every request they expect to change nothing.
    """
    with db.owner_engine.connect() as conn:
        tables = conn.execute(
            text("select tablename from pg_tables where schemaname = 'public' order by 1")
        ).scalars()
        counts = " union all ".join(f"select '{t}', count(*) from \"{t}\"" for t in tables)
        head = "select 'audit head', coalesce(max(seq), 0) from audit_events where tenant_id = :t"
        rows = conn.execute(text(f"{counts} union all {head}"), {"t": tenant_id})
        return {str(name): int(count) for name, count in rows}


# --------------------------------------------------------------------------- cookie browsers


def cookie_browser(app: FastAPI, token: str | None) -> TestClient:
    """Like :func:`browser_for` (``None``: not signed in), from an address of its own, so
    per-IP sign-in limits never reach other tests. Close it, or use it in ``with``.
    """
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    # A server error comes back as its 500 page, as a browser would see it, so a test
    # can report it beside the other answers.
    client = TestClient(app, client=(address, 50000), raise_server_exceptions=False)
    if token is not None:
        client.cookies.set(SESSION_COOKIE, token)
    return client


def htmx_csrf_of(html: str) -> str:
    """The token a page gives htmx to send as its ``X-CSRF-Token`` header."""
    match = re.search(r"<body[^>]* hx-headers='([^']*)'", html)
    assert match, "page gives htmx no headers"
    token: str = json.loads(match.group(1))["X-CSRF-Token"]
    return token


def portal_user_of(db: Database, tenant: Tenant, patient_id: uuid.UUID) -> User:
    """The portal login of a registered patient (made when they were registered)."""
    with clinic_session(db, tenant.id) as session:
        phone_hash = session.execute(
            text("select phone_hash from patients where id = :id"), {"id": patient_id}
        ).scalar_one()
        user: User = session.execute(
            select(User).where(User.role == "patient", User.phone_hash == phone_hash)
        ).scalar_one()
        return user


# --------------------------------------------------------------------------- paths to records


@dataclass
class Records:
    """Real records of one clinic for a route's path: its ids and, for a patient's own
    records, the patient they belong to (whose portal login may reach them).
    """

    ids: dict[str, uuid.UUID | str] = field(default_factory=dict)
    owner: uuid.UUID | None = None


def _user(db: Database, ident: Any, tenant: Tenant) -> Records:
    return Records({"user_id": make_user(db, ident, tenant, "frontdesk").id})


def _device(db: Database, ident: Any, tenant: Tenant) -> Records:
    return Records({"device_id": make_device(db, ident, tenant).id})


def _doctor(db: Database, ident: Any, tenant: Tenant) -> Records:
    return Records({"doctor_id": make_doctor(db, ident, tenant).id})


def _patient(db: Database, ident: Any, tenant: Tenant) -> Records:
    patient = make_patient(db, ident, tenant)
    return Records({"patient_id": patient.id}, patient.id)


def _document(db: Database, ident: Any, tenant: Tenant, files: Path | None = None) -> Records:
    """A small PDF of a new patient, in ``files`` (the app's own store, so pages can open
    it) when given.
    """
    if files is None:
        document = make_document(db, ident, tenant)
    else:
        patient_id = make_patient(db, ident, tenant).id
        ctx = ctx_for(tenant.id)
        with transaction(db, ctx) as session:
            document = documents.upload(
                session,
                ctx,
                ident.cipher,
                LocalStorage(files),
                patient_id=patient_id,
                category="other",
                filename="x.pdf",
                data=b"%PDF-1.4 test",
                tags=[],
                max_bytes=1024,
            )
    return Records({"document_id": document.id, "patient_id": document.owner_id}, document.owner_id)


def _share_link(db: Database, ident: Any, tenant: Tenant) -> Records:
    link = make_share_link(db, ident, tenant)
    with clinic_session(db, tenant.id) as session:
        patient_id = session.get_one(Document, (tenant.id, link.document_id)).owner_id
    ids = {"link_id": link.id, "document_id": link.document_id, "patient_id": patient_id}
    return Records({**ids}, patient_id)


def _consent(db: Database, ident: Any, tenant: Tenant) -> Records:
    consent = make_consent(db, ident, tenant)
    return Records({"consent_id": consent.id, "patient_id": consent.patient_id}, consent.patient_id)


def _exception(db: Database, ident: Any, tenant: Tenant) -> Records:
    away = make_exception(db, ident, tenant)
    return Records({"exception_id": away.id, "doctor_id": away.doctor_id})


def _slot(db: Database, ident: Any, tenant: Tenant) -> Records:
    slot = clinic_with_slots(db, ident, 1, tenant)[2][0]
    return Records({"slot_id": slot.id, "doctor_id": slot.doctor_id})


def _appointment(db: Database, ident: Any, tenant: Tenant) -> Records:
    _tenant, doctor, slots = clinic_with_slots(db, ident, 1, tenant)
    (patient,) = patients(db, ident, tenant, 1)
    booked = book(db, tenant, slots[0], patient)
    ids = {"appointment_id": booked.id, "patient_id": patient.id, "doctor_id": doctor.id}
    return Records({**ids, "slot_id": slots[0].id}, patient.id)


def _entry(db: Database, ident: Any, tenant: Tenant) -> Records:
    entry = waiting(db, ident, tenant).entry
    return Records({"entry_id": entry.id, "patient_id": entry.patient_id}, entry.patient_id)


def _offer(db: Database, ident: Any, tenant: Tenant) -> Records:
    offer = offered(db, ident, tenant)
    ids = {"offer_id": offer.id, "entry_id": offer.entry_id, "patient_id": offer.patient_id}
    return Records({**ids, "slot_id": offer.slot_id}, offer.patient_id)


def _records_of(
    make: Callable[[Database, Any, Tenant], dict[str, uuid.UUID]],
) -> Callable[[Database, Any, Tenant], Records]:
    return lambda db, ident, tenant: Records({**make(db, ident, tenant)})


def _fhir(name: str) -> Callable[[Database, Any, Tenant], Records]:
    """A FHIR route's id that no table holds (tests/factories/fhir.py), with its patient."""

    def make(db: Database, ident: Any, tenant: Tenant) -> Records:
        from tests.factories.fhir import MAKERS

        ids = MAKERS[name](db, ident, tenant)
        return Records({**ids}, ids.get("patient_id"))

    return make


# One maker per kind of id a route takes; each also names the ids its record implies
# (a document's patient, an exception's doctor), so a nested path names one family of rows.
RECORD_MAKERS: dict[str, Callable[[Database, Any, Tenant], Records]] = {
    "user_id": _user,
    "device_id": _device,
    "doctor_id": _doctor,
    "patient_id": _patient,
    "document_id": _document,
    "link_id": _share_link,
    "consent_id": _consent,
    "exception_id": _exception,
    "slot_id": _slot,
    "appointment_id": _appointment,
    "entry_id": _entry,
    "offer_id": _offer,
    "message_id": lambda db, ident, tenant: Records(
        {"message_id": failed_message(db, ident.cipher, tenant)}
    ),
    "event_id": lambda db, ident, tenant: Records({"event_id": failed_event(db, tenant)}),
    **{name: _records_of(visit_maker(name)) for name in VISIT_IDS},
    "prescription_id": lambda db, ident, tenant: _prescription(db, ident, tenant),
    "order_id": lambda db, ident, tenant: _order(db, ident, tenant),
    "diet_plan_id": lambda db, ident, tenant: _diet_plan(db, ident, tenant),
    "diet_template_id": lambda db, ident, tenant: _diet_template(db, ident, tenant),
    "invoice_id": lambda db, ident, tenant: _billing("invoice", db, ident, tenant),
    "payment_id": lambda db, ident, tenant: _billing("payment", db, ident, tenant),
    "gateway_event_id": lambda db, ident, tenant: Records(
        {"gateway_event_id": _kept_delivery(db, ident, tenant)}
    ),
    "counter_id": lambda db, ident, tenant: Records({"counter_id": _counter(db, ident, tenant)}),
    **{
        name: _fhir(name)
        for name in ("clinic_id", "medication_request_id", "service_request_id", "charge_item_id")
    },
}


def _counter(db: Database, ident: Any, tenant: Tenant) -> str:
    from tests.factories.abdm import counter_id_of

    return counter_id_of(db, ident, tenant)


def _kept_delivery(db: Database, ident: Any, tenant: Tenant) -> uuid.UUID:
    from tests.factories import billing

    return billing.kept_delivery_id(db, ident, tenant)


def _billing(kind: str, db: Database, ident: Any, tenant: Tenant) -> Records:
    from tests.factories import billing

    ids = (billing.issued_ids if kind == "invoice" else billing.paid_ids)(db, ident, tenant)
    return Records({**ids}, ids["patient_id"])


def _order(db: Database, ident: Any, tenant: Tenant) -> Records:
    from tests.factories.clinical_orders import make_order

    row = make_order(db, ident, tenant)
    return Records({"order_id": row.id, "visit_id": row.visit_id}, row.patient_id)


def _diet_plan(db: Database, ident: Any, tenant: Tenant) -> Records:
    from tests.factories.clinical_orders import make_diet_plan

    row = make_diet_plan(db, ident, tenant)
    return Records({"diet_plan_id": row.id, "visit_id": row.visit_id}, row.patient_id)


def _diet_template(db: Database, ident: Any, tenant: Tenant) -> Records:
    from tests.factories.clinical_orders import make_diet_template

    return Records({"diet_template_id": make_diet_template(db, tenant).id})


def _prescription(db: Database, ident: Any, tenant: Tenant) -> Records:
    from tests.factories.clinical_rx import make_prescription

    setting, made = make_prescription(db, ident, tenant)
    ids = {"prescription_id": made.id, "patient_id": setting.patient.id}
    return Records(ids, setting.patient.id)


# Path parameters that name a thing rather than a record: a message channel, a report table.
NAMED = {"channel": "sms", "table": "days"}


def named(path: str, tenant: Tenant) -> str:
    """``path`` with ``{slug}`` and the :data:`NAMED` parameters filled in."""
    path = path.replace("{slug}", tenant.slug)
    for name, value in NAMED.items():
        path = path.replace("{" + name + "}", value)
    return path


def path_to_records(
    db: Database, ident: Any, tenant: Tenant, path: str, files: Path | None = None
) -> tuple[str, Records]:
    """``path`` with every id replaced by a real record of ``tenant`` (the innermost id
    first, so ``/patients/{patient_id}/documents/{document_id}`` names the document's
    own patient), ``{slug}`` by the clinic's code and the names of :data:`NAMED` by their
    value. Documents
    are stored in ``files`` when given (the app's ``data_dir / "files"``).
    """
    made = Records()
    for name in reversed(re.findall(r"\{([a-z_]+)\}", path)):
        if name == "slug" or name in NAMED or name in made.ids:
            continue
        assert name in RECORD_MAKERS, f"add a maker for {{{name}}} to RECORD_MAKERS"
        if name == "document_id":
            found = _document(db, ident, tenant, files)
        else:
            found = RECORD_MAKERS[name](db, ident, tenant)
        made.ids = {**found.ids, **made.ids}
        made.owner = made.owner or found.owner
    filled = named(path, tenant)
    for name, value in made.ids.items():
        filled = filled.replace("{" + name + "}", str(value))
    return filled, made


class SharedRecords:
    """:func:`path_to_records`, made once per shape of path (the same id names in the
    same order) and shared by every route of that shape: a test that only expects
    refusals needs no fresh rows per route. What one route consumes (a cancelled
    appointment, a revoked link), the next route of the shape finds consumed.
    """

    def __init__(self, db: Database, ident: Any, tenant: Tenant, files: Path | None = None):
        self.db, self.ident, self.tenant, self.files = db, ident, tenant, files
        self.made: dict[tuple[str, ...], Records] = {}

    def fill(self, path: str) -> tuple[str, Records]:
        shape = tuple(re.findall(r"\{([a-z_]+)\}", path))
        if shape not in self.made:
            self.made[shape] = path_to_records(self.db, self.ident, self.tenant, path, self.files)[
                1
            ]
        records = self.made[shape]
        filled = named(path, self.tenant)
        for name, value in records.ids.items():
            filled = filled.replace("{" + name + "}", str(value))
        return filled, records
