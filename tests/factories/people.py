"""Staff and patient users, sign-in sessions, patients, doctors and devices."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from opdesk.context import system_context
from opdesk.db import Database
from opdesk.identity import sessions
from opdesk.identity.models import Device, User
from opdesk.identity.service import Identity, SignedIn, create_user, staff_sign_in
from opdesk.notifications import service as outbox
from opdesk.notifications.models import OutboxMessage
from opdesk.patients.models import Patient
from opdesk.patients.schemas import PatientCreate
from opdesk.patients.service import register
from opdesk.scheduling import service as scheduling
from opdesk.scheduling.models import DoctorProfile
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import clinic_session, ctx_for

STAFF_PASSWORD = "correct horse battery"
_phone_counter = iter(range(10_000_000))


def unique_mobile() -> str:
    """A valid Indian mobile number nobody else in the test run uses."""
    return f"+9198{next(_phone_counter) + secrets.randbelow(10) * 10_000_000:08d}"


def make_user(
    database: Database, ident: Identity, tenant: Tenant, role: str, **fields: Any
) -> User:
    ctx = system_context(tenant.id)
    if role == "patient":
        fields.setdefault("phone", unique_mobile())
    else:
        fields.setdefault("email", f"{role}-{secrets.token_hex(3)}@example.in")
        fields.setdefault("password", STAFF_PASSWORD)
    fields.setdefault("name", f"Test {role.title()}")
    with transaction(database, ctx) as session:
        return create_user(session, ctx, ident, role=role, **fields)


def open_session(
    database: Database,
    ident: Identity,
    user: User,
    stage: str = "active",
    clock: Callable[[], datetime] | None = None,
) -> str:
    """A session token for ``user`` without going through the sign-in steps."""
    ctx = system_context(user.tenant_id)
    if clock is not None:
        ctx.clock = clock
    with transaction(database, ctx) as session:
        _, token = sessions.start(
            session,
            ctx,
            user=user,
            stage=stage,
            method="test",
            device_id=None,
            idle=ident.idle(user.role),
            lifetime=ident.lifetime,
        )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def latest_code(
    db: Database, cipher: Any, tenant: Tenant, phone: str, template: str = "otp"
) -> str:
    """Read the code the way the dev inbox does: decrypt the newest outbox message."""
    with clinic_session(db, tenant.id) as session:
        messages = session.execute(
            select(OutboxMessage).order_by(OutboxMessage.created_at.desc())
        ).scalars()
        for message in messages:
            item = outbox.read(cipher, message, tenant.name)
            if item.recipient == phone and item.template == template:
                return str(item.payload["code"])
    raise AssertionError("no code was sent")


def make_device(db: Database, ident: Identity, tenant: Tenant) -> Device:
    """A doctor's device, first seen by a real password sign-in (which audits it)."""
    user = make_user(db, ident, tenant, "doctor")
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        signed = staff_sign_in(
            session,
            ctx,
            ident,
            clinic=tenant.slug,
            email=user.email or "",
            password=STAFF_PASSWORD,
            device_token=None,
            device_label="Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
        )
        assert isinstance(signed, SignedIn), signed
        return session.execute(select(Device).where(Device.user_id == user.id)).scalar_one()


# --------------------------------------------------------------------------- patients


def make_patient(db: Database, ident: Identity, tenant: Tenant, **fields: Any) -> Patient:
    """One registered patient with a mobile number of their own."""
    ctx = ctx_for(tenant.id)
    data = PatientCreate.model_validate(
        {
            "name": {"first": "Asha"},
            "phone": unique_mobile(),
            "ageYears": 30,
            "gender": "female",
            **fields,
        }
    )
    with transaction(db, ctx) as session:
        return register(session, ctx, ident, data=data)


def patients(db: Database, ident: Any, tenant: Tenant, count: int, **extra: Any) -> list[Any]:
    """``count`` registered patients (named P0, P1, ...), made in one transaction."""
    ctx = ctx_for(tenant.id)
    made = []
    with transaction(db, ctx) as session:
        for i in range(count):
            data = PatientCreate.model_validate(
                {
                    "name": {"first": f"P{i}"},
                    "phone": unique_mobile(),
                    "ageYears": 30,
                    "gender": "female",
                    **extra,
                }
            )
            made.append(register(session, ctx, ident, data=data))
    return made


# --------------------------------------------------------------------------- doctors

CONSULTATION = scheduling.VisitType(code="consultation", label="Consultation", minutes=15)


def make_doctor(
    db: Database,
    ident: Identity,
    tenant: Tenant,
    *,
    name: str = "Dr. Anjali Deshmukh",
    fee: Decimal = Decimal("500.00"),
    **fields: Any,
) -> DoctorProfile:
    """A doctor-role user with a doctor profile (no weekly hours yet)."""
    user = make_user(db, ident, tenant, "doctor", name=name)
    ctx = ctx_for(tenant.id)
    profile = scheduling.DoctorFields(
        display_name=name,
        specialty=fields.pop("specialty", "General medicine"),
        registration_number=fields.pop("registration_number", "MMC-2011-04512"),
        consultation_fee=fee,
        visit_types=fields.pop("visit_types", (CONSULTATION,)),
        **fields,
    )
    with transaction(db, ctx) as session:
        return scheduling.create_doctor(session, ctx, user_id=user.id, fields=profile)
