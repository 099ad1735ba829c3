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
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for, unaudited

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
