"""Payments at the desk and refunds: exact money, never more than is due or was paid, each
retry applied once, and the ledger always agreeing with the invoices.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from opdesk.billing import ledger, payments
from opdesk.billing.models import Invoice, LedgerEntry, LedgerKind, Payment
from opdesk.db import Database
from opdesk.errors import Conflict, InvalidInput
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    clinic_session,
    ctx_for,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    unaudited,
)
from tests.factories import billing as bill

UTR = "412345678901"


def _api(db: Database, ident: Any, tenant: Tenant, role: str) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, role)))


def test_cash_card_and_upi_settle_an_invoice_in_parts(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    invoice = bill.issued(db, ident, tenant, bill.line("1000.00"))
    desk = _api(db, ident, tenant, "frontdesk")
    url = f"/api/v1/invoices/{invoice.id}/payments"
    cash = client.post(url, json={"method": "cash", "amount": "300.00"}, headers=desk)
    assert cash.status_code == 201, cash.text
    card = client.post(
        url, json={"method": "card", "amount": "200", "reference": "APPR1234"}, headers=desk
    )
    assert card.status_code == 201, card.text
    after = client.get(f"/api/v1/invoices/{invoice.id}", headers=desk).json()
    assert (after["status"], after["amountPaid"], after["balanceDue"]) == (
        "partial",
        "500.00",
        "500.00",
    )
    upi = client.post(
        url, json={"method": "upi", "amount": "500.00", "reference": UTR}, headers=desk
    )
    assert upi.status_code == 201, upi.text
    done = client.get(f"/api/v1/invoices/{invoice.id}", headers=desk).json()
    assert (done["status"], done["balanceDue"]) == ("paid", "0.00")
    assert done["paymentsApplied"] == [cash.json()["id"], card.json()["id"], upi.json()["id"]]
    ledger_now = client.get(f"/api/v1/patients/{invoice.patient_id}/ledger", headers=desk).json()
    assert ledger_now["balance"] == "0.00"
    assert [(e["type"], e["amount"]) for e in ledger_now["entries"]] == [
        ("debit", "1000.00"),
        ("credit", "300.00"),
        ("credit", "200.00"),
        ("credit", "500.00"),
    ]


def test_a_split_payment_is_one_payment_of_its_parts(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    invoice = bill.issued(db, ident, tenant, bill.line("700.00"))
    made = client.post(
        f"/api/v1/invoices/{invoice.id}/payments",
        json={
            "split": [
                {"method": "cash", "amount": "200.00"},
                {"method": "upi", "amount": "500.00", "reference": UTR},
            ]
        },
        headers=_api(db, ident, tenant, "accounts"),
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["amount"], body["method"], body["status"]) == ("700.00", "cash", "captured")
    assert [(p["method"], p["amount"]) for p in body["split"]] == [
        ("cash", "200.00"),
        ("upi", "500.00"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "cash", "amount": "-10"}, "amount"),
        ({"method": "cash", "amount": "0"}, "amount"),
        ({"method": "cash", "amount": "NaN"}, "amount"),
        ({"method": "cash", "amount": "Infinity"}, "amount"),
        ({"method": "cash", "amount": "1e20"}, "amount"),
        ({"method": "cash", "amount": "10.001"}, "amount"),
        ({"method": "cash", "amount": "1000.01"}, "amount"),  # more than is due
        ({"method": "upi", "amount": "100", "reference": "12345678901"}, "reference"),
        ({"method": "upi", "amount": "100"}, "reference"),
        ({"method": "card", "amount": "100"}, "reference"),
        ({"method": "cheque", "amount": "100"}, "method"),
        ({"amount": "100"}, "method"),
        (
            {"split": [{"method": "cash", "amount": "600"}, {"method": "cash", "amount": "500"}]},
            "split",
        ),
    ],
)
def test_bad_payments_are_refused_naming_the_field_and_move_nothing(
    client: Any, db: Database, ident: Any, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    invoice = bill.issued(db, ident, tenant, bill.line("1000.00"))
    refused = client.post(
        f"/api/v1/invoices/{invoice.id}/payments",
        json=body,
        headers=_api(db, ident, tenant, "frontdesk"),
    )
    assert refused.status_code == 422, refused.text
    assert any(e["field"].startswith(field) for e in refused.json()["errors"]), refused.json()
    kept = bill.stored(db, tenant, Invoice, invoice.id)
    assert (kept.status, kept.amount_paid) == ("issued", Decimal("0.00"))


def test_a_paid_or_draft_invoice_takes_no_payment(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    desk = _api(db, ident, tenant, "frontdesk")
    draft = bill.draft(db, ident, tenant)
    body = {"method": "cash", "amount": "100.00"}
    refused = client.post(f"/api/v1/invoices/{draft.id}/payments", json=body, headers=desk)
    assert refused.status_code == 409
    assert "issue it" in refused.json()["detail"]
    settled = bill.paid(db, ident, tenant)
    again = client.post(f"/api/v1/invoices/{settled.invoice_id}/payments", json=body, headers=desk)
    assert again.status_code == 409


def test_a_upi_transfer_pays_once(db: Database, ident: Any, tenant: Tenant) -> None:
    first = bill.issued(db, ident, tenant, bill.line("300.00"))
    second = bill.issued(db, ident, tenant, bill.line("300.00"))
    bill.pay(db, tenant, first.id, "300.00", "upi", UTR)
    with pytest.raises(IntegrityError):
        bill.pay(db, tenant, second.id, "300.00", "upi", UTR)


def test_two_desks_collecting_the_same_balance_at_once_take_it_once(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    invoice = bill.issued(db, ident, tenant, bill.line("400.00"))
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def collect() -> None:
        start.wait()
        try:
            bill.pay(db, tenant, invoice.id, "400.00")
            outcomes.append("paid")
        except Conflict:
            outcomes.append("409")

    threads = [threading.Thread(target=collect) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["409"] * 5 + ["paid"]
    kept = bill.stored(db, tenant, Invoice, invoice.id)
    assert (kept.amount_paid, kept.balance_due) == (Decimal("400.00"), Decimal("0.00"))


def test_a_retried_payment_with_its_key_moves_money_once(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    invoice = bill.issued(db, ident, tenant, bill.line("900.00"))
    desk = _api(db, ident, tenant, "frontdesk") | {"Idempotency-Key": "pay-once-1"}
    body = {"method": "cash", "amount": "400.00"}
    url = f"/api/v1/invoices/{invoice.id}/payments"
    first = client.post(url, json=body, headers=desk)
    again = client.post(url, json=body, headers=desk)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = client.post(url, json={**body, "amount": "100.00"}, headers=desk)
    assert other.status_code == 409  # the same key for another body
    kept = bill.stored(db, tenant, Invoice, invoice.id)
    assert kept.amount_paid == Decimal("400.00")


def test_refunds_never_exceed_what_was_paid_and_cancel_what_they_return(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    payment = bill.paid(db, ident, tenant, "1000.00")
    accounts = _api(db, ident, tenant, "accounts")
    url = f"/api/v1/payments/{payment.id}/refunds"
    part = client.post(url, json={"amount": "400.00", "reason": "ECG not done"}, headers=accounts)
    assert part.status_code == 201, part.text
    after = client.get(f"/api/v1/payments/{payment.id}", headers=accounts).json()
    assert (after["status"], after["amountRefunded"]) == ("partial", "400.00")
    too_much = client.post(url, json={"amount": "600.01", "reason": "x"}, headers=accounts)
    assert too_much.status_code == 409
    assert "600.00" in too_much.json()["detail"]
    rest = client.post(
        url, json={"amount": "600.00", "reason": "visit cancelled"}, headers=accounts
    )
    assert rest.status_code == 201
    invoice = client.get(f"/api/v1/invoices/{payment.invoice_id}", headers=accounts).json()
    assert (invoice["status"], invoice["amountRefunded"], invoice["balanceDue"]) == (
        "refunded",
        "1000.00",
        "0.00",
    )
    gone = client.get(f"/api/v1/payments/{payment.id}", headers=accounts).json()
    assert gone["status"] == "refunded"
    ledger_now = client.get(f"/api/v1/patients/{payment.patient_id}/ledger", headers=accounts)
    assert ledger_now.json()["balance"] == "0.00"
    again = client.post(url, json={"amount": "1.00", "reason": "x"}, headers=accounts)
    assert again.status_code == 409


def test_accounts_can_refund_and_the_desk_cannot(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    payment = bill.paid(db, ident, tenant)
    body = {"amount": "100.00", "reason": "overcharged"}
    url = f"/api/v1/payments/{payment.id}/refunds"
    for role in ("frontdesk", "doctor", "pharmacy"):
        assert client.post(url, json=body, headers=_api(db, ident, tenant, role)).status_code == 403
    assert bill.stored(db, tenant, Payment, payment.id).amount_refunded == 0
    assert client.post(url, json=body, headers=_api(db, ident, tenant, "admin")).status_code == 201


def test_a_refund_retried_with_its_key_gives_back_once(
    client: Any, db: Database, ident: Any, tenant: Tenant
) -> None:
    payment = bill.paid(db, ident, tenant, "500.00")
    headers = _api(db, ident, tenant, "accounts") | {"Idempotency-Key": "refund-1"}
    body = {"amount": "200.00", "reason": "double charge"}
    url = f"/api/v1/payments/{payment.id}/refunds"
    replies = [client.post(url, json=body, headers=headers) for _ in range(3)]
    assert {r.json()["id"] for r in replies} == {replies[0].json()["id"]}
    assert bill.stored(db, tenant, Payment, payment.id).amount_refunded == Decimal("200.00")


def test_another_clinics_payment_is_not_found(
    client: Any, db: Database, ident: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = bill.paid(db, ident, other_tenant)
    headers = _api(db, ident, tenant, "accounts")
    assert client.get(f"/api/v1/payments/{theirs.id}", headers=headers).status_code == 404
    refund = client.post(
        f"/api/v1/payments/{theirs.id}/refunds",
        json={"amount": "1.00", "reason": "x"},
        headers=headers,
    )
    assert refund.status_code == 404
    pay = client.post(
        f"/api/v1/invoices/{theirs.invoice_id}/payments",
        json={"method": "cash", "amount": "1.00"},
        headers=_api(db, ident, tenant, "frontdesk"),
    )
    assert pay.status_code == 404
    assert bill.stored(db, other_tenant, Payment, theirs.id).amount_refunded == 0


def test_a_captured_payment_cannot_be_rewritten_by_a_raw_statement(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    payment = bill.paid(db, ident, tenant)
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as refused, clinic_session(db, tenant.id) as session:
        unaudited(session)
        session.execute(text("UPDATE payments SET amount = 1 WHERE id = :id"), {"id": payment.id})
    assert getattr(refused.value.orig, "sqlstate", None) == "OD001"
    with pytest.raises(IntegrityError), clinic_session(db, tenant.id) as session:
        unaudited(session)
        session.execute(
            text("UPDATE payments SET amount_refunded = amount + 1 WHERE id = :id"),
            {"id": payment.id},
        )


# --------------------------------------------------------------------------- the ledger

Step = tuple[str, int]


@st.composite
def days(draw: st.DrawFn) -> list[Step]:
    """A few invoices, payments and refunds in any order (amounts in rupees)."""
    return draw(
        st.lists(
            st.tuples(st.sampled_from(["invoice", "pay", "refund"]), st.integers(1, 5000)),
            min_size=1,
            max_size=12,
        )
    )


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=days())
def test_the_ledger_balance_is_invoiced_less_credited_less_paid_plus_refunded(
    db: Database, ident: Any, steps: list[Step]
) -> None:
    tenant = make_tenant(db)
    patient = make_patient(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    invoiced = paid = refunded = credited = Decimal(0)
    open_invoices: list[Any] = []
    taken: list[Any] = []
    for kind, rupees in steps:
        amount = Decimal(rupees)
        if kind == "invoice":
            inv = bill.issued(db, ident, tenant, bill.line(f"{rupees}.00"), patient_id=patient.id)
            invoiced += inv.grand_total
            open_invoices.append(inv.id)
        elif kind == "pay" and open_invoices:
            inv = bill.stored(db, tenant, Invoice, open_invoices[0])
            amount = min(amount, inv.balance_due)
            taken.append(bill.pay(db, tenant, inv.id, str(amount)))
            paid += amount
            if amount == inv.balance_due:
                open_invoices.pop(0)
        elif kind == "refund" and taken:
            pay = bill.stored(db, tenant, Payment, taken[-1].id)
            amount = min(amount, payments.refundable(pay))
            if amount > 0:
                with transaction(db, ctx) as session:
                    row = session.get(Payment, (tenant.id, pay.id))
                    assert row is not None
                    payments.refund(session, ctx, row, amount=amount, reason="test")
                refunded += amount
                credited += amount
    with clinic_session(db, tenant.id) as session:
        assert ledger.balance(session, patient.id) == invoiced - credited - paid + refunded
        assert ledger.check(session) == []
        owed = session.scalar(
            select(func.coalesce(func.sum(Invoice.balance_due), 0)).where(
                Invoice.patient_id == patient.id, Invoice.status != "draft"
            )
        )
        assert ledger.balance(session, patient.id) == owed


def test_ledger_check_reports_a_payment_the_ledger_does_not_know(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    payment = bill.paid(db, ident, tenant, "250.00")
    with clinic_session(db, tenant.id) as session:
        assert ledger.check(session) == []
    # A ledger row written around the services (as a bug would): the check names it.
    with clinic_session(db, tenant.id) as session:
        unaudited(session)
        ledger.append(
            session,
            ctx_for(tenant.id),
            patient_id=payment.patient_id,
            kind=LedgerKind.PAYMENT,
            amount=Decimal("10.00"),
            description="stray",
            invoice_id=payment.invoice_id,
            payment_id=payment.id,
        )
    with clinic_session(db, tenant.id) as session:
        problems = ledger.check(session)
    assert any(f"payment {payment.id}" in p and "260.00" in p for p in problems), problems
    assert any(f"patient {payment.patient_id}" in p for p in problems), problems
    with clinic_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 3


def test_refunding_more_than_is_left_through_the_service_is_409(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    payment = bill.paid(db, ident, tenant, "100.00")
    ctx = ctx_for(tenant.id)
    with pytest.raises(Conflict), transaction(db, ctx) as session:
        row = session.get(Payment, (tenant.id, payment.id))
        assert row is not None
        payments.refund(session, ctx, row, amount=Decimal("100.01"), reason="x")
    with pytest.raises(InvalidInput), transaction(db, ctx) as session:
        row = session.get(Payment, (tenant.id, payment.id))
        assert row is not None
        payments.refund(session, ctx, row, amount=Decimal("10"), reason="  ")
