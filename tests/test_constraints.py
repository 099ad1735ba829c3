"""The database's own refusals: every constraint that backs a rule, tested around the services.

Services decide first (a conditional UPDATE, a check before the write); the schema's
constraints are the second line of defence, for the day a service gets it wrong. Each
case below writes a row straight to its table, as the app role inside one clinic, and
expects PostgreSQL itself to refuse it, naming the constraint:

* a unique index or an exclusion constraint: a copy of a row the services made, with a
  new id (and, where a table has two unique keys, the other key made unique);
* a CHECK: a row the services made, changed to break it (inserted, where the app role may
  not update the table).

The rows are written with :func:`~tests.factories.unaudited` in a transaction that is
always rolled back, and each refusal must be PostgreSQL's error for that very constraint,
so a case cannot pass on the audit guard, on row-level security or on another constraint.

The table of cases is checked against the migrated schema (``pg_catalog``): a new unique
index, exclusion or CHECK constraint fails :func:`test_every_constraint_has_a_bypass_test`
until it has a case here (or a reasoned entry in :data:`NOT_RULES`).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from psycopg import errors as pg
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from opdesk.audit.models import AuditEvent
from opdesk.automation import service as automation
from opdesk.db import Database, new_id
from opdesk.identity.models import AuthSession, OtpToken, User
from opdesk.identity.service import Identity, request_otp
from opdesk.notifications.models import OutboxMessage
from opdesk.notifications.service import save_provider
from opdesk.scheduling.models import SLOT_GIVEN_UP, AvailabilityTemplate, OfferStatus
from opdesk.uow import transaction
from tests.factories import (
    DAY,
    book,
    clinic_with_slots,
    ctx_for,
    make_consent,
    make_device,
    make_exception,
    make_patient,
    make_share_link,
    make_tenant,
    offered,
    unaudited,
    unique_mobile,
)
from tests.factories.abdm import with_abdm

# --------------------------------------------------------------------------- one clinic


@dataclass(frozen=True)
class World:
    """One clinic holding a row of every table with a rule, each made by the services."""

    tenant_id: uuid.UUID
    audit_event: uuid.UUID
    staff_user: uuid.UUID
    patient_user: uuid.UUID
    device: uuid.UUID
    session: uuid.UUID
    otp: uuid.UUID
    message: uuid.UUID
    patient: uuid.UUID
    document: uuid.UUID
    share_link: uuid.UUID
    consent_template: uuid.UUID
    consent: uuid.UUID
    doctor: uuid.UUID
    weekly_hours: uuid.UUID
    time_away: uuid.UUID
    slot: uuid.UUID
    appointment: uuid.UUID  # live (booked), on ``slot``
    entry: uuid.UUID
    offer: uuid.UUID  # open
    automation_event: uuid.UUID  # pending, for the appointment
    clinical: Clinical
    billing: Billing


@dataclass(frozen=True)
class Clinical:
    """A row of each clinical table, for the appointment (drafts: nothing issued)."""

    service: uuid.UUID
    visit: uuid.UUID  # draft
    diagnosis: uuid.UUID  # primary
    vital: uuid.UUID
    visit_service: uuid.UUID
    drug: uuid.UUID
    signing_key: uuid.UUID
    prescription: uuid.UUID  # draft
    rx_template: uuid.UUID
    diet_template: uuid.UUID
    diet_plan: uuid.UUID  # draft
    order: uuid.UUID


@dataclass(frozen=True)
class Billing:
    """A row of each billing table: the booking's draft charge, an issued invoice, a
    pending payment on it (UPI, through a link), a refund, a ledger row, a webhook event.
    """

    draft: uuid.UUID  # the appointment's charge, made by booking
    invoice: uuid.UUID  # issued
    payment: uuid.UUID
    refund: uuid.UUID
    ledger_entry: uuid.UUID
    gateway_event: uuid.UUID


_BILLING_ROWS = [
    "insert into invoices (tenant_id, id, patient_id, number, status, line_items, subtotal,"
    " tax_total, discount_total, grand_total, balance_due, cgst_total, sgst_total, igst_total,"
    " amount_paid, amount_refunded, amount_credited, issued_at, created_at, updated_at)"
    " values (:tenant, :invoice, :patient, 'T/2026-27/000001', 'issued', '[]', 100, 0, 0,"
    " 100, 100, 0, 0, 0, 0, 0, 0, now(), now(), now())",
    "insert into payments (tenant_id, id, invoice_id, patient_id, method, amount, status,"
    " gateway_provider, gateway_payment_id, gateway_link_id, reference, created_at,"
    " updated_at) values (:tenant, :payment, :invoice, :patient, 'upi', 100, 'pending',"
    " 'razorpay', 'pay_T1', 'plink_T1', '123456789012', now(), now())",
    "insert into payments_refunds (tenant_id, id, payment_id, invoice_id, amount, status,"
    " method, reason, gateway_refund_id, created_at) values (:tenant, :refund, :payment,"
    " :invoice, 10, 'pending', 'gateway', 'test', 'rfnd_T1', now())",
    "insert into ledger_entries (tenant_id, id, patient_id, invoice_id, type, kind, amount,"
    " description, created_at) values (:tenant, :ledger_entry, :patient, :invoice, 'debit',"
    " 'invoice', 100, 'Invoice T/2026-27/000001', now())",
    "insert into gateway_events (tenant_id, id, provider, event_id, kind, payload, outcome,"
    " received_at) values (:tenant, :gateway_event, 'razorpay', 'evt_T1', 'payment.captured',"
    " '{}', 'review', now())",
    "insert into billing_settings (tenant_id, updated_at) values (:tenant, now())",
    "insert into consultation_fees (tenant_id, doctor_id, visit_type, amount, updated_at)"
    " values (:tenant, :doctor, 'follow-up', 300, now())",
    "insert into invoice_counters (tenant_id, financial_year, last_number)"
    " values (:tenant, '2026-27', 1)",
]


def _billing(db: Database, tenant_id: uuid.UUID, **refs: uuid.UUID) -> Billing:
    """``refs``: the patient, doctor and appointment the rows belong to."""
    ids = {name: new_id() for name in Billing.__dataclass_fields__ if name != "draft"}
    with transaction(db, ctx_for(tenant_id)) as session:
        unaudited(session)
        for statement in _BILLING_ROWS:
            session.execute(text(statement), {**ids, **refs, "tenant": tenant_id})
        draft = session.execute(
            text("select id from invoices where appointment_id = :a and status = 'draft'"),
            {"a": refs["appointment"]},
        ).scalar_one()
    return Billing(draft=draft, **ids)


# Until the clinical services exist (the clinical issue), their rows are written here as
# those services will write them, one INSERT per table.
_CLINICAL_ROWS = [
    "insert into clinic_services (tenant_id, id, code, name, price, tax_rate, created_at,"
    " updated_at) values (:tenant, :service, 'CONSULT', 'Consultation', 500, 0, now(), now())",
    "insert into visits (tenant_id, id, appointment_id, patient_id, doctor_id, status,"
    " created_at, updated_at)"
    " values (:tenant, :visit, :appointment, :patient, :doctor, 'draft', now(), now())",
    "insert into visits_diagnoses (tenant_id, id, visit_id, patient_id, doctor_id, code,"
    " is_primary, position, created_at)"
    " values (:tenant, :diagnosis, :visit, :patient, :doctor, 'J45.9', true, 1, now())",
    "insert into visits_vitals (tenant_id, id, visit_id, patient_id, type, value_encrypted,"
    " unit, collected_at, recorded_by, created_at) values (:tenant, :vital, :visit, :patient,"
    " 'pulse', '\\x00', '/min', now(), :user, now())",
    "insert into visits_services (tenant_id, id, visit_id, service_id, code, description,"
    " quantity, unit_price, created_at, created_by) values (:tenant, :visit_service, :visit,"
    " :service, 'CONSULT', 'Consultation', 1, 500, now(), :user)",
    "insert into formulary_drugs (tenant_id, id, generic_name, strength, form, drug_class,"
    " source, created_at) values (:tenant, :drug, 'Amoxicillin', '500 mg', 'capsule',"
    " 'penicillins', 'nlem-2022', now())",
    "insert into signing_keys (tenant_id, id, public_key, private_key_encrypted, created_at)"
    " values (:tenant, :signing_key, '\\x01', '\\x02', now())",
    "insert into prescriptions (tenant_id, id, visit_id, patient_id, doctor_id, version,"
    " created_at, updated_at)"
    " values (:tenant, :prescription, :visit, :patient, :doctor, 1, now(), now())",
    "insert into prescription_templates (tenant_id, id, doctor_id, name, items, created_at,"
    " updated_at) values (:tenant, :rx_template, :doctor, 'Adult fever', '[]', now(), now())",
    "insert into diet_plan_templates (tenant_id, id, name, schedule, created_at, updated_at)"
    " values (:tenant, :diet_template, 'Diabetic 1800 kcal', '[]', now(), now())",
    "insert into diet_plans (tenant_id, id, visit_id, patient_id, doctor_id, version,"
    " schedule, created_at, updated_at)"
    " values (:tenant, :diet_plan, :visit, :patient, :doctor, 1, '[]', now(), now())",
    "insert into orders (tenant_id, id, visit_id, patient_id, doctor_id, type, items, status,"
    " status_timeline_ordered_at, created_at, updated_at) values (:tenant, :order, :visit,"
    " :patient, :doctor, 'lab', '[]', 'ordered', now(), now(), now())",
]


def _clinical(db: Database, tenant_id: uuid.UUID, **refs: uuid.UUID) -> Clinical:
    """``refs``: the patient, doctor, appointment and (staff) user the rows belong to."""
    ids = {name: new_id() for name in Clinical.__dataclass_fields__}
    with transaction(db, ctx_for(tenant_id)) as session:
        unaudited(session)
        for statement in _CLINICAL_ROWS:
            session.execute(text(statement), {**ids, **refs, "tenant": tenant_id})
    return Clinical(**ids)


@pytest.fixture(scope="module")
def world(db: Database, ident: Identity) -> World:
    tenant = make_tenant(db, "Constraint Clinic")
    _, doctor, slots = clinic_with_slots(db, ident, 1, tenant)
    patient = make_patient(db, ident, tenant)
    appointment = book(db, tenant, slots[0], patient)
    offer = offered(db, ident, tenant)
    time_away = make_exception(db, ident, tenant)
    device = make_device(db, ident, tenant)
    share_link = make_share_link(db, ident, tenant)
    consent = make_consent(db, ident, tenant)
    with_abdm(db, ident.cipher, tenant)
    clinic = ctx_for(tenant.id)
    with transaction(db, clinic) as session:
        event = automation.schedule(
            session,
            clinic,
            rule="reminder-24h",
            entity_type="appointments",
            entity_id=appointment.id,
            when=clinic.now(),
            dedupe_key=f"reminder-24h:{appointment.id}",
        )
        # A clinic's SMS provider (message_providers), saved as the admin's page saves it.
        save_provider(
            session, clinic, ident.cipher, channel="sms", values={}, templates="", enabled=False
        )
    ctx = ctx_for(None, ip=f"10.9.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}")
    with transaction(db, ctx) as session:
        attempt = request_otp(session, ctx, ident, phone=unique_mobile(), clinic=tenant.slug)
        assert isinstance(attempt, str), attempt
    with transaction(db, ctx_for(tenant.id)) as session:

        def one(statement: Any) -> uuid.UUID:
            found: uuid.UUID = session.execute(statement.limit(1)).scalar_one()
            return found

        return World(
            tenant_id=tenant.id,
            audit_event=one(select(AuditEvent.id)),
            staff_user=doctor.user_id,
            patient_user=one(
                select(User.id).where(User.role == "patient", User.phone_hash == patient.phone_hash)
            ),
            device=device.id,
            session=one(select(AuthSession.id).where(AuthSession.user_id == device.user_id)),
            otp=one(select(OtpToken.id).where(OtpToken.clinic_id == tenant.id)),
            message=one(select(OutboxMessage.id)),
            patient=patient.id,
            document=share_link.document_id,
            share_link=share_link.id,
            consent_template=consent.template_id,
            consent=consent.id,
            doctor=doctor.id,
            weekly_hours=one(
                select(AvailabilityTemplate.id).where(AvailabilityTemplate.doctor_id == doctor.id)
            ),
            time_away=time_away.id,
            slot=slots[0].id,
            appointment=appointment.id,
            entry=offer.entry_id,
            offer=offer.id,
            automation_event=event.id,
            clinical=_clinical(
                db,
                tenant.id,
                patient=patient.id,
                doctor=doctor.id,
                appointment=appointment.id,
                user=doctor.user_id,
            ),
            billing=_billing(
                db, tenant.id, patient=patient.id, doctor=doctor.id, appointment=appointment.id
            ),
        )


class _RolledBack(Exception):
    """Ends a scratch transaction: what a case wrote is never kept."""


@contextmanager
def scratch(db: Database, world: World) -> Iterator[Session]:
    """A transaction of the world's clinic, as the app role, writing around the services;
    always rolled back.
    """
    try:
        with transaction(db, ctx_for(world.tenant_id)) as session:
            unaudited(session)
            yield session
            raise _RolledBack
    except _RolledBack:
        pass


# --------------------------------------------------------------------------- raw writes


@dataclass(frozen=True)
class Sql:
    """A new value given as SQL over the row's own columns, e.g. ``Sql("starts_at")``."""

    expression: str


def _columns(session: Session, table: str) -> dict[str, str]:
    """The columns a row of ``table`` is written with (generated ones left out), and their
    SQL types.
    """
    rows = session.execute(
        text(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute "
            "where attrelid = cast(:table as regclass) and attnum > 0 and not attisdropped "
            "and attgenerated = '' order by attnum"
        ),
        {"table": table},
    ).all()
    return {str(name): str(type_) for name, type_ in rows}


def _value(name: str, type_: str, changes: dict[str, object], params: dict[str, object]) -> str:
    new = changes[name]
    if isinstance(new, Sql):
        return f"({new.expression})"
    params[f"new_{name}"] = new
    return f"cast(:new_{name} as {type_})"


def copy(session: Session, table: str, row_id: uuid.UUID, **changes: object) -> None:
    """Insert a copy of one row of ``table`` (a new id, ``changes`` applied) with SQL."""
    changes.setdefault("id", new_id())
    columns = _columns(session, table)
    assert set(changes) <= set(columns), f"{table} has no column {set(changes) - set(columns)}"
    params: dict[str, object] = {"row_id": row_id}
    values = [
        _value(name, type_, changes, params) if name in changes else f'"{name}"'
        for name, type_ in columns.items()
    ]
    names = ", ".join(f'"{name}"' for name in columns)
    done = session.connection().execute(
        text(
            f"insert into {table} ({names}) select {', '.join(values)} from {table} "
            "where id = :row_id"
        ),
        params,
    )
    assert done.rowcount == 1, f"no {table} row {row_id} to copy"


def change(session: Session, table: str, row_id: uuid.UUID, **changes: object) -> None:
    """Update one row of ``table`` with SQL."""
    columns = _columns(session, table)
    assert set(changes) <= set(columns), f"{table} has no column {set(changes) - set(columns)}"
    params: dict[str, object] = {"row_id": row_id}
    sets = ", ".join(
        f'"{name}" = {_value(name, columns[name], changes, params)}' for name in changes
    )
    done = session.connection().execute(
        text(f"update {table} set {sets} where id = :row_id"), params
    )
    assert done.rowcount == 1, f"no {table} row {row_id} to change"


# --------------------------------------------------------------------------- the cases

Write = Callable[[Session, World], object]


def _nothing(session: Session, w: World) -> None:
    return None


@dataclass(frozen=True)
class Case:
    constraint: str
    error: type[pg.IntegrityError]
    rule: str
    attempt: Write  # the write PostgreSQL must refuse
    arrange: Write = _nothing  # rows written first, which it must accept


def unique(constraint: str, rule: str, attempt: Write, arrange: Write = _nothing) -> Case:
    return Case(constraint, pg.UniqueViolation, rule, attempt, arrange)


def check(constraint: str, rule: str, attempt: Write) -> Case:
    return Case(constraint, pg.CheckViolation, rule, attempt)


def _token(session: Session, w: World) -> None:
    """A token handed out on :data:`DAY` (no slot: only the token may clash)."""
    copy(session, "appointments", w.appointment, slot_id=None, token_number=7, queue_date=DAY)


def _clinical_copy(table: str, row: str, **changes: object) -> Write:
    def write(session: Session, w: World) -> None:
        copy(session, table, getattr(w.clinical, row), **changes)

    return write


def _clinical_change(table: str, row: str, **changes: object) -> Write:
    def write(session: Session, w: World) -> None:
        change(session, table, getattr(w.clinical, row), **changes)

    return write


def _billing_change(table: str, row: str, **changes: object) -> Write:
    def write(session: Session, w: World) -> None:
        change(session, table, getattr(w.billing, row), **changes)

    return write


def _billing_copy(table: str, row: str, **changes: object) -> Write:
    def write(session: Session, w: World) -> None:
        copy(session, table, getattr(w.billing, row), **changes)

    return write


def _clinic_row(statement: str) -> Write:
    """A write to a table keyed by the clinic (no id of its own)."""

    def write(session: Session, w: World) -> None:
        session.execute(text(statement), {"tenant": w.tenant_id})

    return write


def _a_second_version(table: str, row: str) -> Write:
    """A new version of the world's ``row``: it supersedes that one (accepted once)."""

    def write(session: Session, w: World) -> None:
        copy(session, table, getattr(w.clinical, row), supersedes=getattr(w.clinical, row))

    return write


def _soap_version(v: int) -> Write:
    def write(session: Session, w: World) -> None:
        session.execute(
            text(
                "insert into visits_soap_versions (tenant_id, visit_id, v, created_at, created_by)"
                " values (:t, :visit, :v, now(), :user)"
            ),
            {"t": w.tenant_id, "visit": w.clinical.visit, "v": v, "user": w.staff_user},
        )

    return write


def _prescription_item(**values: object) -> Write:
    def write(session: Session, w: World) -> None:
        session.execute(
            text(
                "insert into prescriptions_items (tenant_id, prescription_id, position,"
                " name_encrypted, duration_days, refill_remaining)"
                " values (:t, :rx, 1, '\\x00', :duration_days, :refill_remaining)"
            ),
            {"t": w.tenant_id, "rx": w.clinical.prescription, **values},
        )

    return write


CLINICAL_CASES: list[Case] = [
    unique(
        "uq_visits_tenant_id_appointment_id",
        "an appointment has one visit",
        _clinical_copy("visits", "visit"),
    ),
    check(
        "ck_visits_status_known",
        "a visit is a draft or signed",
        _clinical_change("visits", "visit", status="closed"),
    ),
    check(
        "ck_visits_signed_has_version",
        "a signed visit names its signed version and when it was locked",
        _clinical_change("visits", "visit", status="signed"),
    ),
    check(
        "ck_visits_follow_up_interval",
        "a follow-up interval is 1 day to 2 years",
        _clinical_change("visits", "visit", follow_up_interval_days=0),
    ),
    check(
        "ck_visits_soap_versions_v_positive",
        "SOAP versions count from 1",
        _soap_version(0),
    ),
    unique(
        "uq_visits_diagnoses_primary",
        "a visit has one primary diagnosis",
        _clinical_copy("visits_diagnoses", "diagnosis"),
    ),
    check(
        "ck_visits_diagnoses_code_or_text",
        "a diagnosis has an ICD-10 code or words",
        _clinical_change("visits_diagnoses", "diagnosis", code=None, text_encrypted=None),
    ),
    check(
        "ck_visits_vitals_type_known",
        "a vital is one OPDesk knows the units and range of",
        _clinical_copy("visits_vitals", "vital", type="mood"),
    ),
    unique(
        "uq_clinic_services_tenant_id_code",
        "a service code names one service of the clinic",
        _clinical_copy("clinic_services", "service"),
    ),
    check(
        "ck_clinic_services_price_not_negative",
        "a service costs nothing or more",
        _clinical_change("clinic_services", "service", price=-1),
    ),
    check(
        "ck_clinic_services_tax_rate_range",
        "GST is 0 to 28 %",
        _clinical_change("clinic_services", "service", tax_rate=29),
    ),
    check(
        "ck_visits_services_quantity_positive",
        "a service is given at least once",
        _clinical_change("visits_services", "visit_service", quantity=0),
    ),
    check(
        "ck_visits_services_unit_price_not_negative",
        "a service's price is not negative",
        _clinical_change("visits_services", "visit_service", unit_price=-1),
    ),
    unique(
        "uq_formulary_drugs_name_strength_form",
        "a medicine is in the formulary once per strength, form and brand",
        _clinical_copy("formulary_drugs", "drug"),
    ),
    unique(
        "uq_signing_keys_current",
        "a clinic signs with one key at a time",
        _clinical_copy("signing_keys", "signing_key"),
    ),
    check(
        "ck_prescriptions_version_positive",
        "prescription versions count from 1",
        _clinical_change("prescriptions", "prescription", version=0),
    ),
    check(
        "ck_prescriptions_issued_is_signed",
        "an issued prescription carries its hash, signature, key and QR",
        _clinical_change("prescriptions", "prescription", issued_at=Sql("now()")),
    ),
    unique(
        "uq_prescriptions_supersedes",
        "a prescription is replaced at most once",
        _a_second_version("prescriptions", "prescription"),
        arrange=_a_second_version("prescriptions", "prescription"),
    ),
    check(
        "ck_prescriptions_items_duration_range",
        "a medicine is given for 1 day to a year",
        _prescription_item(duration_days=0, refill_remaining=0),
    ),
    check(
        "ck_prescriptions_items_refill_remaining_not_negative",
        "refills left are not negative",
        _prescription_item(duration_days=5, refill_remaining=-1),
    ),
    unique(
        "uq_prescription_templates_doctor_name",
        "a doctor's templates have different names",
        _clinical_copy("prescription_templates", "rx_template", name="ADULT FEVER"),
    ),
    unique(
        "uq_diet_plan_templates_name",
        "the clinic's diet plan templates have different names",
        _clinical_copy("diet_plan_templates", "diet_template"),
    ),
    check(
        "ck_diet_plans_version_positive",
        "diet plan versions count from 1",
        _clinical_change("diet_plans", "diet_plan", version=0),
    ),
    unique(
        "uq_diet_plans_supersedes",
        "a diet plan is replaced at most once",
        _a_second_version("diet_plans", "diet_plan"),
        arrange=_a_second_version("diet_plans", "diet_plan"),
    ),
    check(
        "ck_orders_type_known",
        "an order is for a lab test, imaging or a procedure",
        _clinical_change("orders", "order", type="massage"),
    ),
    check(
        "ck_orders_status_known",
        "an order's status is one of its timeline's",
        _clinical_change("orders", "order", status="lost"),
    ),
]

BILLING_CASES = [
    # ---- an invoice's totals (on the draft: an issued one is frozen before any check)
    check(
        "ck_invoices_amounts_not_negative",
        "no amount of an invoice is negative",
        _billing_change("invoices", "draft", cgst_total=-1, sgst_total=1),
    ),
    check(
        "ck_invoices_balance_adds_up",
        "the balance is the total less credits and payments, plus refunds",
        _billing_change("invoices", "draft", balance_due=Sql("balance_due - 1")),
    ),
    check(
        "ck_invoices_cgst_sgst_or_igst",
        "tax inside the state is CGST+SGST, to another state IGST, never both",
        _billing_change(
            "invoices",
            "draft",
            igst_total=1,
            tax_total=Sql("tax_total + 1"),
            grand_total=Sql("grand_total + 1"),
            balance_due=Sql("balance_due + 1"),
        ),
    ),
    check(
        "ck_invoices_credits_within_total",
        "credit notes never cancel more than the invoice's total",
        _billing_change(
            "invoices", "draft", amount_credited=Sql("grand_total + 1"), balance_due=-1
        ),
    ),
    check(
        "ck_invoices_discount_within_subtotal",
        "a discount is never more than what it discounts",
        _billing_change(
            "invoices",
            "draft",
            discount_total=Sql("subtotal + 1"),
            cgst_total=1,
            sgst_total=1,
            tax_total=2,
            grand_total=1,
            balance_due=1,
        ),
    ),
    check(
        "ck_invoices_grand_total_adds_up",
        "the grand total is the subtotal less discounts plus tax",
        _billing_change(
            "invoices",
            "draft",
            grand_total=Sql("grand_total + 1"),
            balance_due=Sql("balance_due + 1"),
        ),
    ),
    check(
        "ck_invoices_issued_at_when_issued",
        "a draft has no issue date",
        _billing_change("invoices", "draft", issued_at=Sql("now()")),
    ),
    check(
        "ck_invoices_line_items_array",
        "an invoice's lines are a list",
        _billing_change("invoices", "draft", line_items=Sql("'{}'::jsonb")),
    ),
    check(
        "ck_invoices_never_overpaid",
        "an invoice never takes more than it asks",
        _billing_change("invoices", "draft", amount_paid=Sql("grand_total + 1"), balance_due=-1),
    ),
    check(
        "ck_invoices_numbered_when_issued",
        "a draft takes no number",
        _billing_change("invoices", "draft", number="T/2026-27/999999"),
    ),
    check(
        "ck_invoices_refunds_within_paid",
        "an invoice never gives back more than it was paid",
        _billing_change("invoices", "draft", amount_refunded=1, balance_due=Sql("balance_due + 1")),
    ),
    check(
        "ck_invoices_status_known",
        "an invoice's status is one of its machine's",
        _billing_change(
            "invoices", "draft", status="void", number="T/void/1", issued_at=Sql("now()")
        ),
    ),
    check(
        "ck_invoices_tax_total_adds_up",
        "the tax total is CGST + SGST + IGST",
        _billing_change(
            "invoices",
            "draft",
            tax_total=Sql("tax_total + 1"),
            grand_total=Sql("grand_total + 1"),
            balance_due=Sql("balance_due + 1"),
        ),
    ),
    unique(
        "uq_invoices_tenant_id_number",
        "an invoice number is the clinic's once",
        _billing_copy("invoices", "invoice"),
    ),
    unique(
        "uq_invoices_draft_per_appointment",
        "an appointment has one open charge",
        _billing_copy("invoices", "draft"),
    ),
    check(
        "ck_invoice_counters_financial_year_form",
        "a counter counts one financial year, written 2026-27",
        _clinic_row(
            "insert into invoice_counters (tenant_id, financial_year, last_number)"
            " values (:tenant, '2026', 1)"
        ),
    ),
    check(
        "ck_invoice_counters_last_number_positive",
        "numbers count from 1",
        _clinic_row(
            "insert into invoice_counters (tenant_id, financial_year, last_number)"
            " values (:tenant, '2030-31', 0)"
        ),
    ),
    # ---- payments and refunds (on the pending payment: a captured one is frozen)
    check(
        "ck_payments_amount_positive",
        "a payment is of more than nothing",
        _billing_change("payments", "payment", amount=0),
    ),
    check(
        "ck_payments_captured_at_when_captured",
        "only money received has a capture time",
        _billing_change("payments", "payment", captured_at=Sql("now()")),
    ),
    check(
        "ck_payments_currency_inr",
        "payments are in rupees",
        _billing_change("payments", "payment", currency="USD"),
    ),
    check(
        "ck_payments_method_known",
        "a payment is cash, card, UPI or a link",
        _billing_change("payments", "payment", method="cheque"),
    ),
    check(
        "ck_payments_refunds_within_amount",
        "a payment never gives back more than it brought",
        _billing_change("payments", "payment", amount_refunded=Sql("amount + 1")),
    ),
    check(
        "ck_payments_status_known",
        "a payment's status is one of its machine's",
        _billing_change("payments", "payment", status="lost"),
    ),
    unique(
        "uq_payments_gateway_link",
        "a payment link settles one payment",
        _billing_copy("payments", "payment", gateway_payment_id=None, reference=None),
    ),
    unique(
        "uq_payments_gateway_payment",
        "a gateway's payment is recorded once",
        _billing_copy("payments", "payment", gateway_link_id=None, reference=None),
    ),
    unique(
        "uq_payments_upi_reference",
        "a UPI transfer (its UTR) pays once",
        _billing_copy("payments", "payment", gateway_link_id=None, gateway_payment_id=None),
    ),
    check(
        "ck_payments_refunds_amount_positive",
        "a refund is of more than nothing",
        _billing_change("payments_refunds", "refund", amount=0),
    ),
    check(
        "ck_payments_refunds_method_known",
        "money goes back through the gateway, or in cash, UPI or card",
        _billing_change("payments_refunds", "refund", method="bank"),
    ),
    check(
        "ck_payments_refunds_status_known",
        "a refund is pending, processed or failed",
        _billing_change("payments_refunds", "refund", status="lost"),
    ),
    unique(
        "uq_payments_refunds_gateway_refund",
        "a gateway's refund is recorded once",
        _billing_copy("payments_refunds", "refund"),
    ),
    # ---- the ledger (inserts: its rows are never updated)
    check(
        "ck_ledger_entries_amount_positive",
        "a ledger row moves more than nothing",
        _billing_copy("ledger_entries", "ledger_entry", amount=0),
    ),
    check(
        "ck_ledger_entries_currency_inr",
        "the ledger is in rupees",
        _billing_copy("ledger_entries", "ledger_entry", currency="USD"),
    ),
    check(
        "ck_ledger_entries_kind_known",
        "a ledger row is an invoice, payment, refund or credit note",
        _billing_copy("ledger_entries", "ledger_entry", kind="gift"),
    ),
    check(
        "ck_ledger_entries_kind_matches_type",
        "invoices and refunds are debits, payments and credit notes credits",
        _billing_copy("ledger_entries", "ledger_entry", kind="payment"),
    ),
    check(
        "ck_ledger_entries_type_known",
        "a ledger row is a debit or a credit",
        _billing_copy("ledger_entries", "ledger_entry", kind="payment", type="both"),
    ),
    # ---- webhooks and settings
    check(
        "ck_gateway_events_outcome_known",
        "a webhook was applied, changed nothing, is for review, or was ignored",
        _billing_change("gateway_events", "gateway_event", outcome="lost"),
    ),
    unique(
        "uq_gateway_events_event",
        "a gateway's event is applied once",
        _billing_copy("gateway_events", "gateway_event"),
    ),
    check(
        "ck_billing_settings_prepay_minutes_range",
        "a prepayment link lasts 5 minutes to a day",
        _clinic_row("update billing_settings set prepay_minutes = 1 where tenant_id = :tenant"),
    ),
    check(
        "ck_consultation_fees_amount_not_negative",
        "a fee is not negative",
        _clinic_row("update consultation_fees set amount = -1 where tenant_id = :tenant"),
    ),
]


def _second_facility(session: Session, w: World) -> None:
    """The world's clinic claiming a second facility id besides its own."""
    session.execute(
        text(
            "insert into abdm_facilities (facility_id, clinic_id, claimed_at)"
            " values ('IN0000000009', :t, now())"
        ),
        {"t": w.tenant_id},
    )


def _share_token(number: int = 1, life: str = "30 minutes", twice: bool = False) -> Write:
    """A Scan & Share token of the world's patient (``twice``: the same number again)."""

    def write(session: Session, w: World) -> None:
        for _ in range(2 if twice else 1):
            session.execute(
                text(
                    "insert into abdm_share_tokens (tenant_id, id, counter_id, day, number,"
                    " patient_id, abha_address_hash, request_id, issued_at, expires_at)"
                    " values (:t, gen_random_uuid(), 'desk-1', current_date, :n, :p,"
                    " '\\x01', gen_random_uuid(), now(), now() + cast(:life as interval))"
                ),
                {"t": w.tenant_id, "n": number, "p": w.patient, "life": life},
            )

    return write


def _abdm_row(statement: str, twice: bool = False) -> Write:
    """An ABDM sharing row of the world's clinic, written around the services."""

    def write(session: Session, w: World) -> None:
        for _ in range(2 if twice else 1):
            session.execute(
                text(statement), {"t": w.tenant_id, "p": w.patient, "v": w.clinical.visit}
            )

    return write


_CONSENT = (
    "insert into abdm_consents (tenant_id, id, consent_id, status, date_from, date_to,"
    " data_erase_at, received_at, updated_at) values (:t, gen_random_uuid(), 'c-1', {status},"
    " {dates}, now(), now())"
)
_TRANSFER = (
    "insert into abdm_transfers (tenant_id, id, consent_id, transaction_id, request_id,"
    " status, date_from, date_to, data_push_url, key_material, requested_at) values (:t,"
    " gen_random_uuid(), 'c-1', 'txn-1', gen_random_uuid(), {status}, now(), now(),"
    " 'https://hiu.example.in/push', '{{}}', now())"
)
_CARE_CONTEXT = (
    "insert into abdm_care_contexts (tenant_id, id, patient_id, visit_id, reference, display,"
    " happened_at, created_at) values (:t, gen_random_uuid(), :p, :v, {reference},"
    " 'Visit', now(), now())"
)
_DATES = "now(), now() + interval '1 year', now() + interval '2 years'"
_LINK_TOKEN = (
    "insert into abdm_link_tokens (tenant_id, id, patient_id, abha_address_hash,"
    " token_encrypted, expires_at, updated_at) values (:t, gen_random_uuid(), :p, '\\x01',"
    " '\\x02', {expiry}, now())"
)
_LINK_REQUEST = (
    "insert into abdm_link_requests (tenant_id, id, reference, transaction_id, patient_id,"
    " abha_address, care_contexts, otp_hash, expires_at, attempts, status, init_request_id,"
    " created_at) values (:t, gen_random_uuid(), 'ref-1', 'txn-1', :p, 'a@sbx', '[]', '\\x03',"
    " now(), {attempts}, {status}, gen_random_uuid(), now())"
)

ABDM_SHARING_CASES = [
    check(
        "ck_abdm_consents_status_known",
        "a consent is granted, revoked, expired or denied",
        _abdm_row(_CONSENT.format(status="'PAUSED'", dates=_DATES)),
    ),
    check(
        "ck_abdm_consents_granted_has_range",
        "a granted consent says which dates it covers and when its data is erased",
        _abdm_row(_CONSENT.format(status="'GRANTED'", dates="null, null, null")),
    ),
    unique(
        "uq_abdm_consents_consent_id",
        "a consent artefact is kept once",
        _abdm_row(_CONSENT.format(status="'GRANTED'", dates=_DATES), twice=True),
    ),
    check(
        "ck_abdm_transfers_status_known",
        "a transfer is requested, sent, refused or failed",
        _abdm_row(_TRANSFER.format(status="'lost'")),
    ),
    unique(
        "uq_abdm_transfers_transaction",
        "a health-information request is answered once",
        _abdm_row(_TRANSFER.format(status="'requested'"), twice=True),
    ),
    unique(
        "uq_abdm_care_contexts_visit",
        "a visit is one care context",
        _abdm_row(_CARE_CONTEXT.format(reference="cast(:v as text)"), twice=True),
    ),
    check(
        "ck_abdm_care_contexts_reference_is_visit",
        "a care context is named by its visit's id",
        _abdm_row(_CARE_CONTEXT.format(reference="'another'")),
    ),
    check(
        "ck_abdm_care_contexts_linked_says_by_whom",
        "a linked visit says whether the clinic or the patient linked it",
        _abdm_row(
            "insert into abdm_care_contexts (tenant_id, id, patient_id, visit_id, reference,"
            " display, happened_at, created_at, linked_at) values (:t, gen_random_uuid(), :p,"
            " :v, cast(:v as text), 'Visit', now(), now(), now())"
        ),
    ),
    check(
        "ck_abdm_link_tokens_token_has_expiry",
        "a kept link token says when it runs out",
        _abdm_row(_LINK_TOKEN.format(expiry="null")),
    ),
    unique(
        "uq_abdm_link_tokens_patient",
        "a patient has one link token row",
        _abdm_row(_LINK_TOKEN.format(expiry="now()"), twice=True),
    ),
    check(
        "ck_abdm_link_requests_status_known",
        "a link request is pending, linked or refused",
        _abdm_row(_LINK_REQUEST.format(status="'lost'", attempts="0")),
    ),
    check(
        "ck_abdm_link_requests_attempts_counted",
        "wrong OTP tries are counted up from none",
        _abdm_row(_LINK_REQUEST.format(status="'pending'", attempts="-1")),
    ),
    unique(
        "uq_abdm_link_requests_init",
        "a gateway's link call makes one request",
        _abdm_row(
            _LINK_REQUEST.replace("'ref-1'", "gen_random_uuid()::text")
            .replace("gen_random_uuid(), now())", "'0b7e3c52-6d0e-4c1a-9f3e-2f4b8f0d1a11', now())")
            .format(status="'pending'", attempts="0"),
            twice=True,
        ),
    ),
    unique(
        "uq_abdm_link_requests_reference",
        "a link reference names one request",
        _abdm_row(_LINK_REQUEST.format(status="'pending'", attempts="0"), twice=True),
    ),
]


ABDM_CASES = [
    check(
        "ck_abdm_share_tokens_number_positive",
        "token numbers start at 1",
        _share_token(number=0),
    ),
    check(
        "ck_abdm_share_tokens_expires_after_issue",
        "a token is valid for a while after it is given",
        _share_token(life="0 minutes"),
    ),
    unique(
        "uq_abdm_share_tokens_counter_day_number",
        "a counter gives each token number once a day",
        _share_token(twice=True),
    ),
    check(
        "ck_abdm_settings_environment_known",
        "ABDM is reached in its sandbox or in production",
        _clinic_row("update abdm_settings set environment = 'staging' where tenant_id = :tenant"),
    ),
    check(
        "ck_abdm_settings_facility_id_shape",
        "a facility id is written as HFR issues it: capital letters and digits",
        _clinic_row("update abdm_settings set facility_id = 'in 27' where tenant_id = :tenant"),
    ),
    unique(
        "uq_abdm_facilities_clinic_id",
        "a clinic is one facility on ABDM",
        _second_facility,
    ),
    check(
        "ck_patients_verified_abha_exists",
        "only an ABHA number on record can be verified",
        lambda s, w: change(s, "patients", w.patient, abha_verified_at=Sql("now()")),
    ),
    unique(
        "uq_patients_tenant_id_abha_address_hash",
        "one patient record per ABHA address in a clinic",
        lambda s, w: copy(
            s,
            "patients",
            w.patient,
            number=Sql("number + 1000000"),
            phone_hash=secrets.token_bytes(32),
        ),
        arrange=lambda s, w: change(s, "patients", w.patient, abha_address_hash=b"\x02" * 32),
    ),
]


_FIGURES = (
    "appointments_requested, appointments_confirmed, appointments_completed,"
    " appointments_no_show, revenue_gross, revenue_discounts, revenue_net, visits_total,"
    " visits_documented_complete, prescriptions_total, diet_plans_total, payments_failures"
)


def _day_row(day: str = "2026-11-10", *, completed: int = 1, documented: int = 1) -> Write:
    """A clinic's built day (report_daily), with the figures given and the rest zero."""
    return _clinic_row(
        f"insert into report_daily (tenant_id, id, date, time_zone, {_FIGURES}, money_in,"
        f" money_out, built_at) values (:tenant, gen_random_uuid(), '{day}', 'Asia/Kolkata',"
        f" 2, 2, {completed}, 0, 0, 0, 0, 2, {documented}, 0, 0, 0, '{{}}', '{{}}', now())"
    )


def _doctor_day_row(documented: int) -> Write:
    def write(session: Session, w: World) -> None:
        session.execute(
            text(
                f"insert into report_daily_doctors (tenant_id, date, doctor_id, {_FIGURES})"
                " values (:tenant, '2026-11-10', :doctor, 2, 2, 1, 0, 0, 0, 0, 2, :documented,"
                " 0, 0, 0)"
            ),
            {"tenant": w.tenant_id, "doctor": w.doctor, "documented": documented},
        )

    return write


def _no_show_row(hour: int, expected: int, no_show: int) -> Write:
    def write(session: Session, w: World) -> None:
        session.execute(
            text(
                "insert into report_daily_no_shows (tenant_id, date, doctor_id, hour, channel,"
                " expected, no_show) values (:tenant, '2026-11-10', :doctor, :hour, 'web',"
                " :expected, :no_show)"
            ),
            {
                "tenant": w.tenant_id,
                "doctor": w.doctor,
                "hour": hour,
                "expected": expected,
                "no_show": no_show,
            },
        )

    return write


REPORT_CASES = [
    unique(
        "uq_report_daily_tenant_id_date",
        "a clinic has one built row per date",
        _day_row(),
        arrange=_day_row(),
    ),
    check(
        "ck_report_daily_counts_not_negative",
        "no count is negative, and documented visits are among the visits",
        _day_row(documented=3),
    ),
    check(
        "ck_report_daily_doctors_counts_not_negative",
        "a doctor's documented visits are among their visits",
        _doctor_day_row(documented=-1),
    ),
    check(
        "ck_report_daily_no_shows_hour_of_day",
        "a no-show cell is an hour of the day",
        _no_show_row(hour=24, expected=1, no_show=0),
    ),
    check(
        "ck_report_daily_no_shows_no_show_within_expected",
        "no more no-shows than appointments expected",
        _no_show_row(hour=9, expected=1, no_show=2),
    ),
]


CASES: list[Case] = [
    # ---- uniqueness
    unique(
        "uq_appointments_tenant_id_slot_id_live",
        "a slot carries at most one live appointment",
        lambda s, w: copy(s, "appointments", w.appointment),
    ),
    unique(
        "uq_appointments_token",
        "one OPD token number per doctor and day",
        _token,
        arrange=_token,
    ),
    unique(
        "uq_waitlist_locks_open_slot",
        "a freed slot is offered to one waiting patient at a time",
        lambda s, w: copy(s, "waitlist_locks", w.offer),
    ),
    unique(
        "uq_patients_tenant_id_phone_hash",
        "one patient record per phone number in a clinic",
        lambda s, w: copy(s, "patients", w.patient, number=Sql("number + 1000000")),
    ),
    unique(
        "uq_patients_tenant_id_number",
        "patient numbers are never handed out twice in a clinic",
        lambda s, w: copy(s, "patients", w.patient, phone_hash=secrets.token_bytes(32)),
    ),
    unique(
        "uq_patients_tenant_id_abha_hash",
        "one patient record per ABHA number in a clinic",
        lambda s, w: copy(
            s,
            "patients",
            w.patient,
            number=Sql("number + 1000000"),
            phone_hash=secrets.token_bytes(32),
        ),
        arrange=lambda s, w: change(s, "patients", w.patient, abha_hash=b"\x01" * 32),
    ),
    unique(
        "uq_automation_events_tenant_id_dedupe_key",
        "an automation event is scheduled once per dedupe key in a clinic",
        lambda s, w: copy(s, "automation_events", w.automation_event),
    ),
    unique(
        "uq_notifications_outbox_tenant_id_dedupe_key",
        "a message with a dedupe key is queued once",
        lambda s, w: copy(s, "notifications_outbox", w.message),
        arrange=lambda s, w: change(s, "notifications_outbox", w.message, dedupe_key="once"),
    ),
    unique(
        "uq_users_tenant_id_email",
        "one staff sign-in per email address in a clinic",
        lambda s, w: copy(s, "users", w.staff_user),
    ),
    unique(
        "uq_users_tenant_id_phone_hash_patient",
        "one patient sign-in per phone number in a clinic",
        lambda s, w: copy(s, "users", w.patient_user),
    ),
    unique(
        "uq_devices_tenant_id_user_id_fingerprint_hash",
        "a user's device is known once",
        lambda s, w: copy(s, "devices", w.device),
    ),
    unique(
        "uq_sessions_tenant_id_token_hash",
        "a session token names one session",
        lambda s, w: copy(s, "sessions", w.session),
    ),
    unique(
        "uq_otp_tokens_attempt_hash",
        "a sign-in attempt has one code",
        lambda s, w: copy(s, "otp_tokens", w.otp),
    ),
    unique(
        "uq_doctor_profiles_tenant_id_user_id",
        "one doctor profile per doctor user",
        lambda s, w: copy(s, "doctor_profiles", w.doctor),
    ),
    unique(
        "uq_documents_tenant_id_series_id_version",
        "each version of a document is stored once",
        lambda s, w: copy(s, "documents", w.document),
    ),
    unique(
        "uq_documents_share_links_tenant_id_token_hash",
        "a share-link token opens one link",
        lambda s, w: copy(s, "documents_share_links", w.share_link),
    ),
    unique(
        "uq_consent_templates_tenant_id_type_version_language",
        "a consent version has one text in each language",
        lambda s, w: copy(s, "consent_templates", w.consent_template),
    ),
    unique(
        "uq_tenants_slug",
        "a clinic's address (slug) names one clinic",
        lambda s, w: copy(s, "tenants", w.tenant_id),
    ),
    unique(
        "uq_audit_events_tenant_id_lane_seq",
        "each lane of the audit trail has one event at each position",
        lambda s, w: copy(s, "audit_events", w.audit_event),
    ),
    # ---- no overlap
    Case(
        "ex_slots_no_overlap",
        pg.ExclusionViolation,
        "a doctor's slots never overlap",
        lambda s, w: copy(s, "slots", w.slot),
    ),
    # ---- statuses and other kinds (the StrEnum ones: one_of(...) in the models)
    check(
        "ck_appointments_status_known",
        "an appointment's status is an AppointmentStatus",
        lambda s, w: change(s, "appointments", w.appointment, status="booked"),
    ),
    check(
        "ck_appointments_channel_known",
        "an appointment came through a known channel",
        lambda s, w: change(s, "appointments", w.appointment, channel="fax"),
    ),
    check(
        "ck_slots_status_known",
        "a slot's status is a SlotStatus",
        lambda s, w: change(s, "slots", w.slot, status="double-booked"),
    ),
    check(
        "ck_waitlist_entries_status_known",
        "a waitlist entry's status is a WaitlistStatus",
        lambda s, w: change(s, "waitlist_entries", w.entry, status="maybe"),
    ),
    check(
        "ck_waitlist_locks_status_known",
        "an offer's status is an OfferStatus",
        lambda s, w: change(s, "waitlist_locks", w.offer, status="pending"),
    ),
    check(
        "ck_automation_events_status_known",
        "an automation event's status is an EventStatus",
        lambda s, w: change(s, "automation_events", w.automation_event, status="running"),
    ),
    check(
        "ck_automation_events_attempts_not_negative",
        "an automation event's attempts are counted up from zero",
        lambda s, w: change(s, "automation_events", w.automation_event, attempts=-1),
    ),
    check(
        "ck_notifications_outbox_status_known",
        "an outbox message's status is an OutboxStatus",
        lambda s, w: change(s, "notifications_outbox", w.message, status="lost"),
    ),
    check(
        "ck_notifications_outbox_attempts_not_negative",
        "a message's attempts are counted up from zero",
        lambda s, w: change(s, "notifications_outbox", w.message, attempts=-1),
    ),
    check(
        "ck_message_providers_channel_known",
        "a clinic's provider is for a known channel",
        lambda s, w: s.execute(
            text("update message_providers set channel = 'pigeon' where tenant_id = :t"),
            {"t": w.tenant_id},
        ),
    ),
    check(
        "ck_notifications_outbox_channel_known",
        "a message goes out on a known channel",
        lambda s, w: change(s, "notifications_outbox", w.message, channel="pigeon"),
    ),
    check(
        "ck_sessions_stage_known",
        "a session is at a known sign-in stage",
        lambda s, w: change(s, "sessions", w.session, stage="half-signed-in"),
    ),
    check(
        "ck_users_role_known",
        "a user has a known role",
        lambda s, w: change(s, "users", w.staff_user, role="owner"),
    ),
    check(
        "ck_users_staff_have_email",
        "staff sign in with an email address",
        lambda s, w: change(s, "users", w.staff_user, email=None),
    ),
    check(
        "ck_users_email_lower",
        "emails are kept in lower case (so uniqueness ignores case)",
        lambda s, w: change(s, "users", w.staff_user, email=Sql("upper(email)")),
    ),
    check(
        "ck_users_patients_have_phone",
        "patients sign in with a phone number",
        lambda s, w: change(s, "users", w.patient_user, phone_hash=None),
    ),
    check(
        "ck_patients_gender_known",
        "a patient's gender is one of the known answers",
        lambda s, w: change(s, "patients", w.patient, gender="unknown"),
    ),
    check(
        "ck_patients_dob_or_age",
        "a patient has a date of birth or an age",
        lambda s, w: change(s, "patients", w.patient, dob=None, age_years=None),
    ),
    check(
        "ck_patients_pin_code_six_digits",
        "a PIN code is six digits and does not start with 0",
        lambda s, w: change(s, "patients", w.patient, pin_code="041101"),
    ),
    check(
        "ck_patients_blood_group_known",
        "a blood group is one of the eight ABO/Rh groups",
        lambda s, w: change(s, "patients", w.patient, blood_group="C+"),
    ),
    check(
        "ck_patients_preferred_language_known",
        "a patient's language is one the clinic can write in",
        lambda s, w: change(s, "patients", w.patient, preferred_language="xx"),
    ),
    check(
        "ck_patients_phone_or_guardian",
        "a patient without a phone has a guardian",
        lambda s, w: change(s, "patients", w.patient, phone_hash=None),
    ),
    check(
        "ck_patients_not_own_guardian",
        "no patient is their own guardian",
        lambda s, w: change(s, "patients", w.patient, guardian_id=Sql("id")),
    ),
    check(
        "ck_documents_category_known",
        "a document is filed under a known category",
        lambda s, w: change(s, "documents", w.document, category="selfie"),
    ),
    check(
        "ck_documents_owner_type_known",
        "documents belong to patients",
        lambda s, w: change(s, "documents", w.document, owner_type="doctor"),
    ),
    check(
        "ck_consents_type_known",
        "a consent is of a known type",
        lambda s, w: change(s, "consents", w.consent, type="marketing"),
    ),
    check(
        "ck_consents_method_known",
        "a consent was given in a known way",
        lambda s, w: change(s, "consents", w.consent, method="telepathy"),
    ),
    check(  # the app role may not update consent texts: a new one is inserted
        "ck_consent_templates_type_known",
        "a consent text is of a known type",
        lambda s, w: copy(s, "consent_templates", w.consent_template, type="marketing"),
    ),
    check(
        "ck_consent_templates_language_known",
        "a consent text is in a language patients can choose",
        lambda s, w: copy(s, "consent_templates", w.consent_template, language="xx"),
    ),
    check(  # the audit trail is append-only for the app role: an event is inserted
        "ck_audit_events_action_known",
        "an audit event records a known action",
        lambda s, w: copy(s, "audit_events", w.audit_event, action="rewrite", seq=Sql("-seq")),
    ),
    check(
        "ck_audit_events_lane_range",
        "an audit event is in one of the clinic's eight lanes",
        lambda s, w: copy(s, "audit_events", w.audit_event, lane=8),
    ),
    check(
        "ck_audit_chain_heads_lane_range",
        "a clinic's audit trail has at most eight lanes",
        lambda s, w: s.execute(
            text(
                "insert into audit_chain_heads (tenant_id, lane, last_seq, last_hash)"
                " values (:t, -1, 0, repeat('0', 64))"
            ),
            {"t": w.tenant_id},
        ),
    ),
    check(
        "ck_availability_templates_weekday_range",
        "weekly hours fall on a day of the week (0-6)",
        lambda s, w: change(s, "availability_templates", w.weekly_hours, weekday=7),
    ),
    check(
        "ck_availability_templates_ends_after_start",
        "weekly hours end after they start",
        lambda s, w: change(
            s, "availability_templates", w.weekly_hours, end_time=Sql("start_time")
        ),
    ),
    check(
        "ck_availability_templates_slot_length",
        "slots last 5 to 240 minutes",
        lambda s, w: change(s, "availability_templates", w.weekly_hours, slot_minutes=4),
    ),
    check(
        "ck_availability_templates_buffers_positive",
        "buffers around a slot are never negative",
        lambda s, w: change(s, "availability_templates", w.weekly_hours, buffer_before=-5),
    ),
    check(
        "ck_availability_exceptions_ends_after_start",
        "time away ends after it starts",
        lambda s, w: change(s, "availability_exceptions", w.time_away, ends_at=Sql("starts_at")),
    ),
    check(
        "ck_slots_ends_after_start",
        "a slot ends after it starts",
        lambda s, w: change(s, "slots", w.slot, ends_at=Sql("starts_at")),
    ),
    check(
        "ck_waitlist_entries_until_after_from",
        "a waitlist entry's last day is not before its first",
        lambda s, w: change(s, "waitlist_entries", w.entry, until_date=Sql("from_date - 1")),
    ),
    *CLINICAL_CASES,
    *BILLING_CASES,
    *REPORT_CASES,
    *ABDM_CASES,
    *ABDM_SHARING_CASES,
]
BY_NAME = {case.constraint: case for case in CASES}
assert len(BY_NAME) == len(CASES), "two cases for one constraint"


@pytest.mark.parametrize("case", CASES, ids=[c.constraint for c in CASES])
def test_the_database_refuses_a_row_that_breaks(db: Database, world: World, case: Case) -> None:
    with scratch(db, world) as session:
        case.arrange(session, world)
        try:
            case.attempt(session, world)
        except IntegrityError as refused:
            error = refused.orig
        else:
            pytest.fail(
                f"PostgreSQL accepted a row that {case.constraint} should refuse "
                f"(rule: {case.rule}); is the constraint missing from the schema?"
            )
    assert isinstance(error, case.error), f"{case.constraint}: refused with {error!r}"
    assert error.diag.constraint_name == case.constraint, error.diag.message_primary


# --------------------------------------------------------------------------- partial ones


@dataclass(frozen=True)
class Allowed:
    constraint: str
    rule: str
    write: Write


def _copy_as(table: str, row: str, status: str) -> Write:
    """Copy the world's ``row`` of ``table`` in ``status``."""

    def write(session: Session, w: World) -> None:
        copy(session, table, getattr(w, row), status=status)

    return write


ALLOWED: list[Allowed] = [
    *(
        Allowed(
            "uq_appointments_tenant_id_slot_id_live",
            f"a {status} appointment gives its slot up to a new one",
            _copy_as("appointments", "appointment", status.value),
        )
        for status in SLOT_GIVEN_UP
    ),
    *(
        Allowed(
            "uq_waitlist_locks_open_slot",
            f"an offer once {status} leaves the slot free to offer again",
            _copy_as("waitlist_locks", "offer", status.value),
        )
        for status in OfferStatus
        if status != OfferStatus.OFFERED
    ),
    Allowed(
        "uq_users_tenant_id_phone_hash_patient",
        "a member of staff may have a patient's phone number",
        lambda s, w: copy(
            s,
            "users",
            w.patient_user,
            role="frontdesk",
            email=f"desk-{secrets.token_hex(3)}@example.in",
        ),
    ),
    Allowed(
        "ex_slots_no_overlap",
        "a slot may begin as the one before it ends",
        lambda s, w: copy(
            s,
            "slots",
            w.slot,
            starts_at=Sql("ends_at"),
            ends_at=Sql("ends_at + (ends_at - starts_at)"),
            occupied_from=Sql("occupied_until"),
            occupied_until=Sql("occupied_until + (occupied_until - occupied_from)"),
        ),
    ),
]


@pytest.mark.parametrize("allowed", ALLOWED, ids=[f"{a.constraint}: {a.rule}" for a in ALLOWED])
def test_a_partial_constraint_still_lets_through(
    db: Database, world: World, allowed: Allowed
) -> None:
    with scratch(db, world) as session:
        allowed.write(session, world)  # copy() asserts the row went in


# --------------------------------------------------------------------------- completeness

# Kinds of pg_constraint left out, and why.
STRUCTURAL = {
    "p": "a primary key is a row's identity, not a rule of the domain",
    "f": "a foreign key is the schema's structure (rows point at rows of their own clinic)",
    "n": "NOT NULL (PostgreSQL 18 lists it as a constraint) is a column's declaration, "
    "compared with the models by tests/test_migrations.py",
}
# Anything else left out, by name, and why.
NOT_RULES = {
    "ck_icd10_codes_kind_known": "ICD-10 reference data, loaded by the migration; the app "
    "role may only read it, so no app write can break it",
    "audit_guard_check": "the audit guard's commit check (audit/guard.py), installed into "
    "test databases by tests/conftest.py, not part of the migrated schema",
}
# What PostgreSQL raises for each kind it checks as a row is written.
ERRORS: dict[str, type[pg.IntegrityError]] = {
    "u": pg.UniqueViolation,  # a UNIQUE constraint
    "i": pg.UniqueViolation,  # a unique index
    "x": pg.ExclusionViolation,
    "c": pg.CheckViolation,
}

_CATALOG = text(
    """
    select c.conname, c.contype::text
    from pg_constraint c join pg_namespace n on n.oid = c.connamespace
    where n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
    union all
    select i.relname, 'i'
    from pg_index x
      join pg_class i on i.oid = x.indexrelid
      join pg_namespace n on n.oid = i.relnamespace
    where x.indisunique and not x.indisprimary
      and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
    """
)


def test_every_constraint_has_a_bypass_test(db: Database) -> None:
    """Every unique index, exclusion and CHECK constraint of the migrated database (the
    template the tests clone) has a case in :data:`CASES`, or a reason to be left out.
    """
    kinds: dict[str, set[str]] = {}
    with db.owner_engine.connect() as conn:
        for name, kind in conn.execute(_CATALOG):
            kinds.setdefault(name, set()).add(kind)
    rules = {name: found for name, found in kinds.items() if found - STRUCTURAL.keys()}

    untested = sorted(set(rules) - BY_NAME.keys() - NOT_RULES.keys())
    assert not untested, "\n".join(
        f"constraint {name} has no bypass test in tests/test_constraints.py" for name in untested
    )
    named = BY_NAME.keys() | NOT_RULES.keys() | {allowed.constraint for allowed in ALLOWED}
    stale = sorted(named - set(rules))
    assert not stale, f"cases for constraints the schema does not have: {stale}"
    wrong = {
        name: sorted(found)
        for name, found in rules.items()
        if name in BY_NAME and {ERRORS.get(kind) for kind in found} != {BY_NAME[name].error}
    }
    assert not wrong, f"cases expecting another error than their constraint's kind: {wrong}"


# --------------------------------------------------------------------------- frozen records

FROZEN = "OD001"  # migration 0015's SQLSTATE for a change to a signed or issued record


def _sign_visit(session: Session, w: World) -> None:
    change(
        session,
        "visits",
        w.clinical.visit,
        status="signed",
        soap_signed_version=1,
        soap_locked_at=Sql("now()"),
    )


def _issue_prescription(session: Session, w: World) -> None:
    change(
        session,
        "prescriptions",
        w.clinical.prescription,
        issued_at=Sql("now()"),
        signed_hash="h",
        signature=b"s",
        signing_key_id=w.clinical.signing_key,
        qr_data="https://example.in/rx/1",
    )


def _issue_diet_plan(session: Session, w: World) -> None:
    change(session, "diet_plans", w.clinical.diet_plan, issued_at=Sql("now()"))


FROZEN_WRITES: dict[str, tuple[Write, Write]] = {
    "a signed visit's note": (
        _sign_visit,
        _clinical_change("visits", "visit", soap_draft_encrypted=b"changed"),
    ),
    "a signed visit's status": (_sign_visit, _clinical_change("visits", "visit", status="draft")),
    "a new SOAP version of a signed visit": (_sign_visit, _soap_version(2)),
    "a diagnosis of a signed visit": (
        _sign_visit,
        _clinical_change("visits_diagnoses", "diagnosis", code="I10"),
    ),
    "a new vital on a signed visit": (_sign_visit, _clinical_copy("visits_vitals", "vital")),
    "a service of a signed visit": (
        _sign_visit,
        _clinical_change("visits_services", "visit_service", quantity=2),
    ),
    "an issued prescription": (
        _issue_prescription,
        _clinical_change("prescriptions", "prescription", qr_data="https://evil.example/"),
    ),
    "a medicine added to an issued prescription": (
        _issue_prescription,
        _prescription_item(duration_days=5, refill_remaining=0),
    ),
    "an issued diet plan's meals": (
        _issue_diet_plan,
        _clinical_change("diet_plans", "diet_plan", schedule='[{"day": 1, "meals": []}]'),
    ),
}


@pytest.mark.parametrize("what", list(FROZEN_WRITES))
def test_the_database_refuses_to_change(db: Database, world: World, what: str) -> None:
    freeze, attempt = FROZEN_WRITES[what]
    with scratch(db, world) as session:
        freeze(session, world)
        with pytest.raises(DBAPIError) as refused:
            attempt(session, world)
    error = refused.value.orig
    assert isinstance(error, pg.Error), error
    assert error.sqlstate == FROZEN, error


def test_an_issued_diet_plan_still_takes_the_patients_ticks(db: Database, world: World) -> None:
    with scratch(db, world) as session:
        _issue_diet_plan(session, world)
        change(
            session,
            "diet_plans",
            world.clinical.diet_plan,
            adherence_summary_completed_days=3,
            adherence_summary_last_updated=Sql("now()"),
            updated_at=Sql("now()"),
        )


def test_saved_soap_versions_cannot_be_rewritten_by_the_app(db: Database, world: World) -> None:
    with scratch(db, world) as session:
        _soap_version(1)(session, world)
        with pytest.raises(DBAPIError) as refused:
            session.execute(text("update visits_soap_versions set created_by = null"))
    assert isinstance(refused.value.orig, pg.InsufficientPrivilege)
