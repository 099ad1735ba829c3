"""A clinic's ABDM settings, saved through the service."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from opdesk.abdm import messages, share, sharing
from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.models import LinkToken, Transfer
from opdesk.abdm.settings import Abdm, Counter
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for
from tests.fakes.abdm_gateway import Callback, FakeAbdmGateway

# Where the gateway calls OPDesk (the bridge URL registered with ABDM).
BRIDGE = "/api/v1/abdm/bridge"

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


class Shifted:
    """A clinic's clock moved forward by hand (the fake gateway's stays real)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def clear_of_midnight(self, zone: str = "Asia/Kolkata", room: float = 2) -> timedelta:
        """Move the clock forward, if need be, so the next ``room`` hours stay in one day
        at the clinic (a test of a day's numbering must not cross midnight); the shift."""
        local = (datetime.now(UTC) + self.offset).astimezone(ZoneInfo(zone))
        midnight = datetime.combine(local.date() + timedelta(days=1), time(), local.tzinfo)
        if midnight - local < timedelta(hours=room):
            self.offset += midnight - local + timedelta(minutes=5)
        return self.offset


def signed_call(
    gateway: FakeAbdmGateway, path: str, body: Any, facility_id: str, clock: Shifted
) -> Callback:
    """A call of the gateway to the bridge, signed and stamped at the clinic's ``now``."""
    now = clock()
    return gateway.prepare_callback(
        BRIDGE + path,
        body,
        hip_id=facility_id,
        at=now,
        token=gateway.mint_token(issued_at=now.timestamp()),
    )


def deliver(client: TestClient, callback: Callback) -> Any:
    """The call as the gateway sends it, to the app behind ``client``."""
    return client.post(
        callback.url, content=json.dumps(callback.body).encode(), headers=callback.headers
    )


def arrivals(gateway: FakeAbdmGateway, path: str) -> list[Any]:
    """The bodies OPDesk sent the gateway at ``path``, oldest first."""
    return [a.body for a in gateway.received if a.path == path]


def consent_body(
    consent_id: str,
    status: str,
    *,
    facility_id: str,
    abha_address: str = "",
    patient_reference: str = "",
    care_contexts: tuple[str, ...] = (),
    hi_types: tuple[str, ...] = ("OPConsultation",),
    date_from: str = "2020-01-01T00:00:00.000Z",
    date_to: str = "2099-01-01T00:00:00.000Z",
    erase_at: str = "2099-06-01T00:00:00.000Z",
) -> dict[str, Any]:
    """A consent notification as the gateway sends it (HIE-CM v3 hip/notify); a GRANTED
    one carries the artefact and the consent manager's signature."""
    notification: dict[str, Any] = {"status": status, "consentId": consent_id}
    if status == "GRANTED":
        notification["signature"] = base64.b64encode(b"consent manager signature").decode()
        notification["consentDetail"] = {
            "schemaVersion": "v3",
            "consentId": consent_id,
            "createdAt": "2026-11-30T10:00:00.000Z",
            "patient": {"id": abha_address},
            "careContexts": [
                {"patientReference": patient_reference, "careContextReference": c}
                for c in care_contexts
            ],
            "purpose": {"text": "Care management", "code": "CAREMGT"},
            "hip": {"id": facility_id},
            "hiTypes": list(hi_types),
            "permission": {
                "accessMode": "VIEW",
                "dateRange": {"from": date_from, "to": date_to},
                "dataEraseAt": erase_at,
                "frequency": {"unit": "HOUR", "value": 1, "repeats": 0},
            },
        }
    return {"notification": notification}


def discover_body(abha_address: str, **patient: Any) -> dict[str, Any]:
    """A discovery request as the gateway sends it (HIE-CM v3 care-context/discover)."""
    return {
        "transactionId": str(uuid.uuid4()),
        "patient": {
            "id": abha_address,
            "name": "Asha",
            "gender": "F",
            "yearOfBirth": 1996,
            "verifiedIdentifiers": [{"type": "ABHA_ADDRESS", "value": abha_address}],
            "unverifiedIdentifiers": [],
            **patient,
        },
    }


def consent_granted(
    db: Database, tenant: Tenant, facility_id: str, patient_id: uuid.UUID, visit_id: uuid.UUID
) -> str:
    """A consent for the visit's consultation notes, kept as the worker keeps one; its id."""
    body = consent_body(
        str(uuid.uuid4()),
        "GRANTED",
        facility_id=facility_id,
        abha_address="asha.p1996@sbx",
        patient_reference=str(patient_id),
        care_contexts=(str(visit_id),),
    )
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        sharing.record_consent(session, ctx, messages.parse_consent_notify(body))
        sharing.consented_contexts(
            session, ctx, sharing.consent_of(session, body["notification"]["consentId"])
        )
    return str(body["notification"]["consentId"])


def transfer_sent(db: Database, tenant: Tenant, consent_id: str, visit_id: uuid.UUID) -> None:
    """A transfer under the consent that sent the visit's one record (as the push records
    it; the push itself is tested in test_sharing)."""
    ctx = ctx_for(tenant.id)
    now = ctx.now()
    with transaction(db, ctx) as session:
        transfer = Transfer(
            tenant_id=tenant.id,
            id=uuid.uuid4(),
            consent_id=consent_id,
            transaction_id=str(uuid.uuid4()),
            request_id=uuid.uuid4(),
            status="requested",
            date_from=now - timedelta(days=30),
            date_to=now,
            data_push_url="https://hiu.example.in/data/push",
            key_material={},
            requested_at=now,
        )
        session.add(transfer)
        session.flush()
        sharing.record_pushed(session, ctx, transfer, [(str(visit_id), 1)])


def token_answer(request_id: str, abha_address: str, link_token: str) -> dict[str, Any]:
    """on-generate-token as the gateway sends it (link-token.yaml): the token for the
    question OPDesk asked with ``request_id``."""
    return {
        "abhaAddress": abha_address,
        "linkToken": link_token,
        "response": {"requestId": request_id},
    }


def token_refusal(request_id: str, abha_address: str, code: str, message: str) -> dict[str, Any]:
    return {
        "abhaAddress": abha_address,
        "error": {"code": code, "message": message},
        "response": {"requestId": request_id},
    }


def link_answer(request_id: str, abha_address: str, error: str | None = None) -> dict[str, Any]:
    """on_carecontext: the link call ``request_id`` linked its visits (or ``error``)."""
    body: dict[str, Any] = {"abhaAddress": abha_address, "response": {"requestId": request_id}}
    if error is None:
        body["status"] = "Successfully Linked care context"
    else:
        body["error"] = {"code": "ABDM-1099", "message": error}
    return body


def link_init_body(abha_address: str, patient_reference: str, *visits: str) -> dict[str, Any]:
    """link/init (user-initiated-linking.yaml): the patient picked these visits."""
    return {
        "transactionId": str(uuid.uuid4()),
        "abhaAddress": abha_address,
        "patient": [
            {
                "referenceNumber": patient_reference,
                "display": "Patient",
                "careContexts": [{"referenceNumber": v, "display": "Visit"} for v in visits],
                "hiType": "OPConsultation",
                "count": len(visits),
            }
        ],
    }


def link_confirm_body(link_reference: str, code: str) -> dict[str, Any]:
    return {"confirmation": {"linkRefNumber": link_reference, "token": code}}


def linking_paused(db: Database, tenant: Tenant, patient: Any, why: str) -> None:
    """The patient's linking paused for a day after ABDM refused a token, as the worker
    leaves it (the refusal itself is tested in test_linking)."""
    ctx = ctx_for(tenant.id)
    now = ctx.now()
    with transaction(db, ctx) as session:
        session.add(
            LinkToken(
                tenant_id=tenant.id,
                id=uuid.uuid4(),
                patient_id=patient.id,
                abha_address_hash=patient.abha_address_hash,
                not_before=now + timedelta(hours=24),
                last_error=why,
                updated_at=now,
            )
        )
