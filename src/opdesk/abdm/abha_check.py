"""Proving a patient's ABHA number theirs (ABDM M1, the profile-login OTP): OPDesk asks
ABDM to send a code to the mobile linked with the ABHA, the patient reads it out, and
ABDM's answer marks the number verified (and gives the ABHA address the patient has).

The two steps are two requests. What ties them (ABDM's transaction id, the patient, the
number, when it lapses) travels to the browser and back sealed with the field cipher,
bound to the clinic and the patient: it cannot be read, altered, or replayed for another
patient, and nothing is stored until the code is right. Creating an ABHA from Aadhaar is
not done here: the patient creates one in the ABHA app.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from opdesk import formatting, records
from opdesk.abdm import hub
from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.abha import AbhaClient, OtpRejected
from opdesk.abdm.gateway import GatewayError
from opdesk.config import Settings
from opdesk.context import RequestContext
from opdesk.errors import Conflict, DomainError, FieldError, InvalidInput
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.patients.schemas import abha_digits
from opdesk.security.crypto import DecryptionError, FieldCipher
from opdesk.tenancy.service import today_at_clinic

# How long a sent code may be entered (ABDM's own OTPs last about 10 minutes).
CHECK_LIFE = timedelta(minutes=10)


class AbdmUnavailable(DomainError):
    """ABDM did not answer, or answered that it cannot now: try again in a while."""

    status = 503
    title = "ABDM unavailable"


@dataclass(frozen=True)
class Started:
    """A code is on its way; ``check`` goes back with it."""

    check: str
    abha_number: str  # as shown: 91-1234-5678-9012
    expires_at: datetime


def _where(ctx: RequestContext, patient_id: uuid.UUID) -> dict[str, object]:
    assert ctx.tenant_id is not None
    return {
        "tenant_id": ctx.tenant_id,
        "table": "abdm_abha_checks",
        "column": "check",
        "row_id": patient_id,
    }


def _client(
    session: Session, ctx: RequestContext, cipher: FieldCipher, settings: Settings
) -> AbhaClient:
    assert ctx.tenant_id is not None
    clinic = abdm_settings.of(session, cipher, ctx.tenant_id)
    if clinic is None or not clinic.enabled:
        raise Conflict("This clinic is not connected to ABDM: an admin sets it up under ABDM")
    return hub.link_for(settings, clinic).abha


def _unavailable(exc: GatewayError) -> DomainError:
    if exc.retryable or exc.status is None:
        return AbdmUnavailable("ABDM is not answering just now; try again in a minute")
    return InvalidInput([FieldError("abhaNumber", f"ABDM refused it: {exc.message}")])


def start(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    settings: Settings,
    *,
    patient_id: uuid.UUID,
    abha_number: str | None,
) -> Started:
    """Ask ABDM to send the login code for the patient's ABHA number (or ``abha_number``,
    a number to check before it is stored)."""
    patient = records.by_id(session, Patient, patient_id)
    today = today_at_clinic(session, ctx)
    given = abha_number or patients.read(cipher, patient, today).abha_number
    if not given:
        raise InvalidInput([FieldError("abhaNumber", "enter the ABHA number to verify")])
    try:
        digits = abha_digits(given)
    except ValueError as exc:
        raise InvalidInput([FieldError("abhaNumber", str(exc))]) from exc
    client = _client(session, ctx, cipher, settings)
    try:
        txn = client.request_otp(digits)
    except GatewayError as exc:
        raise _unavailable(exc) from exc
    expires_at = ctx.now() + CHECK_LIFE
    sealed = cipher.encrypt(
        json.dumps({"txn": txn, "digits": digits, "until": expires_at.isoformat()}),
        **_where(ctx, patient.id),  # type: ignore[arg-type]
    )
    check = base64.urlsafe_b64encode(sealed).decode()
    return Started(check, formatting.abha_number(digits), expires_at)


def _opened(
    cipher: FieldCipher, ctx: RequestContext, patient_id: uuid.UUID, check: str
) -> dict[str, str]:
    lapsed = InvalidInput([FieldError("otp", "this code has lapsed; ask for a new one")])
    try:
        raw = base64.urlsafe_b64decode(check.encode())
        opened = json.loads(cipher.decrypt(raw, **_where(ctx, patient_id)))  # type: ignore[arg-type]
    except (ValueError, DecryptionError) as exc:  # binascii.Error is a ValueError
        raise lapsed from exc
    if datetime.fromisoformat(opened["until"]) <= ctx.now():
        raise lapsed
    return opened  # type: ignore[no-any-return]


def finish(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    settings: Settings,
    *,
    patient_id: uuid.UUID,
    check: str,
    otp: str,
) -> Patient:
    """The code the patient read out: right, and the ABHA number is stored as verified
    (with the ABHA address ABDM gave, if the patient had none); wrong, and 422 on it."""
    patient = records.by_id(session, Patient, patient_id)
    opened = _opened(cipher, ctx, patient.id, check)
    client = _client(session, ctx, cipher, settings)
    try:
        proved = client.verify_otp(opened["txn"], otp, abha_number=opened["digits"])
    except OtpRejected as exc:
        raise InvalidInput([FieldError("otp", "the code is wrong or has expired")]) from exc
    except ValueError as exc:
        raise InvalidInput([FieldError("otp", str(exc))]) from exc
    except GatewayError as exc:
        raise _unavailable(exc) from exc
    address = proved.abha_address.lower() if proved.abha_address else None
    return patients.record_abha_verified(
        session, ctx, cipher, patient_id=patient.id, digits=opened["digits"], address=address
    )
