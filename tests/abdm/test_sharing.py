"""ABDM M2 at the HIP (issue 18, item 5): discovery finds the patient's visits (and never
another clinic's), consent notifications are kept and acknowledged for every status,
and a health-information request is refused unless a granted consent covers it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.abdm import fidelius
from opdesk.abdm.messages import V3_PATHS
from opdesk.abdm.models import ConsentArtefact, Transfer
from opdesk.abdm.settings import Abdm
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.documents.storage import LocalStorage
from opdesk.fhir import export
from opdesk.tenancy.models import Tenant
from tests.factories import browser_for, clinic_session, ctx_for, make_user, open_session
from tests.factories.abdm import (
    Shifted,
    arrivals,
    consent_body,
    deliver,
    discover_body,
    signed_call,
    with_abdm,
)
from tests.factories.automation import make_worker
from tests.factories.clinical_visits import signed_visit
from tests.fakes.abdm_gateway import FakeAbdmGateway
from tests.fakes.abdm_hiu import FakeHiu

ADDRESS = "asha.p1996@sbx"
HIU_URL = "https://hiu.example.in/data/push"


def work(db: Database, cipher: Any, pointed: Settings, clock: Shifted) -> None:
    make_worker(db, cipher, settings=pointed, clock=clock).run_once()


def call(
    client: TestClient, gateway: FakeAbdmGateway, clinic: Abdm, clock: Shifted, path: str, body: Any
) -> Any:
    return deliver(client, signed_call(gateway, path, body, clinic.facility_id, clock))


def hi_request(consent_id: str, date_from: str, date_to: str) -> dict[str, Any]:
    """A health-information request with a fresh HIU key of its own."""
    key = fidelius.key_material_json(fidelius.generate(), expiry=datetime(2099, 1, 1, tzinfo=UTC))
    return {
        "transactionId": str(uuid.uuid4()),
        "hiRequest": {
            "consent": {"id": consent_id},
            "dateRange": {"from": date_from, "to": date_to},
            "dataPushUrl": HIU_URL,
            "keyMaterial": key,
        },
    }


def test_discovery_finds_the_patient_s_visits_without_clinical_detail(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    pointed: Settings,
    tenant: Tenant,
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    answer = call(gateway_side, gateway, clinic, clock, V3_PATHS.discover, discover_body(ADDRESS))
    assert answer.status_code == 202
    work(db, cipher, pointed, clock)
    (found,) = arrivals(gateway, V3_PATHS.on_discover)
    (patient,) = found["patient"]  # one group per HI type
    assert patient["hiType"] == "OPConsultation"
    assert patient["referenceNumber"] == str(consult.patient.id)
    (context,) = patient["careContexts"]
    assert context["referenceNumber"] == str(visit.id)
    assert "Viral fever" not in str(found) and "A09" not in str(found)
    assert consult.doctor.display_name.split()[-1] in context["display"]
    assert found["matchedBy"] == ["ABHA_ADDRESS"]


def test_another_clinic_s_patient_is_never_discoverable(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    pointed: Settings,
    other_tenant: Tenant,
) -> None:
    signed_visit(db, ident, cipher, other_tenant, abhaAddress=ADDRESS)
    with_abdm(db, cipher, other_tenant)
    call(gateway_side, gateway, clinic, clock, V3_PATHS.discover, discover_body(ADDRESS))
    work(db, cipher, pointed, clock)
    (found,) = arrivals(gateway, V3_PATHS.on_discover)
    assert "error" in found and "patient" not in found


def test_consent_notifications_are_kept_acknowledged_once_and_a_revoked_one_refuses(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    pointed: Settings,
    tenant: Tenant,
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    consent_id = str(uuid.uuid4())
    granted = consent_body(
        consent_id,
        "GRANTED",
        facility_id=clinic.facility_id,
        abha_address=ADDRESS,
        patient_reference=str(consult.patient.id),
        care_contexts=(str(visit.id),),
    )
    notice = signed_call(gateway, V3_PATHS.consent_notify, granted, clinic.facility_id, clock)
    assert deliver(gateway_side, notice).status_code == 202
    assert deliver(gateway_side, notice).status_code == 202  # the gateway's retry
    work(db, cipher, pointed, clock)
    acks = arrivals(gateway, V3_PATHS.consent_on_notify)
    assert [a["acknowledgement"] for a in acks] == [{"status": "OK", "consentId": consent_id}]

    revoked = consent_body(consent_id, "REVOKED", facility_id=clinic.facility_id)
    call(gateway_side, gateway, clinic, clock, V3_PATHS.consent_notify, revoked)
    work(db, cipher, pointed, clock)
    assert len(arrivals(gateway, V3_PATHS.consent_on_notify)) == 2
    with clinic_session(db, tenant.id) as session:
        kept = session.scalar(select(ConsentArtefact))
        assert kept is not None and kept.status == "REVOKED"
        assert kept.care_contexts == [
            {"patientReference": str(consult.patient.id), "careContextReference": str(visit.id)}
        ]

    asked = hi_request(consent_id, "2020-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z")
    sent = call(gateway_side, gateway, clinic, clock, V3_PATHS.health_information_request, asked)
    assert sent.status_code == 202, sent.text
    work(db, cipher, pointed, clock)
    (refusal,) = arrivals(gateway, V3_PATHS.health_information_on_request)
    assert "revoked" in refusal["error"]["message"].lower()
    with clinic_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(Transfer)) == 0


def test_a_request_for_an_unknown_consent_or_beyond_its_dates_is_refused(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    pointed: Settings,
    tenant: Tenant,
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    consent_id = str(uuid.uuid4())
    granted = consent_body(
        consent_id,
        "GRANTED",
        facility_id=clinic.facility_id,
        abha_address=ADDRESS,
        patient_reference=str(consult.patient.id),
        care_contexts=(str(visit.id),),
        date_from="2024-01-01T00:00:00.000Z",
        date_to="2024-12-31T23:59:59.000Z",
    )
    call(gateway_side, gateway, clinic, clock, V3_PATHS.consent_notify, granted)
    unknown = hi_request(str(uuid.uuid4()), "2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.000Z")
    beyond = hi_request(consent_id, "2025-01-01T00:00:00.000Z", "2025-02-01T00:00:00.000Z")
    for asked in (unknown, beyond):
        sent = call(
            gateway_side, gateway, clinic, clock, V3_PATHS.health_information_request, asked
        )
        assert sent.status_code == 202, sent.text
    work(db, cipher, pointed, clock)
    refusals = [
        a["error"]["message"] for a in arrivals(gateway, V3_PATHS.health_information_on_request)
    ]
    assert sorted(refusals) == sorted(
        ["No such consent at this facility", "The requested dates are outside those of the consent"]
    )


# --------------------------------------------------------------------------- the push


@pytest.fixture
def hiu() -> Iterator[FakeHiu]:
    with FakeHiu() as fake:
        yield fake


@pytest.fixture
def trusting(pointed: Settings, hiu: FakeHiu) -> Settings:
    """The worker's settings, trusting the fake HIU's test certificate."""
    return pointed.model_copy(update={"abdm_push_ca_file": hiu.ca_path})


def granted_for_visit(
    client: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    patient_id: uuid.UUID,
    visit_id: uuid.UUID,
    hi_types: tuple[str, ...],
) -> str:
    consent_id = str(uuid.uuid4())
    body = consent_body(
        consent_id,
        "GRANTED",
        facility_id=clinic.facility_id,
        abha_address=ADDRESS,
        patient_reference=str(patient_id),
        care_contexts=(str(visit_id),),
        hi_types=hi_types,
    )
    assert call(client, gateway, clinic, clock, V3_PATHS.consent_notify, body).status_code == 202
    return consent_id


def exported(
    db: Database, cipher: Any, settings: Settings, tenant: Tenant, patient_id: uuid.UUID
) -> dict[str, dict[str, Any]]:
    """What `opdesk fhir export` makes of the patient, by record type."""
    ctx = ctx_for(tenant.id)
    with clinic_session(db, tenant.id) as session:
        chart = export.chart(
            session, cipher, ctx, patient_id, storage=LocalStorage(settings.data_dir / "files")
        )
        return {
            kind.value: json.loads(bundle.model_dump_json(exclude_none=True))
            for kind, bundle in export.bundles_of(chart)
        }


def test_a_consented_request_is_pushed_encrypted_and_decrypts_to_the_exported_bundles(
    bridge_app: FastAPI,
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    trusting: Settings,
    tenant: Tenant,
    hiu: FakeHiu,
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    consent_id = granted_for_visit(
        gateway_side,
        gateway,
        clinic,
        clock,
        consult.patient.id,
        visit.id,
        ("OPConsultation", "WellnessRecord"),
    )
    asked = hiu.hi_request_body(
        consent_id=consent_id,
        transaction_id=str(uuid.uuid4()),
        date_from=datetime(2020, 1, 1, tzinfo=UTC),
        date_to=datetime(2099, 1, 1, tzinfo=UTC),
    )
    sent = call(gateway_side, gateway, clinic, clock, V3_PATHS.health_information_request, asked)
    assert sent.status_code == 202, sent.text
    for _ in range(2):  # the request, then the push it schedules
        work(db, cipher, trusting, clock)
    (ack,) = arrivals(gateway, V3_PATHS.health_information_on_request)
    assert ack["hiRequest"]["sessionStatus"] == "ACKNOWLEDGED"
    (transfer,) = hiu.wait_for(1)
    assert {ref for ref, _ in transfer.entries} == {str(visit.id)}
    expected = exported(db, cipher, trusting, tenant, consult.patient.id)
    got = {
        bundle["entry"][0]["resource"]["meta"]["profile"][0].rsplit("/", 1)[1]: bundle
        for _, bundle in transfer.entries
    }
    assert got == {
        "OPConsultRecord": expected["OPConsultation"],
        "WellnessRecord": expected["WellnessRecord"],
    }
    (notice,) = arrivals(gateway, V3_PATHS.health_information_notify)
    assert notice["notification"]["statusNotification"]["sessionStatus"] == "TRANSFERRED"
    with clinic_session(db, tenant.id) as session:
        kept = session.scalar(select(Transfer))
        assert kept is not None and kept.status == "sent"
        assert kept.sent == [{"careContextReference": str(visit.id), "records": 2}]
    # The desk sees it on the patient's ABDM page: what, when, how many; no content.
    desk = browser_for(
        bridge_app, open_session(db, ident, make_user(db, ident, tenant, "frontdesk"))
    )
    page = desk.get(f"/patients/{consult.patient.id}/abdm").text
    assert "Granted" in page and "Consultation notes, vital signs" in page
    assert "Sent" in page and consult.doctor.display_name.split()[-1] in page
    assert "Viral fever" not in page
    pharmacy = browser_for(
        bridge_app, open_session(db, ident, make_user(db, ident, tenant, "pharmacy"))
    )
    assert pharmacy.get(f"/patients/{consult.patient.id}/abdm").status_code == 403


def test_a_consent_revoked_before_the_push_stops_it(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    trusting: Settings,
    tenant: Tenant,
    hiu: FakeHiu,
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    consent_id = granted_for_visit(
        gateway_side, gateway, clinic, clock, consult.patient.id, visit.id, ("OPConsultation",)
    )
    asked = hiu.hi_request_body(
        consent_id=consent_id,
        transaction_id=str(uuid.uuid4()),
        date_from=datetime(2020, 1, 1, tzinfo=UTC),
        date_to=datetime(2099, 1, 1, tzinfo=UTC),
    )
    call(gateway_side, gateway, clinic, clock, V3_PATHS.health_information_request, asked)
    revoked = consent_body(consent_id, "REVOKED", facility_id=clinic.facility_id)
    call(gateway_side, gateway, clinic, clock, V3_PATHS.consent_notify, revoked)
    # In order: the grant, the request (accepted, its push scheduled), the revocation,
    # then the push, which finds its consent revoked.
    for _ in range(2):
        work(db, cipher, trusting, clock)
    (ack,) = arrivals(gateway, V3_PATHS.health_information_on_request)
    assert ack["hiRequest"]["sessionStatus"] == "ACKNOWLEDGED"
    assert hiu.received == []
    assert arrivals(gateway, V3_PATHS.health_information_notify) == []
    with clinic_session(db, tenant.id) as session:
        kept = session.scalar(select(Transfer))
        assert kept is not None and kept.status == "refused"
        assert kept.error == "consent REVOKED"
        assert kept.key_material == {}  # the HIU's keys are erased with the consent


def test_records_outside_the_consent_s_dates_are_never_sent(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    trusting: Settings,
    tenant: Tenant,
    hiu: FakeHiu,
) -> None:
    consult, visit = signed_visit(db, ident, cipher, tenant, abhaAddress=ADDRESS)
    consent_id = granted_for_visit(
        gateway_side, gateway, clinic, clock, consult.patient.id, visit.id, ("OPConsultation",)
    )
    asked = hiu.hi_request_body(
        consent_id=consent_id,
        transaction_id=str(uuid.uuid4()),
        date_from=datetime(2021, 1, 1, tzinfo=UTC),
        date_to=datetime(2021, 12, 31, tzinfo=UTC),  # the visit is today
    )
    call(gateway_side, gateway, clinic, clock, V3_PATHS.health_information_request, asked)
    for _ in range(2):
        work(db, cipher, trusting, clock)
    (transfer,) = hiu.wait_for(1)
    assert transfer.entries == []
    (notice,) = arrivals(gateway, V3_PATHS.health_information_notify)
    status = notice["notification"]["statusNotification"]
    assert status["sessionStatus"] == "FAILED"
    assert [s["hiStatus"] for s in status["statusResponses"]] == ["ERRORED"]
