"""Prescriptions: items and frequency words, the allergy and duplicate-therapy check,
acknowledging before issuing, signing and verification (valid / superseded / tampered),
the freeze after issue, changes after issue, the PDF (text and QR), roles and clinics.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from opdesk.clinical import formulary, prescriptions, signing
from opdesk.clinical.models import FormularyDrug, Prescription
from opdesk.db import Database
from opdesk.errors import Conflict
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import bearer, clinic_session, make_tenant, make_user, open_session
from tests.factories.clinical_rx import (
    BASE_URL,
    doctor_ctx,
    make_prescription,
    pdf_runs,
    pdf_text,
    qr_text,
)
from tests.factories.web import portal_login

PENICILLIN = [{"substance": "Penicillin", "severity": "severe"}]


def doctor_headers(db: Database, ident: Any, doctor: Any) -> dict[str, str]:
    from opdesk.identity.models import User

    with clinic_session(db, doctor.tenant_id) as session:
        user = session.get_one(User, (doctor.tenant_id, doctor.user_id))
        session.expunge(user)
    return bearer(open_session(db, ident, user))


def test_frequency_notation_is_said_in_words() -> None:
    assert prescriptions.frequency_words("1-0-1") == "1 in the morning, 1 at night"
    assert prescriptions.frequency_words("1 - 1 - 1") == (
        "1 in the morning, 1 in the afternoon, 1 at night"
    )
    assert prescriptions.frequency_words("0-0-½") == "½ at night"
    assert prescriptions.frequency_words("BD") == "twice a day"
    assert prescriptions.frequency_words("every 8 hours") == "every 8 hours"
    assert prescriptions.frequency_words("whenever") is None


def test_the_formulary_is_seeded_once_from_the_nlem_list(db: Database, tenant: Tenant) -> None:
    ctx = doctor_ctx(tenant, type("D", (), {"user_id": None})())
    with transaction(db, ctx) as session:
        first = formulary.ensure_seeded(session, ctx)
        again = formulary.ensure_seeded(session, ctx)
        found = formulary.search(session, ctx, "amoxi")
    assert first == len(formulary.nlem()) > 200
    assert again == 0
    assert found and all("amoxicillin" in d.generic_name.lower() for d in found)


def test_a_penicillin_allergy_flags_amoxicillin_and_issuing_waits_for_acknowledgement(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, draft = make_prescription(
        db,
        ident,
        tenant,
        issue=False,
        items=[
            {"name": "Amoxicillin 500 mg", "frequency": "1-1-1", "durationDays": 5},
            {"name": "Ibuprofen", "frequency": "sos"},
            {"name": "Diclofenac 50 mg", "frequency": "bd"},
        ],
        allergies=PENICILLIN,
    )
    headers = doctor_headers(db, ident, setting.doctor)
    body = client.get(f"/api/v1/prescriptions/{draft.id}", headers=headers).json()
    kinds = {(f["itemName"], f["type"]) for f in body["allergyFlags"]}
    assert ("Amoxicillin 500 mg", "allergy-class") in kinds
    assert ("Diclofenac 50 mg", "duplicate-therapy") in kinds
    assert body["items"][0]["frequencyWords"] == (
        "1 in the morning, 1 in the afternoon, 1 at night"
    )

    refused = client.post(f"/api/v1/prescriptions/{draft.id}/issue", headers=headers)
    assert refused.status_code == 409
    assert "acknowledge" in refused.json()["detail"]

    for index in range(len(body["allergyFlags"]) - 1):
        ok = client.post(
            f"/api/v1/prescriptions/{draft.id}/acknowledge", json={"index": index}, headers=headers
        )
        assert ok.status_code == 200
    still = client.post(f"/api/v1/prescriptions/{draft.id}/issue", headers=headers)
    assert still.status_code == 409  # one is still open
    last = len(body["allergyFlags"]) - 1
    client.post(
        f"/api/v1/prescriptions/{draft.id}/acknowledge", json={"index": last}, headers=headers
    )
    issued = client.post(f"/api/v1/prescriptions/{draft.id}/issue", headers=headers)
    assert issued.status_code == 200, issued.text
    assert issued.json()["status"] == "issued"
    assert all(f["acknowledgedAt"] for f in issued.json()["allergyFlags"])


def test_bad_items_are_refused_naming_the_field(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, draft = make_prescription(db, ident, tenant, issue=False)
    headers = doctor_headers(db, ident, setting.doctor)
    answer = client.put(
        f"/api/v1/prescriptions/{draft.id}/items",
        json={"items": [{"name": "Paracetamol", "frequency": "lots", "durationDays": 900}]},
        headers=headers,
    )
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["errors"]}
    assert fields == {"Medicine 1: Frequency", "Medicine 1: Days"}
    kept = client.get(f"/api/v1/prescriptions/{draft.id}", headers=headers).json()
    assert [i["name"] for i in kept["items"]] == ["Paracetamol 650 mg"]  # nothing half-written


def test_an_issued_prescription_is_signed_and_verifies(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    _setting, issued = make_prescription(db, ident, tenant)
    assert issued.qr_data and issued.qr_data.startswith(BASE_URL + "/rx/verify/")
    page = client.get(issued.qr_data.removeprefix(BASE_URL))
    assert page.status_code == 200
    assert "valid" in page.text and "Paracetamol 650 mg" in page.text
    assert "Penicillin" not in page.text  # a pharmacist sees no allergies or notes


def test_one_changed_byte_fails_verification(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    _setting, issued = make_prescription(db, ident, tenant)
    with clinic_session(db, tenant.id) as session:
        row = session.get_one(Prescription, (tenant.id, issued.id))
        signed = prescriptions.payload(session, ident.cipher, row)
        key = signing.key_by_id(session, row.signing_key_id)  # type: ignore[arg-type]
        assert key is not None
        assert signing.verify(key.public_key, row.signature or b"", signed)
        changed = dict(signed, items=[dict(signed["items"][0], dose="2 tablet")])
        assert not signing.verify(key.public_key, row.signature or b"", changed)
    # The database row itself changed behind the freeze (as its owner, triggers off).
    with db.owner_engine.begin() as conn:
        conn.execute(text("set local session_replication_role = replica"))
        conn.execute(
            text("update prescriptions_items set duration_days = 4 where prescription_id = :p"),
            {"p": issued.id},
        )
    page = client.get(issued.qr_data.removeprefix(BASE_URL))  # type: ignore[union-attr]
    assert "tampered" in page.text
    assert "Paracetamol" not in page.text  # the content is not shown as if it were good


def test_a_wrong_code_in_the_url_is_tampered_and_a_made_up_one_is_not_found(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    _setting, issued = make_prescription(db, ident, tenant)
    url = issued.qr_data.removeprefix(BASE_URL)  # type: ignore[union-attr]
    last = url[-1]
    bent = url[:-1] + ("0" if last != "0" else "1")
    assert "tampered" in client.get(bent).text
    assert client.get("/rx/verify/nonsense").status_code == 404


def test_an_issued_prescription_cannot_change_even_by_sql(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, issued = make_prescription(db, ident, tenant)
    headers = doctor_headers(db, ident, setting.doctor)
    answer = client.put(
        f"/api/v1/prescriptions/{issued.id}/items",
        json={"items": [{"name": "Something else"}]},
        headers=headers,
    )
    assert answer.status_code == 409
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as refused, clinic_session(db, tenant.id) as session:
        session.execute(
            text("update prescriptions_items set dose = 'x' where prescription_id = :p"),
            {"p": issued.id},
        )
    assert getattr(refused.value.orig, "sqlstate", None) == "OD001"


def test_a_change_supersedes_once_and_the_old_one_shows_superseded(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, issued = make_prescription(db, ident, tenant)
    headers = doctor_headers(db, ident, setting.doctor)
    new = client.post(f"/api/v1/prescriptions/{issued.id}/change", headers=headers)
    assert new.status_code == 201
    assert new.json()["supersedes"] == str(issued.id) and new.json()["version"] == 2
    again = client.post(f"/api/v1/prescriptions/{issued.id}/change", headers=headers)
    assert again.status_code == 409
    url = issued.qr_data.removeprefix(BASE_URL)  # type: ignore[union-attr]
    assert "valid" in client.get(url).text  # the new one is only a draft yet
    assert client.post(
        f"/api/v1/prescriptions/{new.json()['id']}/issue", headers=headers
    ).is_success
    assert "superseded" in client.get(url).text


def test_two_changes_at_once_give_one_new_prescription(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, issued = make_prescription(db, ident, tenant)
    ctx = doctor_ctx(tenant, setting.doctor)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def change() -> None:
        try:
            with transaction(db, ctx) as session:
                barrier.wait()
                prescriptions.change(session, ctx, ident.cipher, prescription_id=issued.id)
            results.append("made")
        except Conflict:
            results.append("409")

    threads = [threading.Thread(target=change) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["409", "made"]


def test_templates_and_repeat_last_add_medicines_in_one_click(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, issued = make_prescription(db, ident, tenant)
    headers = doctor_headers(db, ident, setting.doctor)
    saved = client.post(
        f"/api/v1/prescriptions/{issued.id}/save-template",
        json={"name": "Adult fever"},
        headers=headers,
    )
    assert saved.status_code == 201
    twice = client.post(
        f"/api/v1/prescriptions/{issued.id}/save-template",
        json={"name": "adult FEVER"},
        headers=headers,
    )
    assert twice.status_code == 409
    _s, draft = make_prescription(
        db, ident, tenant, issue=False, setting=make_visit_for(db, ident, setting)
    )
    repeated = client.post(f"/api/v1/prescriptions/{draft.id}/repeat-last", headers=headers)
    assert repeated.status_code == 200
    applied = client.post(
        f"/api/v1/prescriptions/{draft.id}/apply-template",
        json={"templateId": saved.json()["id"]},
        headers=headers,
    )
    assert [i["name"] for i in applied.json()["items"]] == ["Paracetamol 650 mg"] * 3


def make_visit_for(db: Database, ident: Any, setting: Any) -> Any:
    """Another visit of the same patient with the same doctor."""
    from opdesk import audit
    from opdesk.clinical.models import Visit, VisitStatus
    from opdesk.db import new_id
    from tests.factories import book, generate, slots_of
    from tests.factories.scheduling import DAY

    generate(db, setting.tenant, setting.doctor, DAY, 8)
    slot = next(s for s in slots_of(db, setting.tenant, setting.doctor) if s.status == "free")
    appointment = book(db, setting.tenant, slot, setting.patient)
    ctx = doctor_ctx(setting.tenant, setting.doctor)
    with transaction(db, ctx) as session:
        visit = Visit(
            tenant_id=setting.tenant.id,
            id=new_id(),
            appointment_id=appointment.id,
            patient_id=setting.patient.id,
            doctor_id=setting.doctor.id,
            status=VisitStatus.DRAFT,
            created_at=ctx.now(),
            updated_at=ctx.now(),
        )
        session.add(visit)
        session.flush()
        audit.record(ctx, entity="visits", entity_id=visit.id, action="create")
    return type(setting)(setting.tenant, setting.doctor, setting.patient, visit.id)


def test_the_pdf_has_the_text_and_a_qr_code_of_the_verification_url(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, issued = make_prescription(
        db,
        ident,
        tenant,
        items=[
            {
                "name": "<script>alert(1)</script> सिरप",
                "dose": "5 ml",
                "frequency": "1-0-1",
                "durationDays": 5,
                "instructions": "खाने के बाद <b>",
            }
        ],
        name={"first": "आशा", "last": "<i>Verma</i>"},
    )
    assert issued.qr_data is not None
    headers = doctor_headers(db, ident, setting.doctor)
    answer = client.get(f"/api/v1/prescriptions/{issued.id}/pdf", headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    words = pdf_text(answer.content)
    for expected in (
        "आशा",
        "<i>Verma</i>",
        "<script>alert(1)</script> सिरप",
        "खाने के बाद <b>",
        "MMC-2011-04512",
        "₹500.00",
        "1 in the morning, 1 at night",
        issued.qr_data,
    ):
        assert expected in words.replace("\n", " ") or expected in words, expected
    # The QR squares drawn in the PDF, pictured and read by a QR decoder, give the URL.
    assert qr_text(answer.content) == issued.qr_data
    page = client.get(f"/prescriptions/{issued.id}", headers=headers)
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_the_pdf_starts_each_line_of_the_heading_at_the_left_margin(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    # Was: the registration number and the patient's age started at the right edge of
    # the line above (off the page), as fpdf2 leaves the cursor after a cell.
    setting, issued = make_prescription(db, ident, tenant)
    headers = doctor_headers(db, ident, setting.doctor)
    answer = client.get(f"/prescriptions/{issued.id}/pdf", headers=headers)
    runs = pdf_runs(answer.content)
    left = min(x for x, _y, _text in runs)
    rx_at = next(y for _x, y, text in runs if text == "Rx")
    heading = [(x, line) for x, y, line in runs if y >= rx_at]  # all above the medicines
    assert len(heading) >= 5
    for x, line in heading:
        assert x == left, f"starts at {x:.0f} pt, not at the margin ({left:.0f}): {line}"


def test_desk_and_accounts_may_not_read_prescriptions_pharmacy_may(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    _setting, issued = make_prescription(db, ident, tenant)
    for role, status in (("frontdesk", 403), ("accounts", 403), ("pharmacy", 200)):
        headers = bearer(open_session(db, ident, make_user(db, ident, tenant, role)))
        assert (
            client.get(f"/api/v1/prescriptions/{issued.id}", headers=headers).status_code == status
        )
    pharmacy = bearer(open_session(db, ident, make_user(db, ident, tenant, "pharmacy")))
    assert (
        client.put(
            f"/api/v1/prescriptions/{issued.id}/items", json={"items": []}, headers=pharmacy
        ).status_code
        == 403
    )
    found = client.get("/pharmacy/prescriptions", params={"q": issued.qr_data}, headers=pharmacy)
    assert found.status_code == 200 and "valid" in found.text


def test_another_clinics_prescription_is_not_found(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    _setting, issued = make_prescription(db, ident, tenant)
    other = make_tenant(db, "Other Clinic")
    pharmacy = bearer(open_session(db, ident, make_user(db, ident, other, "pharmacy")))
    assert client.get(f"/api/v1/prescriptions/{issued.id}", headers=pharmacy).status_code == 404
    looked = client.get("/pharmacy/prescriptions", params={"q": str(issued.id)}, headers=pharmacy)
    assert "No issued prescription" in looked.text


def test_patients_see_their_own_signed_prescriptions_only(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, issued = make_prescription(db, ident, tenant)
    _other, theirs = make_prescription(db, ident, tenant)
    _d, draft = make_prescription(
        db, ident, tenant, issue=False, setting=make_visit_for(db, ident, setting)
    )
    mine = portal_login(db, ident, tenant, setting.patient)
    listed = client.get("/me/prescriptions", headers=mine)
    assert listed.status_code == 200 and "Paracetamol 650 mg" in listed.text
    assert client.get(f"/me/prescriptions/{issued.id}/pdf", headers=mine).status_code == 200
    assert client.get(f"/me/prescriptions/{theirs.id}/pdf", headers=mine).status_code == 404
    assert client.get(f"/me/prescriptions/{draft.id}/pdf", headers=mine).status_code == 404


def test_formulary_drug_items_take_strength_and_form(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, draft = make_prescription(db, ident, tenant, issue=False)
    headers = doctor_headers(db, ident, setting.doctor)
    drugs = client.get("/api/v1/formulary", params={"q": "cetirizine 10"}, headers=headers).json()
    assert drugs, "cetirizine is in the NLEM list"
    saved = client.put(
        f"/api/v1/prescriptions/{draft.id}/items",
        json={"items": [{"drugId": drugs[0]["id"], "frequency": "0-0-1", "durationDays": 5}]},
        headers=headers,
    )
    item = saved.json()["items"][0]
    assert (item["name"], item["strength"], item["form"]) == ("Cetirizine", "10 mg", "tablet")
    with clinic_session(db, tenant.id) as session:
        assert session.get(FormularyDrug, (tenant.id, drugs[0]["id"])) is not None
