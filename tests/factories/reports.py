"""A clinic's past, written row by row with the times a test chooses, for the reports.

The report reads what happened and when: appointments' timelines, visits, prescriptions,
diet plans, invoices, payments, refunds and credit notes. Making each of those through
the services would tie every timestamp to a clock the services read at many points; a
report test needs "requested at 23:50, confirmed at 00:20" exactly. So these rows are
written straight into the tables (around the audit guard), each one consistent with the
table's constraints, and the report is then built by the real builder.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.billing.models import (
    Invoice,
    InvoiceStatus,
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
)
from opdesk.clinical.models import (
    Diagnosis,
    DietPlan,
    Prescription,
    SigningKey,
    Visit,
    VisitStatus,
)
from opdesk.db import Database
from opdesk.reports import build as reports
from opdesk.reports.models import ReportDaily, ReportDailyDoctor, ReportNoShow
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile, Slot
from opdesk.scheduling.models import AppointmentStatus as S
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for, make_tenant, unaudited
from tests.factories.people import make_doctor, patients

ZERO = Decimal("0.00")
Row = TypeVar("Row")
SLOT_MINUTES = 15


@dataclass
class History:
    """Writes one clinic's records at chosen clinic-local times."""

    db: Database
    tenant: Tenant
    zone: ZoneInfo
    _signing_key: uuid.UUID | None = None

    def at(self, day: date, hour: int, minute: int = 0) -> datetime:
        """``hour:minute`` on ``day`` at the clinic."""
        return datetime.combine(day, time(hour, minute), self.zone)

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        with transaction(self.db, ctx_for(self.tenant.id)) as session:
            unaudited(session)
            yield session

    def _add(self, row: Row) -> Row:
        with self._writing() as session:
            session.add(row)
        return row

    # ------------------------------------------------------------------ scheduling

    def appointment(
        self,
        doctor: DoctorProfile,
        patient: Any,
        *,
        slot_at: datetime,
        requested: datetime,
        status: AppointmentStatus,
        channel: str = "phone",
        **timeline: datetime,
    ) -> Appointment:
        """A booked slot at ``slot_at`` and its appointment; ``timeline`` gives the other
        moments by name (``confirmed``, ``completed``, ``no_show``, ``cancelled``...).
        """
        end = slot_at + timedelta(minutes=SLOT_MINUTES)
        slot = Slot(
            tenant_id=self.tenant.id,
            id=uuid.uuid4(),
            doctor_id=doctor.id,
            date=slot_at.astimezone(self.zone).date(),
            starts_at=slot_at,
            ends_at=end,
            occupied_from=slot_at,
            occupied_until=end,
            status="free" if status in (AppointmentStatus.CANCELLED,) else "booked",
            meta={"visitType": "consultation"},
        )
        times = {f"timeline_{name}_at": moment for name, moment in timeline.items()}
        appointment = Appointment(
            tenant_id=self.tenant.id,
            id=uuid.uuid4(),
            patient_id=patient.id,
            doctor_id=doctor.id,
            slot_id=slot.id,
            visit_type="consultation",
            channel=channel,
            status=status,
            timeline_requested_at=requested,
            updated_at=max([requested, *timeline.values()]),
            **times,
        )
        with self._writing() as session:
            session.add(slot)
            session.flush()
            session.add(appointment)
        return appointment

    # ------------------------------------------------------------------ clinical

    def visit(
        self, appointment: Appointment, *, opened: datetime, signed: bool, diagnoses: int = 0
    ) -> Visit:
        """A visit opened at ``opened``; its note signed (locked then) or still a draft."""
        visit = Visit(
            tenant_id=self.tenant.id,
            id=uuid.uuid4(),
            appointment_id=appointment.id,
            patient_id=appointment.patient_id,
            doctor_id=appointment.doctor_id,
            status=VisitStatus.DRAFT,
            created_at=opened,
            updated_at=opened,
        )
        with self._writing() as session:
            session.add(visit)
            session.flush()
            for position in range(diagnoses):
                session.add(
                    Diagnosis(
                        tenant_id=self.tenant.id,
                        id=uuid.uuid4(),
                        visit_id=visit.id,
                        patient_id=visit.patient_id,
                        doctor_id=visit.doctor_id,
                        code=("J06.9", "E11.9", "I10")[position % 3],
                        is_primary=position == 0,
                        position=position,
                        created_at=opened,
                    )
                )
            if signed:
                session.flush()
                visit.status = VisitStatus.SIGNED
                visit.soap_signed_version = 1
                visit.soap_locked_at = opened + timedelta(minutes=10)
        return visit

    def _key(self) -> uuid.UUID:
        if self._signing_key is None:
            key = SigningKey(
                tenant_id=self.tenant.id,
                id=uuid.uuid4(),
                public_key=b"\x00" * 32,
                private_key_encrypted=b"not a key: the report never signs",
                created_at=datetime(2026, 1, 1, tzinfo=self.zone),
            )
            self._add(key)
            self._signing_key = key.id
        return self._signing_key

    def prescription(
        self, visit: Visit, *, issued: datetime, supersedes: Prescription | None = None
    ) -> Prescription:
        return self._add(
            Prescription(
                tenant_id=self.tenant.id,
                id=uuid.uuid4(),
                visit_id=visit.id,
                patient_id=visit.patient_id,
                doctor_id=visit.doctor_id,
                version=1 if supersedes is None else supersedes.version + 1,
                supersedes=supersedes.id if supersedes else None,
                issued_at=issued,
                signed_hash="0" * 64,
                signature=b"\x00" * 64,
                signing_key_id=self._key(),
                qr_data="rx",
                created_at=issued,
                updated_at=issued,
            )
        )

    def diet_plan(self, visit: Visit, *, issued: datetime) -> DietPlan:
        return self._add(
            DietPlan(
                tenant_id=self.tenant.id,
                id=uuid.uuid4(),
                visit_id=visit.id,
                patient_id=visit.patient_id,
                doctor_id=visit.doctor_id,
                version=1,
                schedule=[],
                issued_at=issued,
                created_at=issued,
                updated_at=issued,
            )
        )

    # ------------------------------------------------------------------ money

    def invoice(
        self,
        patient: Any,
        *,
        issued: datetime,
        subtotal: str,
        discount: str = "0.00",
        tax: str = "0.00",
        appointment: Appointment | None = None,
        visit: Visit | None = None,
    ) -> Invoice:
        """An issued invoice (intra-state: its tax split into equal CGST and SGST)."""
        sub, off, gst = Decimal(subtotal), Decimal(discount), Decimal(tax)
        grand = sub - off + gst
        return self._add(
            Invoice(
                tenant_id=self.tenant.id,
                id=uuid.uuid4(),
                patient_id=patient.id,
                appointment_id=appointment.id if appointment else None,
                visit_id=visit.id if visit else None,
                number=f"RPT/26-27/{uuid.uuid4().hex[:12]}",  # unique, whoever writes
                status=InvoiceStatus.ISSUED,
                line_items=[],
                subtotal=sub,
                tax_total=gst,
                discount_total=off,
                grand_total=grand,
                balance_due=grand,
                cgst_total=gst / 2,
                sgst_total=gst / 2,
                igst_total=ZERO,
                amount_paid=ZERO,
                amount_refunded=ZERO,
                amount_credited=ZERO,
                issued_at=issued,
                created_at=issued,
                updated_at=issued,
            )
        )

    def payment(
        self, invoice: Invoice, *, amount: str, method: str, at: datetime, failed: bool = False
    ) -> Payment:
        """Money received at ``at`` (or a payment that failed then)."""
        return self._add(
            Payment(
                tenant_id=self.tenant.id,
                id=uuid.uuid4(),
                invoice_id=invoice.id,
                patient_id=invoice.patient_id,
                method=method,
                amount=Decimal(amount),
                status=PaymentStatus.FAILED if failed else PaymentStatus.CAPTURED,
                captured_at=None if failed else at,
                failed_at=at if failed else None,
                failure_reason="declined" if failed else None,
                created_at=at,
                updated_at=at,
            )
        )

    def refund(self, payment: Payment, *, amount: str, method: str, at: datetime) -> None:
        """Money given back at ``at``, and the credit note for the part of the bill it
        cancels, as billing writes them.
        """
        money = Decimal(amount)
        refund = PaymentRefund(
            tenant_id=self.tenant.id,
            id=uuid.uuid4(),
            payment_id=payment.id,
            invoice_id=payment.invoice_id,
            amount=money,
            status=RefundStatus.PROCESSED,
            method=method,
            reason="overcharged",
            created_at=at,
            processed_at=at,
        )
        with self._writing() as session:
            session.add(refund)
            session.flush()
            for kind, entry_type in (
                (LedgerKind.REFUND, "debit"),
                (LedgerKind.CREDIT_NOTE, "credit"),
            ):
                session.add(
                    LedgerEntry(
                        tenant_id=self.tenant.id,
                        id=uuid.uuid4(),
                        patient_id=payment.patient_id,
                        invoice_id=payment.invoice_id,
                        payment_id=payment.id,
                        refund_id=refund.id,
                        type=entry_type,
                        kind=kind,
                        amount=money,
                        description="refund",
                        created_at=at,
                    )
                )


# --------------------------------------------------------------------------- a known clinic

D = date(2026, 11, 10)  # a Tuesday
D1, D2 = D + timedelta(days=1), D + timedelta(days=2)


@dataclass(frozen=True)
class KnownClinic:
    tenant: Tenant
    a: uuid.UUID  # Dr A's profile
    b: uuid.UUID  # Dr B's profile
    patients: list[Any]


def known_clinic(db: Database, ident: Any, day: date = D) -> KnownClinic:
    """A clinic in India (UTC+5:30) with two doctors and these records, clinic-local:

    Day D (Tuesday 10 November 2026)
      a1  Dr A, phone    slot 10:00  requested and confirmed D-1 12:00, completed 10:20
          visit opened 10:05, signed with one diagnosis; prescription 10:15, corrected 10:18;
          diet plan 10:16; invoice 10:25: 500.00 less 50.00 discount; paid 450.00 cash 10:26
      a2  Dr A, web      slot 11:00  requested 09:00, confirmed 09:10 (600 s), no-show 11:30
      a3  Dr B, walk-in  slot 12:00  requested and confirmed 11:55 (0 s), completed 12:15
          visit opened 12:01, note not signed; a card payment failed 12:19;
          invoice 12:20: 1,000.00 + 180.00 GST; paid 1,180.00 UPI 12:21
      a4  Dr B, web      slot D+1 10:00  requested 23:50, confirmed D+1 00:20 (1,800 s) — across
          midnight: both moments are on D by the UTC date
      a counter sale (no doctor): invoice 13:00, 200.00 + 10.00 GST, paid 210.00 cash

    Day D+1
      a4  completed 10:20; visit opened 10:02, signed with two diagnoses; prescription 10:10
      a5  Dr A, phone    slot 16:00  requested 09:00, cancelled 09:30
      200.00 of a1's payment refunded in cash at 15:00 (with its credit note)

    Day D+2: nothing.

    ``day`` moves D (the tests of the pages, which run at today's date, put it in the
    past week).
    """
    tenant = make_tenant(db, "Report Clinic")
    dr_a = make_doctor(db, ident, tenant, name="Dr. Asha Rao")
    dr_b = make_doctor(db, ident, tenant, name="Dr. Bala Iyer")
    p = patients(db, ident, tenant, 5)
    h = History(db, tenant, ZoneInfo("Asia/Kolkata"))
    at = h.at
    d, d1 = day, day + timedelta(days=1)
    a1 = h.appointment(
        dr_a, p[0], channel="phone", slot_at=at(d, 10), status=S.COMPLETED,
        requested=at(d - timedelta(days=1), 12), confirmed=at(d - timedelta(days=1), 12),
        completed=at(d, 10, 20),
    )  # fmt: skip
    v1 = h.visit(a1, opened=at(d, 10, 5), signed=True, diagnoses=1)
    rx1 = h.prescription(v1, issued=at(d, 10, 15))
    h.prescription(v1, issued=at(d, 10, 18), supersedes=rx1)
    h.diet_plan(v1, issued=at(d, 10, 16))
    i1 = h.invoice(p[0], appointment=a1, issued=at(d, 10, 25), subtotal="500.00", discount="50.00")
    pay1 = h.payment(i1, amount="450.00", method="cash", at=at(d, 10, 26))

    h.appointment(
        dr_a, p[1], channel="web", slot_at=at(d, 11), status=S.NO_SHOW,
        requested=at(d, 9), confirmed=at(d, 9, 10), no_show=at(d, 11, 30),
    )  # fmt: skip
    a3 = h.appointment(
        dr_b, p[2], channel="walk-in", slot_at=at(d, 12), status=S.COMPLETED,
        requested=at(d, 11, 55), confirmed=at(d, 11, 55), completed=at(d, 12, 15),
    )  # fmt: skip
    h.visit(a3, opened=at(d, 12, 1), signed=False, diagnoses=1)
    i3 = h.invoice(p[2], appointment=a3, issued=at(d, 12, 20), subtotal="1000.00", tax="180.00")
    h.payment(i3, amount="1180.00", method="card", at=at(d, 12, 19), failed=True)
    h.payment(i3, amount="1180.00", method="upi", at=at(d, 12, 21))
    a4 = h.appointment(
        dr_b, p[3], channel="web", slot_at=at(d1, 10), status=S.COMPLETED,
        requested=at(d, 23, 50), confirmed=at(d1, 0, 20), completed=at(d1, 10, 20),
    )  # fmt: skip
    sale = h.invoice(p[4], issued=at(d, 13), subtotal="200.00", tax="10.00")
    h.payment(sale, amount="210.00", method="cash", at=at(d, 13, 1))

    v4 = h.visit(a4, opened=at(d1, 10, 2), signed=True, diagnoses=2)
    h.prescription(v4, issued=at(d1, 10, 10))
    h.appointment(
        dr_a, p[4], channel="phone", slot_at=at(d1, 16), status=S.CANCELLED,
        requested=at(d1, 9), cancelled=at(d1, 9, 30),
    )  # fmt: skip
    h.refund(pay1, amount="200.00", method="cash", at=at(d1, 15))
    return KnownClinic(tenant, dr_a.id, dr_b.id, p)


# --------------------------------------------------------------------------- reading


def build_days(db: Database, tenant: Tenant, first: date, last: date, **ctx: Any) -> reports.Built:
    """Build the clinic's report of ``first``..``last`` as the nightly rule would."""
    context = ctx_for(tenant.id, **ctx)
    with transaction(db, context) as session:
        return reports.build(session, context, ZoneInfo(tenant.timezone), first, last)


def clinic_days(db: Database, tenant: Tenant) -> dict[date, ReportDaily]:
    with transaction(db, ctx_for(tenant.id)) as session:
        rows = session.scalars(select(ReportDaily).order_by(ReportDaily.date)).all()
        session.expunge_all()
        return {r.date: r for r in rows}


def doctor_days(db: Database, tenant: Tenant) -> dict[tuple[date, uuid.UUID], ReportDailyDoctor]:
    with transaction(db, ctx_for(tenant.id)) as session:
        rows = session.scalars(select(ReportDailyDoctor)).all()
        session.expunge_all()
        return {(r.date, r.doctor_id): r for r in rows}


def no_show_rows(db: Database, tenant: Tenant) -> set[tuple[date, uuid.UUID, int, str, int, int]]:
    with transaction(db, ctx_for(tenant.id)) as session:
        return {
            (r.date, r.doctor_id, r.hour, r.channel, r.expected, r.no_show)
            for r in session.scalars(select(ReportNoShow))
        }
