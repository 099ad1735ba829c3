"""Callers of the hot paths (``scheduling/hot.py``): the desk's headers, a booking's
body, the sessions each hot path must refuse, and a count of everything they write.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text

from opdesk.audit.models import AuditEvent
from opdesk.automation.models import AutomationEvent
from opdesk.context import system_context
from opdesk.db import Database
from opdesk.idempotency import IdempotentRequest
from opdesk.identity import sessions
from opdesk.scheduling.models import Appointment, QueueCounter, Slot
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import clinic_session, make_tenant, unaudited
from tests.factories.people import bearer, make_user, open_session, patients


def booking_body(slot: Any, patient: Any, **more: Any) -> dict[str, Any]:
    return {
        "slotId": str(slot.id),
        "patientId": str(patient.id),
        "visitType": "consultation",
        **more,
    }


def desk_headers(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def written(db: Database, tenant: Tenant) -> dict[str, Any]:
    """What the hot paths write, counted: nothing of it may change when one is refused.
    (An expired session is ended, and that is audited: the trail of sessions is not
    counted.)
    """
    with clinic_session(db, tenant.id) as session:

        def count(model: Any, *where: Any) -> int:
            return int(
                session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
            )

        return {
            "appointments": count(Appointment),
            "audit events": count(AuditEvent, AuditEvent.entity_collection != "sessions"),
            "automation events": count(AutomationEvent),
            "idempotency keys": count(IdempotentRequest),
            "booked slots": count(Slot, Slot.status == "booked"),
            "held slots": count(Slot, Slot.status == "held"),
            "tokens handed out": count(QueueCounter),
        } | {
            "appointment states": session.execute(
                select(Appointment.id, Appointment.status, Appointment.updated_at).order_by(
                    Appointment.id
                )
            ).all(),
        }


# ------------------------------------------------------------------ refused sessions


def expired_session(db: Database, ident: Any, tenant: Tenant) -> str:
    """A session left idle past its limit."""
    user = make_user(db, ident, tenant, "frontdesk")
    long_ago = system_context(tenant.id).now() - ident.idle("frontdesk") - timedelta(minutes=1)
    return open_session(db, ident, user, clock=lambda: long_ago)


def revoked_session(db: Database, ident: Any, tenant: Tenant) -> str:
    user = make_user(db, ident, tenant, "frontdesk")
    token = open_session(db, ident, user)
    ctx = system_context(tenant.id)
    with transaction(db, ctx) as session:
        sessions.end_all(session, ctx, user_id=user.id, reason="signed-out")
    return token


def deactivated_users_session(db: Database, ident: Any, tenant: Tenant) -> str:
    user = make_user(db, ident, tenant, "frontdesk")
    token = open_session(db, ident, user)
    # Straight in the table: deactivating through the service would end the session too,
    # and this is the case of a session left behind by a user deactivated since.
    with clinic_session(db, tenant.id) as session:
        unaudited(session)
        session.execute(text("update users set active = false where id = :u"), {"u": user.id})
    return token


def other_clinics_session(db: Database, ident: Any, tenant: Tenant) -> str:
    other = make_tenant(db, "Elsewhere Clinic")
    return open_session(db, ident, make_user(db, ident, other, "admin"))


def patients_session(db: Database, ident: Any, tenant: Tenant) -> str:
    patients(db, ident, tenant, 1)
    return open_session(db, ident, make_user(db, ident, tenant, "patient"))


def mid_sign_in_session(db: Database, ident: Any, tenant: Tenant) -> str:
    return open_session(db, ident, make_user(db, ident, tenant, "frontdesk"), stage="mfa")


# Sessions a desk's hot path refuses, and the status each gets. Another clinic's session
# is scoped to its own clinic, where this clinic's rows are unknown: 404.
REFUSED_SESSIONS: list[tuple[Callable[[Database, Any, Tenant], str], int]] = [
    (expired_session, 401),
    (revoked_session, 401),
    (deactivated_users_session, 401),
    (mid_sign_in_session, 401),
    (other_clinics_session, 404),
    (patients_session, 403),
]
