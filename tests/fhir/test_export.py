"""The patient's NRCeS document bundles: one per care event, each a document whose
Composition comes first and whose references all resolve inside it, the same bytes every
time, nothing the clinic has not released; and ``opdesk fhir export`` writing them out.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.clinical import prescriptions
from opdesk.db import Database
from opdesk.documents.storage import LocalStorage
from opdesk.fhir import bundles, clinical, export
from opdesk.fhir.bundles import RecordType
from opdesk.security.crypto import StaticKeyring
from opdesk.security.keys import keyring_env
from opdesk.uow import transaction
from tests.factories import clinic_session, ctx_for, make_tenant
from tests.factories.cli import opdesk
from tests.factories.clinical_rx import BASE_URL, doctor_ctx
from tests.factories.fhir import Record, patient_record


@pytest.fixture(scope="module")
def record(app: FastAPI, db: Database, ident: Any) -> Record:
    tenant = make_tenant(db, "Export Clinic")
    return patient_record(db, ident, tenant, app.state.services.storage)


def exported(
    app: FastAPI, db: Database, cipher: Any, record: Record
) -> list[tuple[RecordType, Bundle]]:
    ctx = ctx_for(record.tenant.id)
    with transaction(db, ctx) as session:
        return export.patient_bundles(
            session, cipher, ctx, record.patient.id, storage=app.state.services.storage
        )


def as_json(bundle: Bundle) -> dict[str, Any]:
    dumped: dict[str, Any] = bundle.model_dump(mode="json", exclude_none=True)
    return dumped


def keys_in(bundle: Bundle) -> set[str]:
    return {
        f"{e.resource.get_resource_type()}/{e.resource.id}"
        for e in bundle.entry or []
        if e.resource is not None
    }


def test_one_document_per_care_event_with_ids_from_its_source(
    app: FastAPI, db: Database, cipher: Any, record: Record
) -> None:
    made = exported(app, db, cipher, record)
    assert Counter(kind for kind, _ in made) == {
        RecordType.OP_CONSULTATION: 1,
        RecordType.PRESCRIPTION: 1,  # the change still a draft: the issued one stands
        RecordType.DIAGNOSTIC_REPORT: 1,  # the reviewed order only
        RecordType.WELLNESS_RECORD: 1,
        RecordType.HEALTH_DOCUMENT_RECORD: 2,  # the referral's newest version, the consent
        RecordType.INVOICE: 1,  # not the draft
    }
    sources = {
        RecordType.OP_CONSULTATION: [record.visit_id],
        RecordType.PRESCRIPTION: [record.prescription_id],
        RecordType.DIAGNOSTIC_REPORT: [record.reviewed_order_id],
        RecordType.WELLNESS_RECORD: [record.visit_id],
        RecordType.HEALTH_DOCUMENT_RECORD: [record.referral_ids[-1], record.consent_file_id],
        RecordType.INVOICE: [record.invoice_id],
    }
    expected = sorted(str(export.bundle_id(k, s)) for k, ids in sources.items() for s in ids)
    assert sorted(str(b.id) for _, b in made) == expected


def test_every_bundle_is_a_document_led_by_its_composition_whose_references_resolve(
    app: FastAPI, db: Database, cipher: Any, record: Record
) -> None:
    for kind, bundle in exported(app, db, cipher, record):
        assert bundle.type == "document"
        assert bundles.every_reference_resolves(bundle) == [], kind
        entries = as_json(bundle)["entry"]
        composition = entries[0]["resource"]
        assert composition["resourceType"] == "Composition"
        assert all(e["fullUrl"].startswith("urn:uuid:") for e in entries)
        (patient,) = [e for e in entries if e["resource"]["resourceType"] == "Patient"]
        assert patient["resource"]["id"] == str(record.patient.id)
        assert composition["subject"]["reference"] == patient["fullUrl"]


def test_exporting_again_gives_the_same_bundles(
    app: FastAPI, db: Database, cipher: Any, record: Record
) -> None:
    first = [(k, as_json(b)) for k, b in exported(app, db, cipher, record)]
    again = [(k, as_json(b)) for k, b in exported(app, db, cipher, record)]
    assert first == again


def test_the_consultation_lists_what_the_visit_holds(
    app: FastAPI, db: Database, cipher: Any, record: Record
) -> None:
    made = exported(app, db, cipher, record)
    (bundle,) = [b for k, b in made if k == RecordType.OP_CONSULTATION]
    entries = as_json(bundle)["entry"]
    by_url = {e["fullUrl"]: e["resource"] for e in entries}

    def named(url: str) -> str:
        return f"{by_url[url]['resourceType']}/{by_url[url]['id']}"

    listed = {
        s["title"]: [named(e["reference"]) for e in s["entry"]]
        for s in entries[0]["resource"]["section"]
    }
    assert listed["Chief complaints"] == [f"Condition/{record.diagnosis_id}"]
    assert len(listed["Physical examination"]) == 5  # pulse, temperature, weight, sugar, BP
    assert sorted(listed["Investigation advice"]) == sorted(
        f"ServiceRequest/{clinical.service_request_id(o, 1)}"
        for o in (record.reviewed_order_id, record.reported_order_id, record.pending_order_id)
    )
    assert listed["Medications"] == [
        f"MedicationRequest/{clinical.medication_request_id(record.prescription_id, n)}"
        for n in (1, 2)
    ]
    assert listed["Follow up"] == [f"Appointment/{record.follow_up_id}"]
    # The Encounter's own appointment travels with it, as a supporting entry.
    assert f"Appointment/{record.appointment_id}" in keys_in(bundle)
    text = json.dumps(as_json(bundle), ensure_ascii=False)
    assert "अमित शर्मा" in text and "तीन दिन से बुखार और खांसी" in text


def test_what_the_clinic_has_not_released_is_in_no_bundle(
    app: FastAPI, db: Database, cipher: Any, record: Record
) -> None:
    everywhere = set().union(*(keys_in(b) for _, b in exported(app, db, cipher, record)))
    assert (
        f"MedicationRequest/{clinical.medication_request_id(record.draft_prescription_id, 1)}"
        not in everywhere
    )
    assert f"DiagnosticReport/{record.reported_order_id}" not in everywhere
    assert not {f"DocumentReference/{d}" for d in record.unreviewed_document_ids} & everywhere
    assert f"Invoice/{record.draft_invoice_id}" not in everywhere
    # A report's file travels inside its DiagnosticReport, not again as a document.
    assert not {f"DocumentReference/{d}" for d in record.report_document_ids} & everywhere


def test_a_replaced_prescription_is_no_longer_exported(
    app: FastAPI, db: Database, ident: Any, cipher: Any
) -> None:
    changed = patient_record(
        db, ident, make_tenant(db, "Change Clinic"), app.state.services.storage
    )
    ctx = doctor_ctx(changed.tenant, changed.doctor)
    with transaction(db, ctx) as session:
        prescriptions.issue(
            session, ctx, cipher, prescription_id=changed.draft_prescription_id, base_url=BASE_URL
        )
    made = exported(app, db, cipher, changed)
    issued = [b.id for k, b in made if k == RecordType.PRESCRIPTION]
    assert issued == [str(export.bundle_id(RecordType.PRESCRIPTION, changed.draft_prescription_id))]


# --------------------------------------------------------------------------- the command


def test_fhir_export_has_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opdesk", "fhir", "export", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--patient" in done.stdout and "--clinic" in done.stdout


def test_the_command_writes_each_bundle_and_everything_and_audits_it(
    fresh_database: Database, ident: Any, cipher: Any, keyring: StaticKeyring, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    storage = LocalStorage(data / "files")  # where the command reads documents from
    record = patient_record(
        fresh_database, ident, make_tenant(fresh_database, "CLI Clinic"), storage
    )
    out = tmp_path / "out"
    done = opdesk(
        "fhir",
        "export",
        "--clinic",
        record.tenant.slug,
        "--patient",
        record.patient.display_number,
        "--out",
        str(out),
        database=fresh_database,
        data_dir=data,
        **keyring_env(keyring.current()),
    )
    assert done.returncode == 0, done.stderr
    assert record.patient.display_number in done.stdout

    ctx = ctx_for(record.tenant.id)
    with transaction(fresh_database, ctx) as session:
        made = export.patient_bundles(session, cipher, ctx, record.patient.id, storage=storage)
    expected = {f"{kind}-{bundle.id}.json": bundle for kind, bundle in made}
    assert {p.name for p in out.iterdir()} == {*expected, "everything.json"}
    for name, bundle in expected.items():
        written = (out / name).read_text(encoding="utf-8")
        assert json.loads(written) == as_json(bundle)  # the same bundle, byte for byte in JSON
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600
    everything = json.loads((out / "everything.json").read_text(encoding="utf-8"))
    assert everything["type"] == "searchset"
    assert everything["entry"][0]["resource"]["id"] == str(record.patient.id)
    assert "अमित शर्मा" in (out / "everything.json").read_text(encoding="utf-8")

    with clinic_session(fresh_database, record.tenant.id) as session:
        events = list(
            session.execute(
                select(AuditEvent).where(
                    AuditEvent.entity_id == record.patient.id, AuditEvent.to_state == "exported"
                )
            ).scalars()
        )
    (event,) = events
    assert event.actor_role == "system"
    assert event.diff["added"]["fhir"]["bundles"]["HealthDocumentRecord"] == 2


def test_the_command_names_what_it_cannot_find(
    fresh_database: Database, keyring: StaticKeyring, tmp_path: Path
) -> None:
    tenant = make_tenant(fresh_database, "Empty Clinic")
    out = tmp_path / "out"

    def run(clinic: str, patient: str) -> Any:
        return opdesk(
            *("fhir", "export", "--clinic", clinic, "--patient", patient, "--out", str(out)),
            database=fresh_database,
            data_dir=tmp_path,
            **keyring_env(keyring.current()),
        )

    unknown = run("nowhere", "P-000001")
    assert unknown.returncode == 1 and "no clinic with the code 'nowhere'" in unknown.stderr
    missing = run(tenant.slug, "P-000042")
    assert missing.returncode == 1 and "no patient numbered P-000042" in missing.stderr
    garbled = run(tenant.slug, "Amit")
    assert garbled.returncode == 1 and "patient number such as P-000123" in garbled.stderr
    assert not out.exists()
