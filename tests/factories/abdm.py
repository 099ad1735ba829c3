"""A clinic's ABDM settings, saved through the service."""

from __future__ import annotations

import itertools
import secrets
import uuid
from typing import Any

from opdesk.abdm import messages, share
from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.settings import Abdm, Counter
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for

CLIENT_SECRET = "sandbox-client-secret-0001"
_facility_numbers = itertools.count(1)


def unique_facility_id() -> str:
    """An HFR-shaped facility id no other clinic in the test run has."""
    return f"IN{secrets.randbelow(90) + 10}{next(_facility_numbers):08d}"


def with_abdm(db: Database, cipher: Any, tenant: Tenant, **fields: Any) -> Abdm:
    """The clinic on ABDM (sandbox, switched on) with one counter, plus ``fields`` of
    :class:`Abdm`; a fresh facility id unless one is given."""
    values: dict[str, Any] = {
        "facility_id": unique_facility_id(),
        "facility_name": f"{tenant.name} (HFR)",
        "client_id": "SBX_000123",
        "client_secret": CLIENT_SECRET,
        "environment": "sandbox",
        "enabled": True,
        "counters": (Counter(f"desk-{secrets.token_hex(2)}", "Front desk"),),
        **fields,
    }
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return abdm_settings.save(session, ctx, cipher, Abdm(**values))


def counter_id_of(db: Database, ident: Any, tenant: Tenant) -> str:
    """A Scan & Share counter of the clinic (its settings made for it)."""
    return with_abdm(db, ident.cipher, tenant).counters[0].id


def share_body(hip_id: str, counter_id: str, **patient: Any) -> dict[str, Any]:
    """A Scan & Share profile as the gateway sends it (HIE-CM v3 patient-share), for a
    patient scanning ``counter_id``'s QR code; ``patient`` overrides the profile's fields."""
    profile = {
        "abhaNumber": "91-5101-6530-5101",
        "abhaAddress": "amit.sharma88@sbx",
        "name": "Amit Sharma",
        "gender": "M",
        "dayOfBirth": "14",
        "monthOfBirth": "8",
        "yearOfBirth": "1988",
        "phoneNumber": "9876500001",
        "address": {
            "line": "12 MG Road",
            "district": "Pune",
            "state": "Maharashtra",
            "pincode": "411001",
        },
        **patient,
    }
    return {
        "intent": "PROFILE_SHARE",
        "metaData": {
            "hipId": hip_id,
            "context": counter_id,
            "hprId": "",
            "latitude": "",
            "longitude": "",
        },
        "profile": {"patient": profile},
    }


def scanned(db: Database, ident: Any, tenant: Tenant, clinic: Abdm, **patient: Any) -> Any:
    """A patient who scanned the clinic's first counter, as the worker answers it (no
    gateway call): the ``share.Issued`` with their token."""
    body = share_body(clinic.facility_id, clinic.counters[0].id, **patient)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return share.issue(
            session,
            ctx,
            ident,
            profile=messages.parse_share_profile(body),
            counter_id=clinic.counters[0].id,
            request_id=uuid.uuid4(),
        )
