"""Visits for tests: a booked appointment with its doctor's sign-in, a visit opened
through the service, notes, diagnoses, vitals and catalogue services.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opdesk.clinical import catalogue, visits, vitals
from opdesk.clinical.models import ClinicService, Visit
from opdesk.context import RequestContext
from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.scheduling.models import Appointment, DoctorProfile
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import clinic_session, ctx_for, make_tenant
from tests.factories.people import bearer, make_user, open_session, patients
from tests.factories.scheduling import book, clinic_with_slots


@dataclass
class Consultation:
    tenant: Tenant
    doctor: DoctorProfile
    doctor_user: User
    patient: Any
    appointment: Appointment
    slots: list[Any]

    def ctx(self) -> RequestContext:
        return ctx_for(self.tenant.id, actor_id=self.doctor_user.id, role="doctor")


def consultation(
    db: Database, ident: Any, tenant: Tenant | None = None, *, slots: int = 2, **patient: Any
) -> Consultation:
    """A doctor, a patient and a booked appointment (the first of ``slots`` slots)."""
    tenant = tenant or make_tenant(db, "Consult Clinic")
    _tenant, doctor, made = clinic_with_slots(db, ident, slots, tenant)
    (person,) = patients(db, ident, tenant, 1, **patient)
    appointment = book(db, tenant, made[0], person)
    with clinic_session(db, tenant.id) as session:
        user = session.get(User, (tenant.id, doctor.user_id))
        assert user is not None
    return Consultation(tenant, doctor, user, person, appointment, made)


def doctor_headers(db: Database, ident: Any, visit: Consultation) -> dict[str, str]:
    return bearer(open_session(db, ident, visit.doctor_user))


def role_headers(db: Database, ident: Any, tenant: Tenant, role: str) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, role)))


def open_visit(db: Database, c: Consultation) -> Visit:
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        return visits.open_visit(session, ctx, appointment_id=c.appointment.id)


def write_note(
    db: Database, cipher: Any, c: Consultation, visit_id: uuid.UUID, soap: visits.Soap
) -> visits.SavedNote:
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        return visits.save_note(session, ctx, cipher, visit_id=visit_id, soap=soap, explicit=True)


def signed_visit(
    db: Database, ident: Any, cipher: Any, tenant: Tenant | None = None, **patient: Any
) -> tuple[Consultation, Visit]:
    """A visit with a note, a diagnosis and a pulse, signed (``patient``: the patient's
    registration fields)."""
    c = consultation(db, ident, tenant, **patient)
    visit = open_visit(db, c)
    write_note(db, cipher, c, visit.id, visits.Soap(s="Fever 3 days", a="Viral fever", p="Rest"))
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        visits.add_diagnosis(session, ctx, cipher, visit_id=visit.id, code="A09", text=None)
        vitals.record(session, ctx, cipher, visit_id=visit.id, readings={"pulse": 80})
        return c, visits.sign(session, ctx, cipher, visit_id=visit.id)


def next_signed_visit(db: Database, cipher: Any, c: Consultation, slot: int = 1) -> Visit:
    """Another signed visit of the consultation's patient, on its ``slot``-th slot."""
    appointment = book(db, c.tenant, c.slots[slot], c.patient)
    again = Consultation(c.tenant, c.doctor, c.doctor_user, c.patient, appointment, c.slots)
    visit = open_visit(db, again)
    write_note(db, cipher, again, visit.id, visits.Soap(s="Review", a="Better", p="Stop"))
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        return visits.sign(session, ctx, cipher, visit_id=visit.id)


def make_service(
    db: Database,
    tenant: Tenant,
    *,
    code: str = "CONS",
    name: str = "Consultation",
    price: str = "500",
) -> ClinicService:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return catalogue.create_service(
            session,
            ctx,
            catalogue.ServiceFields(
                code=code, name=name, price=Decimal(price), tax_rate=Decimal(18), sac_hsn="999312"
            ),
        )


def visit_ids(db: Database, ident: Any, tenant: Tenant, name: str) -> dict[str, uuid.UUID]:
    """A record named by ``name`` (visit_id, diagnosis_id, vital_id, line_id or
    service_id) with the ids it implies (its visit's appointment, patient, doctor), so a
    nested path names one family of rows.
    """
    if name == "service_id":
        return {"service_id": make_service(db, tenant, code=f"S{uuid.uuid4().hex[:6].upper()}").id}
    c = consultation(db, ident, tenant)
    visit = open_visit(db, c)
    ids = {
        "visit_id": visit.id,
        "appointment_id": c.appointment.id,
        "patient_id": c.patient.id,
        "doctor_id": c.doctor.id,
    }
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        if name == "diagnosis_id":
            ids[name] = visits.add_diagnosis(
                session, ctx, ident.cipher, visit_id=visit.id, code="J06.9", text=None
            ).id
        elif name == "vital_id":
            ids[name] = vitals.record(
                session, ctx, ident.cipher, visit_id=visit.id, readings={"pulse": 72}
            )[0].id
    if name == "line_id":
        service = make_service(db, tenant, code=f"S{uuid.uuid4().hex[:6].upper()}")
        with transaction(db, ctx) as session:
            ids[name] = catalogue.add_to_visit(
                session, ctx, visit_id=visit.id, service_id=service.id
            ).id
    return ids


def visit_maker(name: str) -> Callable[[Database, Any, Tenant], dict[str, uuid.UUID]]:
    """:func:`visit_ids` for one kind of id, as the generated route tests take makers."""

    def make(db: Database, ident: Any, tenant: Tenant) -> dict[str, uuid.UUID]:
        return visit_ids(db, ident, tenant, name)

    return make


VISIT_IDS = ("visit_id", "diagnosis_id", "vital_id", "line_id", "service_id")
