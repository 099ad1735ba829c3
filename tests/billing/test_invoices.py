"""Invoices: drafts, issue with gapless numbers per financial year, the booking's charge,
checkout from a visit, and an issued invoice frozen by PostgreSQL itself.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from opdesk.billing import invoices
from opdesk.billing.models import Invoice, InvoiceCounter, LedgerEntry
from opdesk.db import Database
from opdesk.errors import Conflict, InvalidInput
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    book,
    cancel,
    clinic_session,
    clinic_with_slots,
    clinical_orders,
    ctx_for,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    patients,
    unaudited,
)
from tests.factories import billing as bill


def _api(db: Database, ident: Any, tenant: Tenant, role: str = "frontdesk") -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, role)))


def test_a_draft_by_hand_is_priced_line_by_line_and_takes_no_number(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant)
    made = client.post(
        "/api/v1/invoices",
        json={
            "patientId": str(patient.id),
            "lineItems": [
                {"type": "consult", "description": "Consultation", "unitPrice": "600.00"},
                {
                    "type": "med",
                    "description": "Paracetamol 500 mg strip",
                    "quantity": "2",
                    "unitPrice": "12.50",
                    "taxRate": "18",
                    "sacHsn": "3004",
                    "discountAmount": "5.00",
                },
            ],
            "discountReason": "senior citizen",
        },
        headers=_api(db, ident, tenant),
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["status"], body["number"]) == ("draft", None)
    # med: 25.00 - 5.00 = 20.00 taxable; CGST 9% = 1.80, SGST 1.80
    assert body["lineItems"][1]["taxable"] == "20.00"
    assert (body["lineItems"][1]["cgst"], body["lineItems"][1]["sgst"]) == ("1.80", "1.80")
    assert body["subtotal"] == "625.00"
    assert body["discountTotal"] == "5.00"
    assert body["taxTotal"] == "3.60"
    assert body["grandTotal"] == body["balanceDue"] == "623.60"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"unitPrice": "-1"}, "lineItems[0].unitPrice"),
        ({"unitPrice": "NaN"}, "lineItems.0.unitPrice"),
        ({"unitPrice": "Infinity"}, "lineItems.0.unitPrice"),
        ({"unitPrice": "1e15"}, "lineItems.0.unitPrice"),
        ({"quantity": "0"}, "lineItems[0].quantity"),
        ({"quantity": "-2"}, "lineItems[0].quantity"),
        ({"quantity": "99999"}, "lineItems[0].quantity"),
        ({"taxRate": "7"}, "lineItems[0].taxRate"),
        ({"discountAmount": "100"}, "discountReason"),
    ],
)
def test_bad_amounts_and_quantities_are_refused_naming_the_field(
    client: Any, db: Database, ident: Any, tenant: Tenant, line: dict[str, str], field: str
) -> None:
    patient = make_patient(db, ident, tenant)
    base = {"type": "service", "description": "ECG", "unitPrice": "300.00"}
    refused = client.post(
        "/api/v1/invoices",
        json={"patientId": str(patient.id), "lineItems": [{**base, **line}]},
        headers=_api(db, ident, tenant),
    )
    assert refused.status_code == 422, refused.text
    fields = [e["field"] for e in refused.json()["errors"]]
    assert field in fields
    with clinic_session(db, tenant.id) as session:
        assert session.scalars(select(Invoice).where(Invoice.patient_id == patient.id)).all() == []


def test_issuing_numbers_the_invoice_and_charges_the_ledger(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    draft = bill.draft(db, ident, tenant, bill.line("800.00"))
    with time_machine.travel(datetime(2026, 12, 1, 6, tzinfo=UTC), tick=False):
        issued = client.post(f"/api/v1/invoices/{draft.id}/issue", headers=_api(db, ident, tenant))
    assert issued.status_code == 200, issued.text
    assert issued.json()["number"] == f"{tenant.invoice_prefix}/26-27/000001"
    assert issued.json()["status"] == "issued"
    with clinic_session(db, tenant.id) as session:
        (entry,) = session.scalars(select(LedgerEntry).where(LedgerEntry.invoice_id == draft.id))
    assert (entry.type, entry.kind, entry.amount) == ("debit", "invoice", Decimal("800.00"))
    again = client.post(f"/api/v1/invoices/{draft.id}/issue", headers=_api(db, ident, tenant))
    assert again.status_code == 409


def test_numbers_start_again_each_financial_year_on_the_clinics_calendar(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    # 31 March 23:30 in India is still 2025-26 there (18:00 UTC); 1 April 00:30 is 2026-27
    with time_machine.travel(datetime(2026, 3, 31, 18, 0, tzinfo=UTC), tick=False):
        march = bill.issued(db, ident, tenant)
    with time_machine.travel(datetime(2026, 3, 31, 19, 0, tzinfo=UTC), tick=False):
        april = bill.issued(db, ident, tenant)
    assert march.number == f"{tenant.invoice_prefix}/25-26/000001"
    assert april.number == f"{tenant.invoice_prefix}/26-27/000001"


def test_100_invoices_issued_at_once_get_100_consecutive_numbers(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant)
    drafts = [bill.draft(db, ident, tenant, patient_id=patient.id) for _ in range(100)]
    numbers: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def issue_some(chunk: list[Invoice]) -> None:
        start.wait()
        for d in chunk:
            try:
                numbers.append(bill.issue(db, tenant, d.id).number or "")
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=issue_some, args=(drafts[i::10],)) for i in range(10)]
    # mid-year, so a run at the clinic's 31 March midnight cannot split them across years
    with time_machine.travel(datetime(2026, 12, 1, 6, tzinfo=UTC)):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    seqs = sorted(int(n.rsplit("/", 1)[1]) for n in numbers)
    assert seqs == list(range(1, 101))


def test_a_rolled_back_issue_gives_its_number_back(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    first = bill.draft(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with pytest.raises(RuntimeError), transaction(db, ctx) as session:
        row = session.get(Invoice, (tenant.id, first.id))
        assert row is not None
        invoices.issue(session, ctx, row)
        raise RuntimeError("the request failed after issuing")
    second = bill.issued(db, ident, tenant)
    assert second.number is not None and second.number.endswith("/000001")


def test_a_draft_changes_and_is_discarded_but_an_issued_invoice_does_neither(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    headers = _api(db, ident, tenant)
    draft = bill.draft(db, ident, tenant)
    changed = client.put(
        f"/api/v1/invoices/{draft.id}",
        json={"lineItems": [{"type": "service", "description": "ECG", "unitPrice": "350.00"}]},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["grandTotal"] == "350.00"
    assert client.delete(f"/api/v1/invoices/{draft.id}", headers=headers).status_code == 204
    assert client.get(f"/api/v1/invoices/{draft.id}", headers=headers).status_code == 404
    kept = bill.issued(db, ident, tenant)
    body = {"lineItems": [{"type": "service", "description": "ECG", "unitPrice": "1.00"}]}
    assert client.put(f"/api/v1/invoices/{kept.id}", json=body, headers=headers).status_code == 409
    assert client.delete(f"/api/v1/invoices/{kept.id}", headers=headers).status_code == 409
    assert (
        client.get(f"/api/v1/invoices/{kept.id}", headers=headers).json()["grandTotal"] == "500.00"
    )


def test_an_invoice_with_nothing_on_it_cannot_be_issued(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    draft = bill.draft(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        row = session.get(Invoice, (tenant.id, draft.id))
        assert row is not None
        invoices.revise_draft(
            session, ctx, row, lines=[], discount_reason=None, place_of_supply=None
        )
    with pytest.raises(InvalidInput) as refused:
        bill.issue(db, tenant, draft.id)
    assert refused.value.errors[0].field == "lineItems"


def test_a_free_invoice_is_paid_when_issued(db: Database, ident: Any, tenant: Tenant) -> None:
    free = bill.issued(db, ident, tenant, bill.line("0.00", description="Follow-up (free)"))
    assert (free.status, free.balance_due) == ("paid", Decimal("0.00"))


def test_another_state_is_charged_igst(db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Pune Clinic", address={"state": "Maharashtra"})
    line = bill.line("1000.00", tax_rate="12", type="med", description="Knee brace")
    here = bill.draft(db, ident, tenant, line)
    there = bill.draft(db, ident, tenant, line, place_of_supply="Kerala")
    assert (here.inter_state, here.cgst_total, here.sgst_total) == (
        False,
        Decimal("60.00"),
        Decimal("60.00"),
    )
    assert (there.inter_state, there.igst_total, there.cgst_total) == (
        True,
        Decimal("120.00"),
        Decimal("0.00"),
    )
    same = bill.draft(db, ident, tenant, line, place_of_supply="maharashtra")
    assert same.inter_state is False


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE invoices SET grand_total = 1, subtotal = 1, balance_due = 1 WHERE id = :id",
        "UPDATE invoices SET line_items = '[]' WHERE id = :id",
        "UPDATE invoices SET number = 'X/1' WHERE id = :id",
        "UPDATE invoices SET status = 'draft', number = NULL, issued_at = NULL WHERE id = :id",
        "DELETE FROM invoices WHERE id = :id",
    ],
)
def test_an_issued_invoice_cannot_be_changed_by_a_raw_statement_as_the_app_role(
    db: Database, ident: Any, tenant: Tenant, sql: str
) -> None:
    kept = bill.issued(db, ident, tenant)
    with pytest.raises(DBAPIError) as refused, clinic_session(db, tenant.id) as session:
        unaudited(session)
        assert session.scalar(text("SELECT current_user")) == "opdesk_app"
        session.execute(text(sql), {"id": kept.id})
    assert getattr(refused.value.orig, "sqlstate", None) == "OD001"


def test_ledger_rows_cannot_be_changed_or_removed(db: Database, ident: Any, tenant: Tenant) -> None:
    kept = bill.issued(db, ident, tenant)
    for sql in (
        "UPDATE ledger_entries SET amount = 1 WHERE invoice_id = :id",
        "DELETE FROM ledger_entries WHERE invoice_id = :id",
    ):
        with pytest.raises(DBAPIError), clinic_session(db, tenant.id) as session:
            unaudited(session)
            session.execute(text(sql), {"id": kept.id})
    with db.owner_engine.begin() as conn, pytest.raises(DBAPIError) as refused:
        conn.execute(
            text("UPDATE ledger_entries SET amount = 1 WHERE invoice_id = :id"), {"id": kept.id}
        )
    assert getattr(refused.value.orig, "sqlstate", None) == "OD001"


def test_two_invoices_cannot_share_a_number(db: Database, ident: Any, tenant: Tenant) -> None:
    kept = bill.issued(db, ident, tenant)
    other = bill.draft(db, ident, tenant)
    with pytest.raises(IntegrityError), clinic_session(db, tenant.id) as session:
        unaudited(session)
        session.execute(
            text(
                "UPDATE invoices SET status = 'issued', number = :n, issued_at = now() "
                "WHERE id = :id"
            ),
            {"n": kept.number, "id": other.id},
        )


def test_totals_that_do_not_add_up_are_refused_by_the_database(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    draft = bill.draft(db, ident, tenant)
    for sql in (
        "UPDATE invoices SET grand_total = grand_total + 1, balance_due = balance_due + 1",
        "UPDATE invoices SET balance_due = balance_due - 1",
        # IGST on an invoice inside the clinic's state (its totals otherwise add up)
        "UPDATE invoices SET igst_total = 1, tax_total = tax_total + 1, "
        "grand_total = grand_total + 1, balance_due = balance_due + 1",
    ):
        with pytest.raises(IntegrityError), clinic_session(db, tenant.id) as session:
            unaudited(session)
            session.execute(text(sql + " WHERE id = :id"), {"id": draft.id})


def test_a_booking_leaves_its_consultation_fee_as_a_draft_and_a_cancel_drops_it(
    db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    booked = book(db, tenant, slots[0], patient)
    with clinic_session(db, tenant.id) as session:
        charge = invoices.draft_for_appointment(session, booked.id)
        assert charge is not None
        (line,) = charge.line_items
    assert (line["type"], Decimal(line["unitPrice"])) == ("consult", doctor.consultation_fee)
    assert line["refId"] == str(booked.id)
    cancel(db, ident, tenant, booked.id)
    with clinic_session(db, tenant.id) as session:
        assert invoices.draft_for_appointment(session, booked.id) is None


def test_checkout_brings_the_visits_services_onto_the_bookings_charge(
    client: Any, db: Database, ident: Any
) -> None:
    made = clinical_orders.make_visit(db, ident, make_tenant(db))
    headers = _api(db, ident, made.tenant)
    with clinic_session(db, made.tenant.id) as session:
        from opdesk.clinical.models import VisitService

        unaudited(session)
        session.add(
            VisitService(
                tenant_id=made.tenant.id,
                visit_id=made.visit_id,
                code="ECG",
                description="ECG",
                quantity=1,
                unit_price=Decimal("250.00"),
                tax_rate=Decimal(0),
                created_at=datetime.now(UTC),
                created_by=made.tenant.id,
            )
        )
    first = client.post(f"/api/v1/visits/{made.visit_id}/invoice", headers=headers)
    assert first.status_code == 201, first.text
    kinds = [line["type"] for line in first.json()["lineItems"]]
    assert kinds == ["consult", "service"]
    again = client.post(f"/api/v1/visits/{made.visit_id}/invoice", headers=headers)
    assert again.json()["id"] == first.json()["id"]  # the same draft, not a second one
    assert [line["type"] for line in again.json()["lineItems"]] == kinds
    issued = client.post(f"/api/v1/invoices/{first.json()['id']}/issue", headers=headers)
    assert issued.status_code == 200
    billed = client.post(f"/api/v1/visits/{made.visit_id}/invoice", headers=headers)
    assert billed.status_code == 409
    assert issued.json()["number"] in billed.json()["detail"]


def test_another_clinics_invoice_is_not_found(
    client: Any, db: Database, ident: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = bill.issued(db, ident, other_tenant)
    headers = _api(db, ident, tenant)
    assert client.get(f"/api/v1/invoices/{theirs.id}", headers=headers).status_code == 404
    assert client.post(f"/api/v1/invoices/{theirs.id}/issue", headers=headers).status_code == 404


def test_the_counter_is_one_row_per_clinic_and_year(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    with time_machine.travel(datetime(2026, 12, 1, 6, tzinfo=UTC), tick=False):
        for _ in range(3):
            bill.issued(db, ident, tenant)
    with clinic_session(db, tenant.id) as session:
        (counter,) = session.scalars(select(InvoiceCounter))
    assert (counter.financial_year, counter.last_number) == ("2026-27", 3)


def test_an_issued_invoice_answers_409_through_the_service(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    kept = bill.issued(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with pytest.raises(Conflict), transaction(db, ctx) as session:
        row = session.get(Invoice, (tenant.id, kept.id))
        assert row is not None
        invoices.discard(session, ctx, row)


def test_an_issued_invoice_and_its_receipt_print_as_pdfs(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    from tests.factories.clinical_rx import pdf_text

    headers = _api(db, ident, tenant, "accounts")
    draft = bill.draft(db, ident, tenant, bill.line("1180.00", description="Nebuliser"))
    assert client.get(f"/api/v1/invoices/{draft.id}/pdf", headers=headers).status_code == 409
    invoice = bill.issue(db, tenant, draft.id)
    payment = bill.pay(db, tenant, invoice.id, "1180.00", "card", "APPR9876")
    printed = client.get(f"/api/v1/invoices/{invoice.id}/pdf", headers=headers)
    assert printed.status_code == 200
    assert printed.headers["content-type"] == "application/pdf"
    words = pdf_text(printed.content)
    assert invoice.number is not None
    assert invoice.number in words
    assert "One Thousand One Hundred Eighty" in words
    receipt = client.get(f"/api/v1/payments/{payment.id}/receipt", headers=headers)
    assert receipt.status_code == 200
    assert "APPR9876" in pdf_text(receipt.content)


def test_checking_out_again_keeps_the_discount_the_desk_gave_a_visit_line(
    client: Any, db: Database, ident: Any
) -> None:
    made = clinical_orders.make_visit(db, ident, make_tenant(db))
    headers = _api(db, ident, made.tenant)
    first = client.post(f"/api/v1/visits/{made.visit_id}/invoice", headers=headers).json()
    lines = first["lineItems"]
    consult = {k: lines[0][k] for k in ("type", "refId", "description", "quantity", "unitPrice")}
    changed = client.put(
        f"/api/v1/invoices/{first['id']}",
        json={
            "lineItems": [{**consult, "discountAmount": "100.00"}],
            "discountReason": "staff family",
        },
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    again = client.post(f"/api/v1/visits/{made.visit_id}/invoice", headers=headers).json()
    assert again["lineItems"][0]["discountAmount"] == "100.00"
    assert again["discountReason"] == "staff family"
    assert again["lineItems"][0]["description"] == f"Consultation with {made.doctor.display_name}"
