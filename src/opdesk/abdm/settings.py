"""A clinic's ABDM settings: the facility id ABDM knows it by, the gateway client it signs
in with (the secret encrypted), sandbox or production, and its Scan & Share counters.

A clinic with no row is not on ABDM; a row switched off keeps its settings and does
nothing with them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.abdm.models import ENVIRONMENTS, AbdmFacility, AbdmSettings, settings_row_id
from opdesk.context import RequestContext
from opdesk.errors import Conflict, FieldError, InvalidInput
from opdesk.security.crypto import FieldCipher

# HFR facility ids read like IN2710004770; no published rule was found, so only the shape
# any such id has is checked (letters and digits), upper-cased as HFR prints them.
FACILITY_ID = re.compile(r"^[A-Z0-9]{4,40}$")
# Gateway client ids as ABDM issues them: SBX_001234 in the sandbox, letters, digits,
# underscores and hyphens in general.
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{3,80}$")
COUNTER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,19}$")
MAX_COUNTERS = 20


@dataclass(frozen=True)
class Counter:
    """A desk a patient can scan at; its id goes into the QR code and comes back with the
    patient's profile, so it names the queue the token is issued from."""

    id: str
    label: str


@dataclass(frozen=True)
class Abdm:
    """The settings as the services use them (the secret decrypted)."""

    facility_id: str
    facility_name: str
    client_id: str
    client_secret: str
    environment: str = "sandbox"
    enabled: bool = False
    counters: tuple[Counter, ...] = field(default=())

    def counter(self, counter_id: str) -> Counter | None:
        return next((c for c in self.counters if c.id == counter_id), None)


def _row(session: Session, tenant_id: uuid.UUID) -> AbdmSettings | None:
    return session.scalar(select(AbdmSettings).where(AbdmSettings.tenant_id == tenant_id))


def _where(tenant_id: uuid.UUID) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "table": "abdm_settings",
        "column": "client_secret",
        "row_id": settings_row_id(tenant_id),
    }


def of(session: Session, cipher: FieldCipher, tenant_id: uuid.UUID) -> Abdm | None:
    """The clinic's settings, or None when it has never been set up for ABDM."""
    row = _row(session, tenant_id)
    if row is None:
        return None
    return Abdm(
        facility_id=row.facility_id,
        facility_name=row.facility_name,
        client_id=row.client_id,
        client_secret=cipher.decrypt_str(row.client_secret, **_where(tenant_id)),
        environment=row.environment,
        enabled=row.enabled,
        counters=tuple(Counter(c["id"], c["label"]) for c in row.counters),
    )


def check(changes: Abdm) -> Abdm:
    """The settings tidied (ids upper- or lower-cased, spaces trimmed), or every problem."""
    tidy = Abdm(
        facility_id=changes.facility_id.strip().upper(),
        facility_name=changes.facility_name.strip(),
        client_id=changes.client_id.strip(),
        client_secret=changes.client_secret.strip(),
        environment=changes.environment,
        enabled=changes.enabled,
        counters=tuple(Counter(c.id.strip().lower(), c.label.strip()) for c in changes.counters),
    )
    errors = _problems(tidy)
    if errors:
        raise InvalidInput(errors)
    return tidy


def _problems(s: Abdm) -> list[FieldError]:
    errors = []
    if not FACILITY_ID.match(s.facility_id):
        errors.append(
            FieldError(
                "facilityId", "must be the HFR facility id, letters and digits, e.g. IN2710004770"
            )
        )
    if not 1 <= len(s.facility_name) <= 200:
        errors.append(FieldError("facilityName", "is required (the name registered in HFR)"))
    if not CLIENT_ID.match(s.client_id):
        errors.append(FieldError("clientId", "must be the client id ABDM issued, e.g. SBX_001234"))
    if not 8 <= len(s.client_secret) <= 200:
        errors.append(FieldError("clientSecret", "must be the client secret ABDM issued"))
    if s.environment not in ENVIRONMENTS:
        errors.append(FieldError("environment", "must be sandbox or production"))
    errors.extend(_counter_problems(s.counters))
    return errors


def _counter_problems(counters: tuple[Counter, ...]) -> list[FieldError]:
    errors = []
    if len(counters) > MAX_COUNTERS:
        errors.append(FieldError("counters", f"at most {MAX_COUNTERS} counters"))
    seen: set[str] = set()
    for n, counter in enumerate(counters):
        if not COUNTER_ID.match(counter.id):
            errors.append(
                FieldError(
                    f"counters[{n}].id",
                    "must be up to 20 lower-case letters, digits or hyphens, e.g. desk-1",
                )
            )
        elif counter.id in seen:
            errors.append(FieldError(f"counters[{n}].id", f"{counter.id} is used twice"))
        seen.add(counter.id)
        if not 1 <= len(counter.label) <= 40:
            errors.append(FieldError(f"counters[{n}].label", "is required, up to 40 characters"))
    return errors


def save(session: Session, ctx: RequestContext, cipher: FieldCipher, changes: Abdm) -> Abdm:
    """Replace the clinic's ABDM settings (the secret never reaches the audit trail).

    A facility id another clinic already uses is a 409: the gateway names the facility in
    every callback, and it must lead to one clinic.
    """
    tidy = check(changes)
    tenant_id = ctx.tenant_id
    if tenant_id is None:
        raise RuntimeError("ABDM settings belong to a clinic")
    row = _row(session, tenant_id)
    before = _shown(of(session, cipher, tenant_id)) if row else {}
    _claim(session, ctx, tenant_id, tidy.facility_id)
    if row is None:
        row = AbdmSettings(tenant_id=tenant_id)
        session.add(row)
    row.facility_id = tidy.facility_id
    row.facility_name = tidy.facility_name
    row.client_id = tidy.client_id
    row.client_secret = cipher.encrypt(tidy.client_secret, **_where(tenant_id))
    row.environment = tidy.environment
    row.enabled = tidy.enabled
    row.counters = [{"id": c.id, "label": c.label} for c in tidy.counters]
    row.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="abdm_settings",
        entity_id=None,
        action="create" if not before else "update",
        diff=audit.diff_of(before, _shown(tidy), redact={"clientSecret"}),
    )
    return tidy


def _claim(session: Session, ctx: RequestContext, tenant_id: uuid.UUID, facility_id: str) -> None:
    """Make ``facility_id`` this clinic's (giving up the one it had), or 409 when another
    clinic has it: the gateway names the facility in every call, and it must lead to one
    clinic."""
    held = session.scalar(select(AbdmFacility).where(AbdmFacility.clinic_id == tenant_id))
    if held is not None and held.facility_id == facility_id:
        return
    try:
        with session.begin_nested():
            if held is not None:
                session.delete(held)
                session.flush()
            session.add(
                AbdmFacility(facility_id=facility_id, clinic_id=tenant_id, claimed_at=ctx.now())
            )
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "Facility id: another clinic on this OPDesk is registered with it",
            field="facilityId",
        ) from exc


def _shown(settings: Abdm | None) -> dict[str, object]:
    """The settings as the audit trail shows them: the secret only as "changed"."""
    if settings is None:
        return {}
    return {
        "facilityId": settings.facility_id,
        "facilityName": settings.facility_name,
        "clientId": settings.client_id,
        "clientSecret": settings.client_secret.encode(),
        "environment": settings.environment,
        "enabled": settings.enabled,
        "counters": [{"id": c.id, "label": c.label} for c in settings.counters],
    }
