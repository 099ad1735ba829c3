"""Registering and changing patients; families sharing a phone; soft delete and restore."""

from __future__ import annotations

import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import phonenumbers
from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit, formatting, records
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput, NotFound, Unauthorized
from opdesk.identity import service as identity
from opdesk.identity.models import User
from opdesk.identity.service import Identity, Refusal, SignedIn
from opdesk.patients import sounds
from opdesk.patients.models import PHONE_PART_MIN, Patient, PatientPhoneKey
from opdesk.patients.schemas import (
    Allergy,
    EmergencyContact,
    Flags,
    Medication,
    OnlineSignUp,
    PatientCreate,
    PatientFields,
    PatientName,
    PatientOut,
    PatientUpdate,
)
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant

ENTITY = "patients"
OLDEST_AGE_YEARS = 125
ENCRYPTED = frozenset(
    {
        "phone",
        "email",
        "address",
        "abhaNumber",
        "abhaAddress",
        "allergies",
        "ongoingMedications",
        "emergencyContact",
    }
)
# Encrypted columns holding plain text (the others hold JSON).
TEXT_COLUMNS = frozenset(
    {
        "phone_encrypted",
        "email_encrypted",
        "address_encrypted",
        "abha_number_encrypted",
        "abha_address_encrypted",
    }
)


today_at_clinic = tenants.today_at_clinic


def age_of(patient: Patient, today: date) -> tuple[int, bool]:
    """Age in whole years, and whether it is an estimate (only an age was ever given)."""
    if patient.dob is not None:
        return _years_between(patient.dob, today), False
    assert patient.age_years is not None
    assert patient.age_recorded_on is not None
    return patient.age_years + _years_between(patient.age_recorded_on, today), True


def _years_between(start: date, end: date) -> int:
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


# --------------------------------------------------------------------------- encryption


def _where(patient: Patient, column: str) -> dict[str, Any]:
    return {
        "tenant_id": patient.tenant_id,
        "table": "patients",
        "column": column,
        "row_id": patient.id,
    }


def _seal(cipher: FieldCipher, patient: Patient, column: str, value: Any) -> bytes | None:
    if value is None:
        return None
    plain = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return cipher.encrypt(plain, **_where(patient, column))


def _open(cipher: FieldCipher, patient: Patient, column: str) -> Any:
    sealed = getattr(patient, column)
    if sealed is None:
        return None
    plain = cipher.decrypt_str(sealed, **_where(patient, column))
    return plain if column in TEXT_COLUMNS else json.loads(plain)


def read(cipher: FieldCipher, patient: Patient, today: date) -> PatientOut:
    """The patient with encrypted fields opened, as the API and pages show it."""
    age, estimate = age_of(patient, today)
    contact = _open(cipher, patient, "emergency_contact")
    return PatientOut(
        id=patient.id,
        number=patient.display_number,
        name=PatientName(first=patient.name_first, last=patient.name_last),
        phone=_open(cipher, patient, "phone_encrypted"),
        email=_open(cipher, patient, "email_encrypted"),
        dob=patient.dob,
        age_years=age,
        age_is_estimate=estimate,
        gender=patient.gender,
        city=patient.city,
        address=_open(cipher, patient, "address_encrypted"),
        pin_code=patient.pin_code,
        blood_group=patient.blood_group,
        preferred_language=patient.preferred_language or "en",
        abha_number=formatting.abha_number(_open(cipher, patient, "abha_number_encrypted")) or None,
        abha_address=_open(cipher, patient, "abha_address_encrypted"),
        abha_verified_at=patient.abha_verified_at,
        registered_online=bool(patient.registered_online),
        allergies=[Allergy.model_validate(a) for a in _open(cipher, patient, "allergies") or []],
        chronic_conditions=list(patient.chronic_conditions or []),
        ongoing_medications=[
            Medication.model_validate(m)
            for m in _open(cipher, patient, "ongoing_medications") or []
        ],
        emergency_contact=EmergencyContact.model_validate(contact) if contact else None,
        flags=Flags(vip=patient.flags_vip, blocked=patient.flags_blocked),
        consents=list(patient.consents or []),
        guardian_id=patient.guardian_id,
        guardian_relation=patient.guardian_relation,
        created_at=patient.created_at,
        updated_at=patient.updated_at,
        deleted_at=patient.deleted_at,
    )


def _snapshot(patient: Patient) -> dict[str, Any]:
    """What an audit diff compares; encrypted fields appear only as changed/unchanged."""
    return {
        "name": {"first": patient.name_first, "last": patient.name_last},
        "phone": patient.phone_encrypted,
        "email": patient.email_encrypted,
        "dob": patient.dob,
        "ageYears": patient.age_years,
        "gender": patient.gender,
        "city": patient.city,
        "address": patient.address_encrypted,
        "pinCode": patient.pin_code,
        "bloodGroup": patient.blood_group,
        "preferredLanguage": patient.preferred_language,
        "abhaNumber": patient.abha_number_encrypted,
        "abhaAddress": patient.abha_address_encrypted,
        "abhaVerifiedAt": patient.abha_verified_at,
        "registeredOnline": bool(patient.registered_online),
        "allergies": patient.allergies,
        "chronicConditions": list(patient.chronic_conditions or []),
        "ongoingMedications": patient.ongoing_medications,
        "emergencyContact": patient.emergency_contact,
        "flags": {"vip": patient.flags_vip, "blocked": patient.flags_blocked},
        "guardianId": patient.guardian_id,
        "guardianRelation": patient.guardian_relation,
    }


# --------------------------------------------------------------------------- checks


def _check_dates(fields: PatientFields, today: date) -> list[FieldError]:
    errors = []
    if fields.dob is not None:
        if fields.dob > today:
            errors.append(FieldError("dob", "is in the future"))
        elif fields.dob < today - timedelta(days=366 * OLDEST_AGE_YEARS):
            errors.append(FieldError("dob", f"is more than {OLDEST_AGE_YEARS} years ago"))
    return errors


def _guardian(session: Session, guardian_id: uuid.UUID, patient_id: uuid.UUID | None) -> Patient:
    try:
        guardian = records.by_id(session, Patient, guardian_id)
    except NotFound as exc:  # as a field error the form can show
        raise InvalidInput([FieldError("guardianId", "no such patient in this clinic")]) from exc
    if guardian.id == patient_id:
        raise InvalidInput([FieldError("guardianId", "a patient cannot be their own guardian")])
    if guardian.phone_hash is None:
        raise InvalidInput(
            [FieldError("guardianId", "the guardian must have a phone of their own")]
        )
    return guardian


def _phone_taken(session: Session, phone_hash: bytes, except_id: uuid.UUID | None) -> None:
    existing = session.execute(
        select(Patient)
        .where(Patient.phone_hash == phone_hash)
        .execution_options(include_deleted=True)
    ).scalar_one_or_none()
    if existing is not None and existing.id != except_id:
        where = " (deleted; an admin can restore it)" if existing.deleted_at else ""
        raise Conflict(
            f"this mobile number is already registered to {existing.display_number}{where}",
            existingId=str(existing.id),
            existingNumber=existing.display_number,
        )


ABHA_PURPOSE = "abha-number"  # its own blind-index space: never equal to a phone's


def abha_hash(cipher: FieldCipher, digits: str) -> bytes:
    """The blind index of an ABHA number's 14 digits (unique per clinic)."""
    return cipher.blind_index(digits, purpose=ABHA_PURPOSE)


def _abha_taken(session: Session, digest: bytes, except_id: uuid.UUID | None) -> None:
    existing = session.execute(
        select(Patient).where(Patient.abha_hash == digest).execution_options(include_deleted=True)
    ).scalar_one_or_none()
    if existing is not None and existing.id != except_id:
        where = " (deleted; an admin can restore it)" if existing.deleted_at else ""
        raise Conflict(
            f"ABHA number: already registered to {existing.display_number}{where}",
            field="abhaNumber",
            existingId=str(existing.id),
            existingNumber=existing.display_number,
        )


ABHA_ADDRESS_PURPOSE = "abha-address"


def abha_address_hash(cipher: FieldCipher, address: str) -> bytes:
    """The blind index of an ABHA address (lower case; unique per clinic)."""
    return cipher.blind_index(address, purpose=ABHA_ADDRESS_PURPOSE)


def _address_taken(session: Session, digest: bytes, except_id: uuid.UUID | None) -> None:
    existing = session.execute(
        select(Patient)
        .where(Patient.abha_address_hash == digest)
        .execution_options(include_deleted=True)
    ).scalar_one_or_none()
    if existing is not None and existing.id != except_id:
        where = " (deleted; an admin can restore it)" if existing.deleted_at else ""
        raise Conflict(
            f"ABHA address: already registered to {existing.display_number}{where}",
            field="abhaAddress",
            existingId=str(existing.id),
            existingNumber=existing.display_number,
        )


def _check_abha(
    session: Session, cipher: FieldCipher, fields: PatientFields, except_id: uuid.UUID | None
) -> None:
    given = fields.model_fields_set
    if "abha_number" in given and fields.abha_number:
        _abha_taken(session, abha_hash(cipher, fields.abha_number), except_id)
    if "abha_address" in given and fields.abha_address:
        _address_taken(session, abha_address_hash(cipher, fields.abha_address), except_id)


def _conflict_of(exc: IntegrityError) -> Conflict:
    """A unique index that a concurrent registration won, said for the field it guards."""
    if "abha_address_hash" in str(exc.orig):
        return Conflict("ABHA address: was just registered to another patient", field="abhaAddress")
    if "abha_hash" in str(exc.orig):
        return Conflict("ABHA number: was just registered to another patient", field="abhaNumber")
    return Conflict("this mobile number was just registered to another patient")


def count_names(session: Session, patient: Patient, delta: int) -> None:
    """Keep the clinic's name vocabulary (for fuzzy search) in step with its patients."""
    keys = sorted({k for k in (patient.first_key, patient.last_key) if k})
    for key in keys:  # sorted: concurrent writers lock vocabulary rows in one order
        session.execute(
            text(
                "insert into patient_names as n (tenant_id, key, patients) values (:t, :k, :d) "
                "on conflict (tenant_id, key) do update set patients = n.patients + :d"
            ),
            {"t": patient.tenant_id, "k": key, "d": delta},
        )


# --------------------------------------------------------------------------- search keys


def set_sound_keys(patient: Patient) -> None:
    """The sound of each name (``patients/sounds.py``): finds a name across scripts."""
    patient.first_sound = sounds.name_key(patient.name_first)
    patient.last_sound = sounds.name_key(patient.name_last or "")


PHONE_PART_KEY_BYTES = 16


def phone_part_key(cipher: FieldCipher, end: str, digits: str) -> bytes:
    """The blind index of the first (``end="start"``) or last (``"end"``) digits of a phone."""
    return cipher.blind_index(digits, purpose=f"phone-{end}")[:PHONE_PART_KEY_BYTES]


def national_digits(phone: str) -> str:
    """``+919822043210`` as ``9822043210``: the digits a desk types, without the country."""
    return str(phonenumbers.parse(phone).national_number)


def phone_part_keys(cipher: FieldCipher, phone: str) -> set[bytes]:
    """The keys of the first and the last 5, 6, ... digits (all but the whole number)."""
    digits = national_digits(phone)
    return {
        phone_part_key(cipher, end, part)
        for length in range(PHONE_PART_MIN, len(digits))
        for end, part in (("start", digits[:length]), ("end", digits[-length:]))
    }


def index_phone(session: Session, cipher: FieldCipher, patient: Patient, phone: str | None) -> None:
    """Replace the patient's partial-phone keys with those of ``phone`` (none for None)."""
    session.execute(
        sql_delete(PatientPhoneKey).where(
            PatientPhoneKey.tenant_id == patient.tenant_id,
            PatientPhoneKey.patient_id == patient.id,
        )
    )
    if phone:
        rows = [
            {"tenant_id": patient.tenant_id, "key": key, "patient_id": patient.id}
            for key in sorted(phone_part_keys(cipher, phone))
        ]
        session.execute(insert(PatientPhoneKey), rows)


def next_number(session: Session, tenant_id: uuid.UUID) -> int:
    """The clinic's next patient number; the counter row lock keeps numbers unique."""
    return int(
        session.execute(
            text(
                "insert into patient_counters as c (tenant_id, last_number) values (:t, 1) "
                "on conflict (tenant_id) do update set last_number = c.last_number + 1 "
                "returning c.last_number"
            ),
            {"t": tenant_id},
        ).scalar_one()
    )


# --------------------------------------------------------------------------- writes


def register(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    data: PatientCreate,
    online: bool = False,
) -> Patient:
    """A new patient with the next patient number; a phone also gets an OTP sign-in.

    ``online``: the patient registered themselves while booking (their phone proven by
    a code); the desk completes the record at the visit.
    """
    assert ctx.tenant_id is not None
    today = today_at_clinic(session, ctx)
    errors = _check_dates(data, today)
    if errors:
        raise InvalidInput(errors)
    if data.guardian_id is not None:
        _guardian(session, data.guardian_id, None)
    phone_hash = ident.cipher.blind_index(data.phone, purpose="phone") if data.phone else None
    if phone_hash is not None:
        _phone_taken(session, phone_hash, None)
    _check_abha(session, ident.cipher, data, None)
    now = ctx.now()
    patient = Patient(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        number=next_number(session, ctx.tenant_id),
        phone_hash=phone_hash,
        name_first=data.name.first,
        name_last=data.name.last,
        gender=data.gender,
        preferred_language=data.preferred_language or "en",
        registered_online=online,
        consents=[],
        created_at=now,
        updated_at=now,
    )
    _apply(patient, ident.cipher, data, today)
    set_sound_keys(patient)
    try:
        with session.begin_nested():
            session.add(patient)
    except IntegrityError as exc:  # a concurrent registration won the phone or ABHA number
        raise _conflict_of(exc) from exc
    count_names(session, patient, +1)
    index_phone(session, ident.cipher, patient, data.phone)
    if data.phone:
        _ensure_login(session, ctx, ident, data.phone, patient.full_name)
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=patient.id,
        action="create",
        diff=audit.diff_of({}, _snapshot(patient), redact=ENCRYPTED),
    )
    return patient


def _apply(patient: Patient, cipher: FieldCipher, fields: PatientFields, today: date) -> None:
    given = fields.model_fields_set
    if "email" in given:
        patient.email_encrypted = _seal(cipher, patient, "email_encrypted", fields.email)
    if "phone" in given:
        patient.phone_encrypted = _seal(cipher, patient, "phone_encrypted", fields.phone)
    if "dob" in given and fields.dob is not None:
        patient.dob, patient.age_years, patient.age_recorded_on = fields.dob, None, None
    if "age_years" in given and fields.age_years is not None:
        patient.dob, patient.age_years, patient.age_recorded_on = None, fields.age_years, today
    for name in ("gender", "city", "guardian_relation"):
        if name in given and (name != "gender" or fields.gender is not None):
            setattr(patient, name, getattr(fields, name))
    if "guardian_id" in given:
        patient.guardian_id = fields.guardian_id
    for name in ("pin_code", "blood_group"):
        if name in given:
            setattr(patient, name, getattr(fields, name))
    if "preferred_language" in given and fields.preferred_language is not None:
        patient.preferred_language = fields.preferred_language
    if "address" in given and fields.address != _open(cipher, patient, "address_encrypted"):
        patient.address_encrypted = _seal(cipher, patient, "address_encrypted", fields.address)
    if "abha_number" in given:
        _set_abha(cipher, patient, fields.abha_number)
    if "abha_address" in given:
        _set_abha_address(cipher, patient, fields.abha_address)
    if "chronic_conditions" in given:
        patient.chronic_conditions = list(fields.chronic_conditions or [])
    if "allergies" in given:
        patient.allergies = _seal(cipher, patient, "allergies", _dump(fields.allergies))
    if "ongoing_medications" in given:
        meds = _dump(fields.ongoing_medications)
        patient.ongoing_medications = _seal(cipher, patient, "ongoing_medications", meds)
    if "emergency_contact" in given:
        contact = fields.emergency_contact.model_dump() if fields.emergency_contact else None
        patient.emergency_contact = _seal(cipher, patient, "emergency_contact", contact)
    if "flags" in given and fields.flags is not None:
        patient.flags_vip, patient.flags_blocked = fields.flags.vip, fields.flags.blocked


def _set_abha(cipher: FieldCipher, patient: Patient, digits: str | None) -> None:
    """Store the ABHA number sealed, with its blind index (unchanged: nothing rewritten)."""
    if digits == _open(cipher, patient, "abha_number_encrypted"):
        return
    patient.abha_number_encrypted = _seal(cipher, patient, "abha_number_encrypted", digits)
    patient.abha_hash = abha_hash(cipher, digits) if digits else None
    # A proof was of the old number; the new one is unproven until its own OTP.
    patient.abha_verified_at = None


def _set_abha_address(cipher: FieldCipher, patient: Patient, address: str | None) -> None:
    if address == _open(cipher, patient, "abha_address_encrypted"):
        return
    patient.abha_address_encrypted = _seal(cipher, patient, "abha_address_encrypted", address)
    patient.abha_address_hash = abha_address_hash(cipher, address) if address else None


def _dump(items: list[Any] | None) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items or []]


@dataclass(frozen=True)
class OnlineRegistration:
    patient: Patient
    created: bool  # False: the phone already had a patient here, who is signed in instead
    signed_in: SignedIn


PROOF_SPENT = "Your code check has expired or was used already. Ask for a new code."


def register_online(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    clinic: Tenant,
    sign_up: OnlineSignUp,
) -> OnlineRegistration:
    """A patient new to the clinic registers while booking, and is signed in.

    Only after a verified code, and only for the phone it went to at the clinic that
    sent it: each record costs a code (the clinic's SMS limits) and the proof works
    once, for this and the session together. A phone that already has a patient here
    gets that record, not a second one. The record is flagged ``registered_online`` for
    the desk to complete. The caller is inside ``clinic`` (``enter_tenant``).
    """
    proven = identity.proven_phone(session, ident, proof=sign_up.proof, now=ctx.now())
    if proven is None or proven.clinic_id != clinic.id:
        raise Unauthorized(PROOF_SPENT)
    phone_hash = ident.cipher.blind_index(sign_up.phone, purpose="phone")
    if not hmac.compare_digest(phone_hash, proven.phone_hash):
        raise InvalidInput([FieldError("phone", "is not the number the code was sent to")])
    patient = session.execute(
        select(Patient).where(Patient.phone_hash == phone_hash)
    ).scalar_one_or_none()
    created = patient is None
    if patient is None:
        data = PatientCreate(
            name=sign_up.name,
            phone=sign_up.phone,
            dob=sign_up.dob,
            age_years=sign_up.age_years,
            gender=sign_up.gender,
            preferred_language=sign_up.preferred_language,
        )
        try:
            patient = register(session, ctx, ident, data=data, online=True)
        except Conflict as exc:  # a deleted record holds the phone
            raise Conflict(
                f"{clinic.name} has a closed record with this mobile number. "
                "Please call the clinic to reopen it."
            ) from exc
    signed = identity.patient_sign_in(
        session,
        ctx,
        ident,
        proof=sign_up.proof,
        clinic=clinic.slug,
        device_token=sign_up.device_token,
    )
    if isinstance(signed, Refusal):  # used at the same moment elsewhere: undo the record
        raise Unauthorized(signed.detail)
    return OnlineRegistration(patient, created, signed)


def _ensure_login(
    session: Session, ctx: RequestContext, ident: Identity, phone: str, name: str
) -> None:
    phone_hash = ident.cipher.blind_index(phone, purpose="phone")
    exists = session.execute(
        select(User.id).where(User.role == "patient", User.phone_hash == phone_hash)
    ).first()
    if exists is None:
        identity.create_user(session, ctx, ident, name=name, role="patient", phone=phone)


def update(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    patient_id: uuid.UUID,
    changes: PatientUpdate,
) -> Patient:
    patient = records.by_id(session, Patient, patient_id, lock=True)
    today = today_at_clinic(session, ctx)
    errors = _check_dates(changes, today)
    if errors:
        raise InvalidInput(errors)
    given = changes.model_fields_set
    if "guardian_id" in given and changes.guardian_id is not None:
        _guardian(session, changes.guardian_id, patient.id)
    _check_abha(session, ident.cipher, changes, patient.id)
    before = _snapshot(patient)
    if "phone" in given:
        new_hash = (
            ident.cipher.blind_index(changes.phone, purpose="phone") if changes.phone else None
        )
        if new_hash is not None and new_hash != patient.phone_hash:
            _phone_taken(session, new_hash, patient.id)
        if new_hash is None and (changes.guardian_id or patient.guardian_id) is None:
            raise InvalidInput([FieldError("phone", "needed unless a guardian's phone is shared")])
        patient.phone_hash = new_hash
    renamed = "name" in given and changes.name is not None
    if renamed and changes.name is not None:
        count_names(session, patient, -1)
        patient.name_first, patient.name_last = changes.name.first, changes.name.last
        set_sound_keys(patient)
    _apply(patient, ident.cipher, changes, today)
    if "registered_online" in given and changes.registered_online is False:
        patient.registered_online = False  # the desk completed the record
    after = _snapshot(patient)
    if after == before:
        return patient
    patient.updated_at = ctx.now()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise _conflict_of(exc) from exc
    if renamed:
        session.refresh(patient, ["first_key", "last_key"])
        count_names(session, patient, +1)
    if "phone" in given:
        index_phone(session, ident.cipher, patient, changes.phone)
    if "phone" in given and changes.phone:
        _ensure_login(session, ctx, ident, changes.phone, patient.full_name)
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=patient.id,
        action="update",
        diff=audit.diff_of(before, after, redact=ENCRYPTED),
    )
    return patient


def set_standing_consents(
    session: Session, ctx: RequestContext, patient: Patient, standing: list[dict[str, Any]]
) -> None:
    """The consents embedded in the patient record (the consents domain decides which)."""
    before, patient.consents = patient.consents, standing
    session.flush()
    if before != standing:
        audit.record(
            ctx,
            entity="patients",
            entity_id=patient.id,
            action="update",
            diff=audit.diff_of({"consents": before}, {"consents": standing}),
        )


def get(session: Session, patient_id: uuid.UUID) -> Patient:
    return records.by_id(session, Patient, patient_id)


def delete(
    session: Session,
    ctx: RequestContext,
    *,
    patient_id: uuid.UUID,
    move_dependents_to: uuid.UUID | None = None,
) -> None:
    """Soft delete. A guardian whose family shares their phone is deleted only together
    with moving that family to another guardian (``move_dependents_to``): otherwise the
    children would be reachable by no phone, so the delete is refused (409) naming them.
    """
    patient = records.by_id(session, Patient, patient_id, lock=True)
    family = dependents(session, patient.id)
    if family and move_dependents_to is None:
        names = ", ".join(p.full_name for p in family)
        raise Conflict(
            f"{patient.full_name} is the guardian of {names}, who share this phone. "
            "Move them to another guardian, or give each their own mobile number, first.",
            dependents=[str(p.id) for p in family],
        )
    if family and move_dependents_to is not None:
        if move_dependents_to in {p.id for p in family}:
            raise InvalidInput(
                [FieldError("moveDependentsTo", "must be someone other than the dependents")]
            )
        new_guardian = _guardian(session, move_dependents_to, patient.id)
        for child in family:
            _move_to_guardian(session, ctx, child, new_guardian)
    records.soft_delete(session, ctx, patient)
    count_names(session, patient, -1)


def _move_to_guardian(
    session: Session, ctx: RequestContext, child: Patient, guardian: Patient
) -> None:
    child = records.by_id(session, Patient, child.id, lock=True)
    before = _snapshot(child)
    child.guardian_id = guardian.id
    child.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=child.id,
        action="update",
        diff=audit.diff_of(before, _snapshot(child), redact=ENCRYPTED),
    )


def restore(session: Session, ctx: RequestContext, *, patient_id: uuid.UUID) -> Patient:
    patient = records.get_any(session, Patient, patient_id, lock=True)
    records.restore(session, ctx, patient)
    count_names(session, patient, +1)
    return patient


def dependents(session: Session, guardian_id: uuid.UUID) -> list[Patient]:
    return list(
        session.execute(
            select(Patient).where(Patient.guardian_id == guardian_id).order_by(Patient.name_first)
        ).scalars()
    )


def open_phone(cipher: FieldCipher, patient: Patient) -> str | None:
    """The patient's own phone in clear, or None."""
    phone: str | None = _open(cipher, patient, "phone_encrypted")
    return phone


def contact_phone(session: Session, cipher: FieldCipher, patient: Patient) -> str | None:
    """Where to text this patient: their own phone, or their guardian's for a dependent."""
    if patient.phone_encrypted is not None or patient.guardian_id is None:
        return open_phone(cipher, patient)
    guardian = session.get(Patient, (patient.tenant_id, patient.guardian_id))
    return open_phone(cipher, guardian) if guardian is not None else None


def record_abha_verified(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    patient_id: uuid.UUID,
    digits: str,
    address: str | None,
) -> Patient:
    """The patient proved the ABHA number ``digits`` theirs (ABDM's login OTP): store it,
    and the ABHA address ABDM answered with if the patient has none yet.

    The number must be the patient's own or free in the clinic (409 otherwise).
    """
    patient = records.by_id(session, Patient, patient_id, lock=True)
    _abha_taken(session, abha_hash(cipher, digits), patient.id)
    before = _snapshot(patient)
    _set_abha(cipher, patient, digits)
    if address and patient.abha_address_encrypted is None:
        _address_taken(session, abha_address_hash(cipher, address), patient.id)
        _set_abha_address(cipher, patient, address)
    patient.abha_verified_at = ctx.now()
    patient.updated_at = ctx.now()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise _conflict_of(exc) from exc
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=patient.id,
        action="update",
        diff=audit.diff_of(before, _snapshot(patient), redact=ENCRYPTED),
    )
    return patient
