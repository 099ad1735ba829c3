"""Orders through the API: the doctor orders, the desk records collection and attaches
the report, a doctor reviews it, and only then is the patient told and shown the result.
The desk never reads a result; another clinic's or family's ids answer 404.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.clinical import orders
from opdesk.clinical.models import Order
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.documents.storage import LocalStorage, Storage
from opdesk.errors import Conflict
from opdesk.notifications.models import OutboxMessage
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    clinic_session,
    ctx_for,
    events_of,
    make_tenant,
    make_user,
    open_session,
    portal_login,
)
from tests.factories.clinical_orders import PDF, make_order, make_visit
from tests.factories.messages import consent_to

API = "/api/v1"


@pytest.fixture
def store(settings: Settings) -> Storage:
    """Where the app under test keeps files (a report it is to read back goes here)."""
    return LocalStorage(settings.data_dir / "files")


ITEMS = [{"name": "HbA1c", "code": "4548-4", "panel": "Diabetes"}, {"name": "Lipid profile"}]


def headers_of(db: Database, ident: Any, tenant: Any, role: str) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, role)))


def lab_messages(db: Database, tenant: Any) -> list[OutboxMessage]:
    with clinic_session(db, tenant.id) as session:
        return list(
            session.execute(
                select(OutboxMessage).where(OutboxMessage.template == "lab-result")
            ).scalars()
        )


def test_an_order_goes_from_ordered_to_patient_notified(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Order Clinic")
    visit = make_visit(db, ident, tenant)
    consent_to(db, ident.cipher, tenant, visit.patient.id, "sms")
    doctor = headers_of(db, ident, tenant, "doctor")
    desk = headers_of(db, ident, tenant, "frontdesk")

    placed = client.post(
        f"{API}/orders",
        json={"visitId": str(visit.visit_id), "type": "lab", "items": ITEMS},
        headers=doctor,
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "ordered" and order["patientId"] == str(visit.patient.id)
    assert order["items"][0] == {"name": "HbA1c", "code": "4548-4", "panel": "Diabetes"}
    assert order["statusTimeline"]["ordered"] is not None
    oid = order["id"]

    collected = client.post(f"{API}/orders/{oid}/collected", headers=desk)
    assert collected.status_code == 200 and collected.json()["status"] == "collected"
    assert collected.json()["statusTimeline"]["collected"] is not None

    report = client.post(
        f"{API}/orders/{oid}/reports",
        files={"file": ("hba1c.pdf", PDF, "application/pdf")},
        data={"abnormal": "true"},
        headers=desk,
    )
    assert report.status_code == 201, report.text
    assert report.json()["status"] == "reported"
    assert lab_messages(db, tenant) == []  # nobody is told before review

    reviewed = client.post(
        f"{API}/orders/{oid}/review",
        json={"abnormal": True, "note": "HbA1c 8.1: see me next week"},
        headers=doctor,
    )
    assert reviewed.status_code == 200, reviewed.text
    body = reviewed.json()
    # the patient has a phone and SMS: the message is queued, so the patient is notified
    assert body["status"] == "patient-notified"
    assert body["abnormalFlag"] is True and body["note"] == "HbA1c 8.1: see me next week"
    assert body["statusTimeline"]["reviewed"] and body["statusTimeline"]["patientNotified"]
    assert len(lab_messages(db, tenant)) == 1
    trail = [
        (e.action, e.from_state, e.to_state)
        for e in events_of(db, tenant.id)
        if e.entity_collection == "orders"
    ]
    assert trail == [
        ("create", None, None),
        ("state-transition", "ordered", "collected"),
        ("state-transition", "collected", "reported"),
        ("state-transition", "reported", "reviewed"),
        ("state-transition", "reviewed", "patient-notified"),
    ]


@pytest.mark.parametrize(
    ("status", "call", "words"),
    [
        ("ordered", "review", "from ordered to reviewed"),
        ("ordered", "patient-notified", "from ordered to patient-notified"),
        ("collected", "collected", "from collected to collected"),
        ("reported", "cancel", "from reported to cancelled"),
        ("reported", "patient-notified", "from reported to patient-notified"),
        ("patient-notified", "review", "from patient-notified to reviewed"),
        ("cancelled", "collected", "from cancelled to collected"),
    ],
)
def test_a_move_the_machine_forbids_is_409_and_changes_nothing(
    client: TestClient, db: Database, ident: Any, status: str, call: str, words: str
) -> None:
    tenant = make_tenant(db, "Refusing Clinic")
    order = make_order(db, ident, tenant, status=status)
    doctor = headers_of(db, ident, tenant, "doctor")
    kwargs: dict[str, Any] = {"headers": doctor}
    if call == "review":
        kwargs["json"] = {"abnormal": False}
    before = len(events_of(db, tenant.id))
    response = client.post(f"{API}/orders/{order.id}/{call}", **kwargs)
    assert response.status_code == 409, response.text
    assert words in response.json()["detail"]
    assert len(events_of(db, tenant.id)) == before
    with clinic_session(db, tenant.id) as session:
        assert session.get(Order, (tenant.id, order.id)).status == status  # type: ignore[union-attr]


@pytest.mark.parametrize("status", ["ordered", "reviewed", "cancelled"])
def test_a_report_is_attached_only_between_collection_and_review(
    client: TestClient, db: Database, ident: Any, status: str
) -> None:
    tenant = make_tenant(db, "Attach Clinic")
    order = make_order(db, ident, tenant, status=status)
    response = client.post(
        f"{API}/orders/{order.id}/reports",
        files={"file": ("r.pdf", PDF, "application/pdf")},
        headers=headers_of(db, ident, tenant, "frontdesk"),
    )
    assert response.status_code == 409
    assert "after collection and before review" in response.json()["detail"]


def test_a_second_file_may_follow_before_review(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Two Files Clinic")
    order = make_order(db, ident, tenant, status="reported")
    response = client.post(
        f"{API}/orders/{order.id}/reports",
        files={"file": ("page2.pdf", PDF, "application/pdf")},
        headers=headers_of(db, ident, tenant, "frontdesk"),
    )
    assert response.status_code == 201 and response.json()["status"] == "reported"
    result = client.get(
        f"{API}/orders/{order.id}/result", headers=headers_of(db, ident, tenant, "doctor")
    )
    assert [r["filename"] for r in result.json()["reports"]] == ["report.pdf", "page2.pdf"]


def test_a_file_that_is_not_a_report_is_refused_naming_the_file(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Bad File Clinic")
    order = make_order(db, ident, tenant, status="collected")
    response = client.post(
        f"{API}/orders/{order.id}/reports",
        files={"file": ("r.txt", b"hello", "text/plain")},
        headers=headers_of(db, ident, tenant, "frontdesk"),
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "file", "reason": "must be a PDF, JPEG, PNG or WebP file"}
    ]
    with clinic_session(db, tenant.id) as session:
        assert session.get(Order, (tenant.id, order.id)).status == "collected"  # type: ignore[union-attr]


def test_the_desk_follows_status_but_never_reads_a_result(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Desk Clinic")
    order = make_order(db, ident, tenant, status="reviewed", abnormal=True)
    desk = headers_of(db, ident, tenant, "frontdesk")
    seen = client.get(f"{API}/orders/{order.id}", headers=desk)
    assert seen.status_code == 200
    assert set(seen.json()) == {
        "id", "visitId", "patientId", "doctorId", "type", "items", "status", "statusTimeline",
    }  # fmt: skip
    listed = client.get(f"{API}/orders", params={"status": "reviewed"}, headers=desk)
    assert [o["id"] for o in listed.json()] == [str(order.id)]
    assert "abnormalFlag" not in listed.json()[0] and "note" not in listed.json()[0]
    doc = orders_documents(db, tenant, order.id)[0]
    for path in (
        f"/orders/{order.id}/result",
        "/orders/review-queue",
        f"/orders/{order.id}/reports/{doc}",
    ):
        assert client.get(f"{API}{path}", headers=desk).status_code == 403, path
    assert client.get(f"/orders/{order.id}/review", headers=desk).status_code == 403
    assert client.get("/orders/review", headers=desk).status_code == 403


def orders_documents(db: Database, tenant: Any, order_id: Any) -> list[Any]:
    with clinic_session(db, tenant.id) as session:
        return [d.id for d in orders.attachments(session, order_id)]


def test_a_doctor_reads_the_report_file_of_the_order(
    client: TestClient, db: Database, ident: Any, store: Storage
) -> None:
    tenant = make_tenant(db, "File Clinic")
    order = make_order(db, ident, tenant, status="reported", storage=store)
    doctor = headers_of(db, ident, tenant, "doctor")
    (doc,) = orders_documents(db, tenant, order.id)
    got = client.get(f"{API}/orders/{order.id}/reports/{doc}", headers=doctor)
    assert got.status_code == 200 and got.content == PDF
    other = make_order(db, ident, tenant, status="reported")
    (foreign_doc,) = orders_documents(db, tenant, other.id)
    assert (
        client.get(f"{API}/orders/{order.id}/reports/{foreign_doc}", headers=doctor).status_code
        == 404
    )


def test_the_patient_sees_a_result_only_after_review(
    client: TestClient, db: Database, ident: Any, store: Storage
) -> None:
    tenant = make_tenant(db, "Portal Results Clinic")
    visit = make_visit(db, ident, tenant)
    order = make_order(
        db, ident, tenant, status="reported", visit=visit, abnormal=True, storage=store
    )
    patient = portal_login(db, ident, tenant, visit.patient)
    (doc,) = orders_documents(db, tenant, order.id)
    assert client.get(f"{API}/me/results", headers=patient).json() == []
    assert client.get(f"/me/results/{doc}", headers=patient).status_code == 404
    assert "HbA1c" not in client.get("/me/results", headers=patient).text

    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        orders.review(
            session,
            ctx,
            ident.cipher,
            order_id=order.id,
            abnormal=True,
            note="Please repeat in 3 months",
            base_url="https://x.example",
        )
    with clinic_session(db, tenant.id) as session:  # no channel allowed: shown, not messaged
        assert session.get(Order, (tenant.id, order.id)).status == "reviewed"  # type: ignore[union-attr]
    assert lab_messages(db, tenant) == []
    (result,) = client.get(f"{API}/me/results", headers=patient).json()
    assert result["id"] == str(order.id) and result["note"] == "Please repeat in 3 months"
    assert result["abnormalFlag"] is True
    got = client.get(f"/me/results/{doc}", headers=patient)
    assert got.status_code == 200 and got.content == PDF
    page = client.get("/me/results", headers=patient)
    assert "HbA1c" in page.text and "Please repeat in 3 months" in page.text


def test_another_familys_result_and_another_clinics_order_answer_404(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Family Clinic")
    mine = make_visit(db, ident, tenant)
    theirs = make_order(db, ident, tenant, status="reviewed")
    (doc,) = orders_documents(db, tenant, theirs.id)
    me = portal_login(db, ident, tenant, mine.patient)
    assert client.get(f"/me/results/{doc}", headers=me).status_code == 404
    assert client.get(f"{API}/me/results", headers=me).json() == []

    other = make_tenant(db, "Other Clinic")
    doctor_b = headers_of(db, ident, other, "doctor")
    for method, path in (
        ("get", f"/orders/{theirs.id}"),
        ("get", f"/orders/{theirs.id}/result"),
        ("post", f"/orders/{theirs.id}/collected"),
        ("post", f"/orders/{theirs.id}/cancel"),
    ):
        assert client.request(method, f"{API}{path}", headers=doctor_b).status_code == 404
    placed = client.post(
        f"{API}/orders",
        json={"visitId": str(mine.visit_id), "type": "lab", "items": ITEMS},
        headers=doctor_b,
    )
    assert placed.status_code == 404


def test_the_review_queue_puts_abnormal_results_first(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Queue Clinic")
    normal = make_order(db, ident, tenant, status="reported", abnormal=False)
    abnormal = make_order(db, ident, tenant, status="reported", abnormal=True)
    unflagged = make_order(db, ident, tenant, status="reported")
    make_order(db, ident, tenant, status="reviewed", abnormal=True)  # done: not waiting
    make_order(db, ident, tenant, status="collected")  # no report yet
    queue = client.get(
        f"{API}/orders/review-queue", headers=headers_of(db, ident, tenant, "doctor")
    ).json()
    assert [o["id"] for o in queue] == [str(abnormal.id), str(normal.id), str(unflagged.id)]
    assert queue[0]["abnormalFlag"] is True


def test_an_order_with_bad_items_names_each_field(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Bad Order Clinic")
    visit = make_visit(db, ident, tenant)
    doctor = headers_of(db, ident, tenant, "doctor")
    empty = client.post(
        f"{API}/orders",
        json={"visitId": str(visit.visit_id), "type": "lab", "items": []},
        headers=doctor,
    )
    assert empty.status_code == 422
    blank = client.post(
        f"{API}/orders",
        json={"visitId": str(visit.visit_id), "type": "lab", "items": [{"name": "  "}]},
        headers=doctor,
    )
    assert blank.status_code == 422
    assert blank.json()["errors"] == [
        {"field": "items[1].name", "reason": "Test 1: enter the test's name"}
    ]
    wrong_type = client.post(
        f"{API}/orders",
        json={"visitId": str(visit.visit_id), "type": "xray", "items": ITEMS},
        headers=doctor,
    )
    assert wrong_type.status_code == 422
    with clinic_session(db, tenant.id) as session:
        assert session.execute(select(Order)).first() is None


def test_the_desk_may_not_order_or_review(client: TestClient, db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Role Clinic")
    visit = make_visit(db, ident, tenant)
    order = make_order(db, ident, tenant, status="reported", visit=visit)
    desk = headers_of(db, ident, tenant, "frontdesk")
    assert (
        client.post(
            f"{API}/orders",
            json={"visitId": str(visit.visit_id), "type": "lab", "items": ITEMS},
            headers=desk,
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"{API}/orders/{order.id}/review", json={"abnormal": False}, headers=desk
        ).status_code
        == 403
    )
    pharmacy = headers_of(db, ident, tenant, "pharmacy")
    assert client.get(f"{API}/orders/{order.id}", headers=pharmacy).status_code == 403


def test_two_reviews_at_once_tell_the_patient_once(db: Database, ident: Any) -> None:
    """The row lock: the second review waits, then finds the order already reviewed."""
    import threading

    tenant = make_tenant(db, "Race Clinic")
    visit = make_visit(db, ident, tenant)
    consent_to(db, ident.cipher, tenant, visit.patient.id, "sms")
    order = make_order(db, ident, tenant, status="reported", visit=visit)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def review() -> None:
        ctx = ctx_for(tenant.id)
        barrier.wait()
        try:
            with transaction(db, ctx) as session:
                orders.review(
                    session,
                    ctx,
                    ident.cipher,
                    order_id=order.id,
                    abnormal=False,
                    note=None,
                    base_url="https://x.example",
                )
            outcomes.append("ok")
        except Conflict:
            outcomes.append("409")

    threads = [threading.Thread(target=review) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["409", "ok"]
    assert len(lab_messages(db, tenant)) == 1


def test_the_attached_report_is_no_document_the_desk_can_open(
    client: TestClient, db: Database, ident: Any, store: Storage
) -> None:
    """Through the documents API the desk lists the file it attached but cannot open,
    download or share it; a doctor can.
    """
    tenant = make_tenant(db, "Documents Clinic")
    order = make_order(db, ident, tenant, status="reported", storage=store)
    (doc,) = orders_documents(db, tenant, order.id)
    desk = headers_of(db, ident, tenant, "frontdesk")
    doctor = headers_of(db, ident, tenant, "doctor")
    for path in (f"{API}/documents/{doc}", f"{API}/documents/{doc}/content"):
        assert client.get(path, headers=desk).status_code == 404, path
        assert client.get(path, headers=doctor).status_code == 200, path
    shared = client.post(f"{API}/documents/{doc}/share-links", json={}, headers=desk)
    assert shared.status_code == 404


def test_the_patient_cannot_open_the_report_through_documents_before_review(
    client: TestClient, db: Database, ident: Any, store: Storage
) -> None:
    tenant = make_tenant(db, "Portal Documents Clinic")
    visit = make_visit(db, ident, tenant)
    order = make_order(db, ident, tenant, status="reported", visit=visit, storage=store)
    (doc,) = orders_documents(db, tenant, order.id)
    me = portal_login(db, ident, tenant, visit.patient)
    assert client.get(f"/me/documents/{doc}", headers=me).status_code == 404
    assert str(doc) not in client.get("/me", headers=me).text
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        orders.review(
            session,
            ctx,
            ident.cipher,
            order_id=order.id,
            abnormal=False,
            note=None,
            base_url="https://x.example",
        )
    assert client.get(f"/me/documents/{doc}", headers=me).status_code == 200
    assert str(doc) in client.get("/me", headers=me).text
