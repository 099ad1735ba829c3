"""Visits: one per appointment, opened lazily when the doctor first opens the
consultation; the SOAP note (autosaved draft, saved versions, signing), addenda,
diagnoses and the follow-up.

Signing freezes the visit and everything recorded on it; PostgreSQL refuses any later
change (SQLSTATE ``OD001``, migration 0015), which :func:`frozen_as_conflict` turns
into a 409 for the caller.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.abdm import linking
from opdesk.automation import later_rules
from opdesk.clinical import icd
from opdesk.clinical.models import (
    Addendum,
    Diagnosis,
    Icd10Code,
    SoapVersion,
    Visit,
    VisitStatus,
    version_row_id,
)
from opdesk.clinical.schemas import DiagnosisOut
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput, NotFound
from opdesk.scheduling import booking
from opdesk.scheduling.models import Appointment, AppointmentStatus, Slot
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy import service as tenants

FROZEN_SQLSTATE = "OD001"
# Autosave keeps the draft; it adds a saved version only when the last one is older than
# this (an explicit save always adds one when the note changed).
AUTOSAVE_VERSION_EVERY = timedelta(minutes=3)
SOAP_PARTS = ("s", "o", "a", "p")
SOAP_LABELS = {"s": "Subjective", "o": "Objective", "a": "Assessment", "p": "Plan"}
MAX_PART = 20_000
MAX_ADDENDUM = 10_000
MAX_DIAGNOSIS_TEXT = 500
CLOSED = (AppointmentStatus.CANCELLED, AppointmentStatus.REFUNDED, AppointmentStatus.NO_SHOW)
SIGNED_MESSAGE = "this visit is signed and cannot change; add an addendum instead"


@dataclass(frozen=True)
class Soap:
    s: str = ""
    o: str = ""
    a: str = ""
    p: str = ""

    def as_dict(self) -> dict[str, str]:
        return {part: getattr(self, part) for part in SOAP_PARTS}

    @property
    def empty(self) -> bool:
        return not any(v.strip() for v in self.as_dict().values())


@dataclass(frozen=True)
class SavedNote:
    visit: Visit
    version: int | None  # the version this save added, if any


# --------------------------------------------------------------------------- helpers


@contextmanager
def frozen_as_conflict() -> Iterator[None]:
    """PostgreSQL's refusal to change a signed record, as the 409 the caller expects."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == FROZEN_SQLSTATE:
            raise Conflict(SIGNED_MESSAGE) from None
        raise


def where(visit_or_id: Any, tenant_id: uuid.UUID, table: str, column: str) -> dict[str, Any]:
    row_id = visit_or_id if isinstance(visit_or_id, uuid.UUID) else visit_or_id.id
    return {"tenant_id": tenant_id, "table": table, "column": column, "row_id": row_id}


def _check_soap(soap: Soap) -> None:
    errors = [
        FieldError(f"soap.{part}", f"{SOAP_LABELS[part]} is longer than {MAX_PART} characters")
        for part, value in soap.as_dict().items()
        if len(value) > MAX_PART
    ]
    if errors:
        raise InvalidInput(errors)


def _draft_visit(session: Session, visit_id: uuid.UUID) -> Visit:
    """The visit, locked, refused with 409 once signed."""
    visit = records.by_id(session, Visit, visit_id, lock=True)
    if visit.status == VisitStatus.SIGNED:
        raise Conflict(SIGNED_MESSAGE)
    return visit


# --------------------------------------------------------------------------- opening


def visit_of_appointment(session: Session, appointment_id: uuid.UUID) -> Visit | None:
    return session.execute(
        select(Visit).where(Visit.appointment_id == appointment_id)
    ).scalar_one_or_none()


def open_visit(session: Session, ctx: RequestContext, *, appointment_id: uuid.UUID) -> Visit:
    """The appointment's visit, made on first use (race-safe: two doctors' tabs opening it
    at once make one visit). 404 for an unknown or foreign appointment; 409 for one that
    was cancelled or missed.
    """
    # The visit first: the consultation screen asks for it on every load, and a visit is
    # only ever seen for an appointment of this clinic (row-level security), so the
    # appointment is needed only to open one (and to answer 404 when there is none).
    found = visit_of_appointment(session, appointment_id)
    if found is not None:
        return found
    appointment = records.by_id(session, Appointment, appointment_id)
    if appointment.status in CLOSED:
        raise Conflict(f"this appointment is {appointment.status.value}; no visit can be opened")
    now = ctx.now()
    visit_id = new_id()
    made = session.execute(
        insert(Visit)
        .values(
            tenant_id=ctx.tenant_id,
            id=visit_id,
            appointment_id=appointment.id,
            patient_id=appointment.patient_id,
            doctor_id=appointment.doctor_id,
            status=VisitStatus.DRAFT,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "appointment_id"])
        .returning(Visit.id)
    ).scalar_one_or_none()
    if made is not None:
        audit.record(
            ctx,
            entity="visits",
            entity_id=made,
            action="create",
            diff=audit.diff_of(None, {"appointmentId": appointment.id, "status": "draft"}),
        )
    visit = visit_of_appointment(session, appointment_id)
    assert visit is not None
    return visit


# --------------------------------------------------------------------------- the note


def _latest_version(session: Session, visit_id: uuid.UUID) -> SoapVersion | None:
    return session.execute(
        select(SoapVersion)
        .where(SoapVersion.visit_id == visit_id)
        .order_by(SoapVersion.v.desc())
        .limit(1)
    ).scalar_one_or_none()


def _open_version(cipher: FieldCipher, row: SoapVersion) -> Soap:
    parts = {}
    for part in SOAP_PARTS:
        sealed = getattr(row, f"{part}_encrypted")
        parts[part] = (
            ""
            if sealed is None
            else cipher.decrypt_str(
                sealed,
                **where(
                    version_row_id(row.visit_id, row.v),
                    row.tenant_id,
                    "visits_soap_versions",
                    f"{part}_encrypted",
                ),
            )
        )
    return Soap(**parts)


def _open_draft(cipher: FieldCipher, visit: Visit) -> Soap | None:
    if visit.soap_draft_encrypted is None:
        return None
    plain = cipher.decrypt_str(
        visit.soap_draft_encrypted,
        **where(visit, visit.tenant_id, "visits", "soap_draft_encrypted"),
    )
    return Soap(**{k: str(v) for k, v in json.loads(plain).items() if k in SOAP_PARTS})


def current_note(session: Session, cipher: FieldCipher, visit: Visit) -> Soap:
    """What the editor shows: the draft being typed, else the latest saved version."""
    draft = _open_draft(cipher, visit)
    if draft is not None:
        return draft
    latest = _latest_version(session, visit.id)
    return _open_version(cipher, latest) if latest is not None else Soap()


def versions(session: Session, cipher: FieldCipher, visit: Visit) -> list[tuple[SoapVersion, Soap]]:
    rows = session.execute(
        select(SoapVersion).where(SoapVersion.visit_id == visit.id).order_by(SoapVersion.v)
    ).scalars()
    return [(row, _open_version(cipher, row)) for row in rows]


def signed_note(session: Session, cipher: FieldCipher, visit: Visit) -> Soap | None:
    if visit.soap_signed_version is None:
        return None
    row = session.get(SoapVersion, (visit.tenant_id, visit.id, visit.soap_signed_version))
    return _open_version(cipher, row) if row is not None else None


def _add_version(
    session: Session, ctx: RequestContext, cipher: FieldCipher, visit: Visit, soap: Soap
) -> int:
    latest = _latest_version(session, visit.id)
    v = 1 if latest is None else latest.v + 1
    assert ctx.actor_id is not None, "a note has an author"
    row_id = version_row_id(visit.id, v)
    sealed = {
        f"{part}_encrypted": (
            cipher.encrypt(
                value,
                **where(row_id, visit.tenant_id, "visits_soap_versions", f"{part}_encrypted"),
            )
            if value
            else None
        )
        for part, value in soap.as_dict().items()
    }
    with frozen_as_conflict():
        session.add(
            SoapVersion(
                tenant_id=visit.tenant_id,
                visit_id=visit.id,
                v=v,
                created_at=ctx.now(),
                created_by=ctx.actor_id,
                **sealed,
            )
        )
        session.flush()
    return v


def save_note(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    visit_id: uuid.UUID,
    soap: Soap,
    explicit: bool,
) -> SavedNote:
    """Keep the note being typed. ``explicit`` (the doctor pressed Save) adds a version
    when the note differs from the last one; autosave adds one only when the last
    version is older than :data:`AUTOSAVE_VERSION_EVERY`.
    """
    _check_soap(soap)
    visit = _draft_visit(session, visit_id)
    now = ctx.now()
    latest = _latest_version(session, visit.id)
    changed = latest is None or _open_version(cipher, latest) != soap
    due = latest is None or now - latest.created_at >= AUTOSAVE_VERSION_EVERY
    added = None
    if changed and not soap.empty and (explicit or due):
        added = _add_version(session, ctx, cipher, visit, soap)
    with frozen_as_conflict():
        visit.soap_draft_encrypted = cipher.encrypt(
            json.dumps(soap.as_dict(), ensure_ascii=False),
            **where(visit, visit.tenant_id, "visits", "soap_draft_encrypted"),
        )
        visit.soap_draft_saved_at = now
        visit.updated_at = now
        session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of(
            {"soapDraft": "before"},
            {"soapDraft": "after", **({"soapVersion": added} if added else {})},
            redact={"soapDraft"},
        ),
    )
    return SavedNote(visit, added)


def sign(
    session: Session, ctx: RequestContext, cipher: FieldCipher, *, visit_id: uuid.UUID
) -> Visit:
    """Sign the note: the draft becomes the last version if it differs, the visit is
    locked for good (409 for a second signing; 422 for an empty note).
    """
    visit = _draft_visit(session, visit_id)
    draft = _open_draft(cipher, visit)
    latest = _latest_version(session, visit.id)
    latest_note = _open_version(cipher, latest) if latest is not None else None
    if draft is not None and not draft.empty and draft != latest_note:
        signed_v = _add_version(session, ctx, cipher, visit, draft)
    elif latest is not None and not (latest_note or Soap()).empty:
        signed_v = latest.v
    else:
        raise InvalidInput([FieldError("soap", "the note is empty; write it before signing")])
    now = ctx.now()
    with frozen_as_conflict():
        visit.status = VisitStatus.SIGNED
        visit.soap_signed_version = signed_v
        visit.soap_locked_at = now
        visit.signed_by = ctx.actor_id
        visit.soap_draft_encrypted = None
        visit.soap_draft_saved_at = None
        visit.updated_at = now
        session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="sign-off",
        from_state="draft",
        to_state="signed",
        diff=audit.diff_of(None, {"signedVersion": signed_v, "lockedAt": now}),
    )
    linking.visit_signed(session, ctx, visit)
    return visit


def add_addendum(
    session: Session, ctx: RequestContext, cipher: FieldCipher, *, visit_id: uuid.UUID, text: str
) -> Addendum:
    """A signed correction to a signed visit (a draft is corrected by editing it)."""
    visit = records.by_id(session, Visit, visit_id)
    text = text.strip()
    if not text:
        raise InvalidInput([FieldError("text", "write the correction")])
    if len(text) > MAX_ADDENDUM:
        raise InvalidInput([FieldError("text", f"is longer than {MAX_ADDENDUM} characters")])
    if visit.status != VisitStatus.SIGNED:
        raise Conflict("the visit is not signed yet: change the note itself")
    assert ctx.actor_id is not None
    row = Addendum(tenant_id=visit.tenant_id, id=new_id(), visit_id=visit.id)
    row.text_encrypted = cipher.encrypt(
        text, **where(row, visit.tenant_id, "visits_addenda", "text_encrypted")
    )
    row.created_at = ctx.now()
    row.created_by = ctx.actor_id
    session.add(row)
    session.flush()
    audit.record(
        ctx,
        entity="visits_addenda",
        entity_id=row.id,
        action="create",
        diff=audit.diff_of(None, {"visitId": visit.id, "text": text}, redact={"text"}),
    )
    return row


def addenda(session: Session, cipher: FieldCipher, visit: Visit) -> list[tuple[Addendum, str]]:
    rows = session.execute(
        select(Addendum).where(Addendum.visit_id == visit.id).order_by(Addendum.created_at)
    ).scalars()
    return [
        (
            r,
            cipher.decrypt_str(
                r.text_encrypted, **where(r, r.tenant_id, "visits_addenda", "text_encrypted")
            ),
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- diagnoses


def diagnoses(session: Session, visit_id: uuid.UUID) -> list[Diagnosis]:
    return list(
        session.execute(
            select(Diagnosis).where(Diagnosis.visit_id == visit_id).order_by(Diagnosis.position)
        ).scalars()
    )


def diagnosis_text(cipher: FieldCipher, row: Diagnosis) -> str | None:
    if row.text_encrypted is None:
        return None
    return cipher.decrypt_str(
        row.text_encrypted, **where(row, row.tenant_id, "visits_diagnoses", "text_encrypted")
    )


def add_diagnosis(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    visit_id: uuid.UUID,
    code: str | None,
    text: str | None,
    primary: bool = False,
) -> Diagnosis:
    """An ICD-10 code and/or free text; the first diagnosis is primary, and a new primary
    takes the mark from the old one.
    """
    code = (code or "").strip() or None
    text = (text or "").strip() or None
    if code is None and text is None:
        raise InvalidInput([FieldError("code", "choose an ICD-10 code or write the diagnosis")])
    if text is not None and len(text) > MAX_DIAGNOSIS_TEXT:
        raise InvalidInput([FieldError("text", f"is longer than {MAX_DIAGNOSIS_TEXT} characters")])
    known = icd.recordable(session, code) if code is not None else None
    visit = _draft_visit(session, visit_id)
    existing = diagnoses(session, visit.id)
    if known is not None and any(d.code == known.code for d in existing):
        raise Conflict(f"{known.code} is already recorded on this visit")
    primary = primary or not any(d.is_primary for d in existing)
    with frozen_as_conflict():
        if primary:
            session.execute(
                update(Diagnosis)
                .where(Diagnosis.visit_id == visit.id, Diagnosis.is_primary.is_(True))
                .values(is_primary=False)
            )
        row = Diagnosis(
            tenant_id=visit.tenant_id,
            id=new_id(),
            visit_id=visit.id,
            patient_id=visit.patient_id,
            doctor_id=visit.doctor_id,
            code=known.code if known else None,
            is_primary=primary,
            position=max((d.position for d in existing), default=0) + 1,
            created_at=ctx.now(),
        )
        if text is not None:
            row.text_encrypted = cipher.encrypt(
                text, **where(row, visit.tenant_id, "visits_diagnoses", "text_encrypted")
            )
        session.add(row)
        session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of(
            None,
            {"diagnosis": row.id, "code": row.code, "primary": primary, "text": text},
            redact={"text"},
        ),
    )
    return row


def _diagnosis_of(session: Session, visit: Visit, diagnosis_id: uuid.UUID) -> Diagnosis:
    row = records.by_id(session, Diagnosis, diagnosis_id)
    if row.visit_id != visit.id:
        raise NotFound(f"no diagnosis with id {diagnosis_id}")
    return row


def make_primary(
    session: Session, ctx: RequestContext, *, visit_id: uuid.UUID, diagnosis_id: uuid.UUID
) -> Diagnosis:
    visit = _draft_visit(session, visit_id)
    row = _diagnosis_of(session, visit, diagnosis_id)
    with frozen_as_conflict():
        session.execute(
            update(Diagnosis)
            .where(Diagnosis.visit_id == visit.id, Diagnosis.is_primary.is_(True))
            .values(is_primary=False)
        )
        row.is_primary = True
        session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of(None, {"primaryDiagnosis": row.id}),
    )
    return row


def remove_diagnosis(
    session: Session, ctx: RequestContext, *, visit_id: uuid.UUID, diagnosis_id: uuid.UUID
) -> None:
    visit = _draft_visit(session, visit_id)
    row = _diagnosis_of(session, visit, diagnosis_id)
    was_primary = row.is_primary
    with frozen_as_conflict():
        session.delete(row)
        session.flush()
        if was_primary:  # the next one up takes the mark: a visit with diagnoses has a primary
            following = diagnoses(session, visit.id)
            if following:
                following[0].is_primary = True
                session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of({"diagnosis": row.id, "code": row.code}, None),
    )


def recent_diagnoses(
    session: Session, cipher: FieldCipher, doctor_id: uuid.UUID, *, limit: int = 8
) -> list[tuple[str, str]]:
    """The doctor's most recently used ICD-10 codes (code, description), newest first."""
    last_used = (
        select(Diagnosis.code, func.max(Diagnosis.created_at).label("used"))
        .where(Diagnosis.doctor_id == doctor_id, Diagnosis.code.is_not(None))
        .group_by(Diagnosis.code)
        .subquery()
    )
    rows = session.execute(
        select(Icd10Code.code, Icd10Code.description)
        .join(last_used, last_used.c.code == Icd10Code.code)
        .order_by(last_used.c.used.desc())
        .limit(limit)
    ).all()
    return [(c, d) for c, d in rows]


# --------------------------------------------------------------------------- follow-up


def set_follow_up(
    session: Session,
    ctx: RequestContext,
    *,
    visit_id: uuid.UUID,
    recommended_at: date | None,
    interval_days: int | None,
) -> Visit:
    """When the patient should come back: a date, or a number of days (not both; neither
    clears it). The follow-up reminder is scheduled for that day.
    """
    if recommended_at is not None and interval_days is not None:
        raise InvalidInput(
            [FieldError("intervalDays", "give a date or a number of days, not both")]
        )
    today = tenants.today_at_clinic(session, ctx)
    if recommended_at is not None and recommended_at <= today:
        raise InvalidInput([FieldError("recommendedAt", "must be after today")])
    if interval_days is not None and not 1 <= interval_days <= 730:
        raise InvalidInput([FieldError("intervalDays", "must be between 1 and 730 days")])
    visit = _draft_visit(session, visit_id)
    before = {
        "recommendedAt": visit.follow_up_recommended_at,
        "intervalDays": visit.follow_up_interval_days,
    }
    with frozen_as_conflict():
        visit.follow_up_recommended_at = recommended_at
        visit.follow_up_interval_days = interval_days
        visit.updated_at = ctx.now()
        session.flush()
    due = follow_up_day(visit)
    if due is not None:
        later_rules.schedule_follow_up(
            session,
            ctx,
            entity_type="visits",
            entity_id=visit.id,
            patient_id=visit.patient_id,
            due=due,
        )
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of(
            before, {"recommendedAt": recommended_at, "intervalDays": interval_days}
        ),
    )
    return visit


def follow_up_day(visit: Visit) -> date | None:
    if visit.follow_up_recommended_at is not None:
        return visit.follow_up_recommended_at
    if visit.follow_up_interval_days is not None:
        opened: datetime = visit.created_at
        return opened.date() + timedelta(days=visit.follow_up_interval_days)
    return None


def book_follow_up(session: Session, ctx: RequestContext, *, visit_id: uuid.UUID) -> Appointment:
    """Book the doctor's first free slot on or after the follow-up day, as a follow-up of
    this visit's appointment (422 without a follow-up; 409 when no slot is free).
    """
    visit = records.by_id(session, Visit, visit_id)
    due = follow_up_day(visit)
    if due is None:
        raise InvalidInput([FieldError("recommendedAt", "set a follow-up date or interval first")])
    appointment = records.by_id(session, Appointment, visit.appointment_id)
    already = session.execute(
        select(Appointment.id).where(
            Appointment.follow_up_for == appointment.id, Appointment.status.not_in(CLOSED)
        )
    ).first()
    if already is not None:
        raise Conflict("a follow-up is already booked for this visit")
    slot_id = session.execute(
        select(Slot.id)
        .where(Slot.doctor_id == visit.doctor_id, Slot.date >= due, booking.claimable(ctx))
        .order_by(Slot.date, Slot.starts_at)
        .limit(1)
    ).scalar_one_or_none()
    if slot_id is None:
        raise Conflict(f"the doctor has no free slot on or after {due:%d %b %Y}")
    return booking.book(
        session,
        ctx,
        booking.BookingRequest(
            slot_id=slot_id,
            patient_id=visit.patient_id,
            visit_type=appointment.visit_type,
            channel="walk-in",  # booked in person, at the clinic
            origin=booking.Origin(follow_up_for=appointment.id),
        ),
    )


@dataclass(frozen=True)
class PastVisits:
    """The patient's newest signed visits with their diagnoses, and how many are older."""

    visits: list[Visit]
    diagnoses: dict[uuid.UUID, list[DiagnosisOut]]  # by visit id, in position order
    more: int  # signed visits older than those listed


def past_visits_summary(
    session: Session,
    cipher: FieldCipher,
    patient_id: uuid.UUID,
    *,
    before: Visit | None,
    limit: int = 20,
) -> PastVisits:
    """The patient's newest signed visits (not ``before``) and each one's diagnoses (with
    the ICD-10 description) in two queries, whatever the number of visits, plus the count
    of the signed visits not listed.
    """
    stmt = (
        select(Visit, func.count().over().label("total"))
        .where(Visit.patient_id == patient_id, Visit.status == VisitStatus.SIGNED)
        .order_by(Visit.created_at.desc())
        .limit(limit)
    )
    if before is not None:
        stmt = stmt.where(Visit.id != before.id)
    rows = session.execute(stmt).all()
    listed = [row.Visit for row in rows]
    total = rows[0].total if rows else 0
    found: dict[uuid.UUID, list[DiagnosisOut]] = {v.id: [] for v in listed}
    if listed:
        lines = session.execute(
            select(Diagnosis, Icd10Code.description)
            .outerjoin(Icd10Code, Icd10Code.code == Diagnosis.code)
            .where(Diagnosis.visit_id.in_(list(found)))
            .order_by(Diagnosis.visit_id, Diagnosis.position)
        ).all()
        for row, description in lines:
            found[row.visit_id].append(
                DiagnosisOut(
                    id=row.id,
                    code=row.code,
                    description=description if row.code else None,
                    text=diagnosis_text(cipher, row),
                    primary=row.is_primary,
                    position=row.position,
                )
            )
    return PastVisits(listed, found, total - len(listed))
