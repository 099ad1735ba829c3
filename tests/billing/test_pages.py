"""Billing's pages: checkout from the queue and the visit (a line by hand, a discount with
its reason, issue), collecting cash, card, UPI and a split, refunds with confirmation,
the accounts day, a patient's ledger, the billing settings and the portal's bills; each
as the roles that may and may not use it, and another clinic's or family's invoice 404.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.billing import settings as billing_settings
from opdesk.billing.models import GatewayEvent, Invoice, Payment, PaymentRefund
from opdesk.clinical import catalogue
from opdesk.db import Database
from opdesk.security.permissions import ROLES, allowed
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import csrf_of, make_tenant, make_user, open_session
from tests.factories.billing import (
    issued,
    kept_delivery_id,
    line,
    pay,
    pay_split,
    refund,
    stored,
    walk_in_today,
)
from tests.factories.clinical_visits import consultation, make_service, open_visit
from tests.factories.clinics import clinic_session
from tests.factories.people import make_patient
from tests.factories.web import browser_for, portal_user_of


def signed_in(app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str) -> TestClient:
    return browser_for(app, open_session(db, ident, make_user(db, ident, tenant, role)))


def post(browser: TestClient, page: str, action: str, **form: str) -> Any:
    """Open ``page`` (for its form token) and send ``form`` to ``action``, as a browser."""
    token = csrf_of(browser.get(page).text)
    return browser.post(action, data={**form, "csrf_token": token}, follow_redirects=False)


def text_of(html: str) -> str:
    """The page's words, without tags, spaces folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'").split())


def count(db: Database, tenant: Tenant, model: type[Any]) -> int:
    with clinic_session(db, tenant.id) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def desk(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> TestClient:
    return signed_in(app, db, ident, tenant, "frontdesk")


def invoice_of(db: Database, ident: Any, tenant: Tenant, amount: str = "500.00") -> Invoice:
    return issued(db, ident, tenant, line(amount, description="Dressing"))


# --------------------------------------------------------------------------- checkout


def test_checkout_from_the_queue_adds_a_line_a_discount_with_reason_then_issues(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    visit = consultation(db, ident, tenant)
    opened = open_visit(db, visit)
    service = make_service(db, tenant, code="ECG", name="ECG", price="300")
    ctx = visit.ctx()
    with transaction(db, ctx) as session:
        catalogue.add_to_visit(session, ctx, visit_id=opened.id, service_id=service.id)

    # The queue's Checkout (a POST) prepares the visit's draft and opens the visit's
    # checkout: the booking's fee and the ECG.
    queue = f"/billing/appointments/{visit.appointment.id}/checkout"
    sent = post(desk, "/queue", queue)
    assert sent.status_code == 303
    page = f"/billing/visits/{opened.id}/checkout"
    assert sent.headers["location"] == page
    # A link to the queue's address (a GET) leads to the same page, writing nothing.
    assert desk.get(queue, follow_redirects=False).headers["location"] == page
    shown = desk.get(page)
    assert shown.status_code == 200, shown.text
    words = text_of(shown.text)
    assert "Consultation" in words and "ECG" in words
    assert "From the visit" in words  # the visit's lines cannot be removed here
    (draft_id,) = re.findall(r'action="/billing/invoices/([0-9a-f-]{36})/lines"', shown.text)

    added = post(
        desk,
        page,
        f"/billing/invoices/{draft_id}/lines",
        description="Cough syrup",
        type="med",
        quantity="2",
        unitPrice="60",
        taxRate="12",
        sacHsn="3004",
    )
    assert (added.status_code, added.headers["location"]) == (303, page)
    invoice = stored(db, tenant, Invoice, uuid.UUID(draft_id))
    assert [i["description"] for i in invoice.line_items][-1] == "Cough syrup"

    # A discount without its reason is refused, naming the field as labelled.
    refused = post(desk, page, f"/billing/invoices/{draft_id}/discounts", **{"discount.0": "100"})
    assert refused.status_code == 422
    assert "Reason for the discount: is required when a line has a discount" in text_of(
        refused.text
    )
    assert stored(db, tenant, Invoice, invoice.id).discount_total == 0
    saved = post(
        desk,
        page,
        f"/billing/invoices/{draft_id}/discounts",
        **{"discount.0": "100", "discountReason": "Senior citizen"},
    )
    assert saved.status_code == 303
    # Coming back to checkout keeps the discount (the visit did not change).
    assert "Senior citizen" in desk.get(page).text
    invoice = stored(db, tenant, Invoice, invoice.id)
    assert invoice.discount_total == Decimal("100.00")

    # The confirmation says what issuing does.
    words = text_of(desk.get(page).text)
    assert "gives this invoice the next invoice number" in words
    assert "It cannot be changed after this — corrections are refunds." in words
    done = post(desk, page, f"/billing/invoices/{draft_id}/issue")
    assert done.status_code == 303
    assert done.headers["location"] == f"/billing/invoices/{draft_id}"
    invoice = stored(db, tenant, Invoice, invoice.id)
    assert invoice.status == "issued" and invoice.number
    assert f"Invoice {invoice.number} issued" in desk.get(done.headers["location"]).text
    # Checkout again opens the issued invoice, and the queue's link does too.
    again = desk.get(page, follow_redirects=False)
    assert again.headers["location"] == f"/billing/invoices/{draft_id}"


def test_a_visit_line_cannot_be_removed_but_a_line_by_hand_can(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    visit = consultation(db, ident, tenant)
    opened = open_visit(db, visit)
    page = f"/billing/visits/{opened.id}/checkout"
    assert post(desk, page, page).status_code == 303  # "Prepare the bill"
    shown = desk.get(page).text
    (draft_id,) = re.findall(r'action="/billing/invoices/([0-9a-f-]{36})/lines"', shown)
    post(desk, page, f"/billing/invoices/{draft_id}/lines", description="Dressing", unitPrice="80")
    visit_line = post(desk, page, f"/billing/invoices/{draft_id}/lines/remove", line="0")
    assert visit_line.status_code == 409
    assert "this line comes from the visit" in visit_line.text
    hand_line = post(desk, page, f"/billing/invoices/{draft_id}/lines/remove", line="1")
    assert hand_line.status_code == 303
    assert len(stored(db, tenant, Invoice, uuid.UUID(draft_id)).line_items) == 1


def test_a_line_with_a_bad_price_is_refused_by_its_label_and_nothing_changes(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    patient = make_patient(db, ident, tenant)
    made = post(
        desk,
        f"/billing/patients/{patient.id}/ledger",
        "/billing/invoices",
        patient_id=str(patient.id),
    )
    assert made.status_code == 303
    editor = made.headers["location"]
    draft_id = editor.split("/")[3]
    refused = post(
        desk, editor, f"/billing/invoices/{draft_id}/lines", description="X-ray", unitPrice="-5"
    )
    assert refused.status_code == 422
    assert "Price for one (₹): cannot be negative" in text_of(refused.text)
    assert stored(db, tenant, Invoice, uuid.UUID(draft_id)).line_items == []
    # An empty draft cannot be issued: the page says to add a line.
    empty = post(desk, editor, f"/billing/invoices/{draft_id}/issue")
    assert empty.status_code == 422
    assert "add at least one line before issuing" in empty.text


def test_discarding_a_draft_removes_it(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    patient = make_patient(db, ident, tenant)
    made = post(desk, "/billing/invoices", "/billing/invoices", patient_id=str(patient.id))
    draft_id = made.headers["location"].split("/")[3]
    page = made.headers["location"]
    assert "Nothing was charged and it has no number" in desk.get(page).text
    gone = post(desk, page, f"/billing/invoices/{draft_id}/discard")
    assert gone.status_code == 303
    assert stored(db, tenant, Invoice, uuid.UUID(draft_id)) is None


# --------------------------------------------------------------------------- collecting


def test_cash_card_and_upi_through_the_page(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    invoice = invoice_of(db, ident, tenant, "900.00")
    page = f"/billing/invoices/{invoice.id}"
    action = f"{page}/payments"
    shown = desk.get(page).text
    assert 'name="amount" inputmode="decimal" value="900.00"' in shown  # the balance
    cash = post(desk, page, action, method="cash", amount="300")
    assert cash.status_code == 303
    assert "₹300.00 received. ₹600.00 still due." in desk.get(page).text
    card = post(
        desk, page + "?method=card", action, method="card", amount="300", reference="AP1234"
    )
    assert card.status_code == 303
    upi = post(
        desk, page + "?method=upi", action, method="upi", amount="300", reference="412345678901"
    )
    assert upi.status_code == 303
    assert "Paid in full." in desk.get(page).text
    with clinic_session(db, tenant.id) as session:
        taken = session.scalars(select(Payment).where(Payment.invoice_id == invoice.id)).all()
        assert sorted((p.method, p.reference) for p in taken) == [
            ("card", "AP1234"),
            ("cash", None),
            ("upi", "412345678901"),
        ]
    assert stored(db, tenant, Invoice, invoice.id).status == "paid"


def test_a_split_payment_through_the_page(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    invoice = invoice_of(db, ident, tenant, "700.00")
    page = f"/billing/invoices/{invoice.id}?method=split"
    form = {
        "method": "split",
        "split[0].method": "cash",
        "split[0].amount": "200",
        "split[1].method": "upi",
        "split[1].amount": "500",
        "split[1].reference": "55555555",  # 8 digits: refused below
        "split[2].amount": "",
    }
    refused = post(desk, page, f"/billing/invoices/{invoice.id}/payments", **form)
    assert refused.status_code == 422
    assert "Part 2: approval code or UTR: enter the UPI transfer's UTR" in text_of(refused.text)
    assert count(db, tenant, Payment) == 0
    form["split[1].reference"] = "555555555555"
    done = post(desk, page, f"/billing/invoices/{invoice.id}/payments", **form)
    assert done.status_code == 303
    with clinic_session(db, tenant.id) as session:
        payment = session.scalars(select(Payment)).one()
        assert payment.amount == Decimal("700.00")
        assert [(p["method"], p["amount"]) for p in payment.split or []] == [
            ("cash", "200.00"),
            ("upi", "500.00"),
        ]


def test_a_utr_of_11_digits_is_refused_naming_the_field_as_labelled(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    invoice = invoice_of(db, ident, tenant)
    page = f"/billing/invoices/{invoice.id}?method=upi"
    refused = post(
        desk,
        page,
        f"/billing/invoices/{invoice.id}/payments",
        method="upi",
        amount="500",
        reference="12345678901",
    )
    assert refused.status_code == 422
    words = text_of(refused.text)
    assert "UTR (12 digits): enter the UPI transfer's UTR: the 12 digits" in words
    assert 'value="12345678901"' in refused.text  # what was typed stays
    assert count(db, tenant, Payment) == 0
    assert stored(db, tenant, Invoice, invoice.id).balance_due == Decimal("500.00")


def test_paying_a_paid_invoice_answers_409_on_the_page(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    invoice = invoice_of(db, ident, tenant)
    page = f"/billing/invoices/{invoice.id}"
    token = csrf_of(desk.get(page).text)  # the form as drawn while money was still due
    pay(db, tenant, invoice.id, "500.00")
    again = desk.post(
        f"{page}/payments",
        data={"method": "cash", "amount": "500", "csrf_token": token},
        follow_redirects=False,
    )
    assert again.status_code == 409
    assert f"invoice {invoice.number} is paid; nothing is due on it" in again.text
    assert count(db, tenant, Payment) == 1
    assert "Collect payment" not in desk.get(page).text


def test_the_upi_tab_shows_the_qr_for_the_exact_balance_once_the_clinic_has_a_upi_id(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    invoice = invoice_of(db, ident, tenant, "1234.50")
    page = f"/billing/invoices/{invoice.id}?method=upi"
    missing = text_of(desk.get(page).text)
    assert "No UPI id is set up for this clinic" in missing
    assert "Ask an admin to add it under Admin → Billing and payments" in missing
    admin = signed_in(app, db, ident, tenant, "admin")
    assert "Collect payment" not in admin.get(page).text  # admins do not take money
    saved = post(
        admin,
        "/admin/billing",
        "/admin/billing",
        upiVpa="sunrise@okaxis",
        upiPayeeName="Sunrise Clinic",
        prepayMinutes="15",
        consultSac="999312",
    )
    assert saved.status_code == 303
    shown = desk.get(page).text
    assert "<svg" in shown and 'aria-label="UPI QR code for ₹1,234.50 to Sunrise Clinic"' in shown
    assert "sunrise@okaxis" in shown


# --------------------------------------------------------------------------- refunds


def test_a_refund_through_the_page_confirms_the_amount_and_the_patient(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    invoice = issued(
        db,
        ident,
        tenant,
        line("500.00"),
        patient_id=make_patient(db, ident, tenant, name={"first": "सुनीता", "last": "शर्मा"}).id,
    )
    payment = pay(db, tenant, invoice.id, "500.00")
    accounts = signed_in(app, db, ident, tenant, "accounts")
    assert (
        f"/billing/payments/{payment.id}/refund"
        in accounts.get(f"/billing/invoices/{invoice.id}").text
    )
    review = accounts.get(
        f"/billing/payments/{payment.id}/refund",
        params={"review": "1", "amount": "200", "reason": "Test not done", "method": "cash"},
    )
    assert review.status_code == 200
    assert "Refund ₹200.00 to सुनीता शर्मा?" in text_of(review.text)
    done = accounts.post(
        f"/billing/payments/{payment.id}/refunds",
        data={
            "amount": "200",
            "reason": "Test not done",
            "method": "cash",
            "csrf_token": csrf_of(review.text),
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "₹200.00 refunded (cash)." in accounts.get(done.headers["location"]).text
    assert stored(db, tenant, Invoice, invoice.id).amount_refunded == Decimal("200.00")

    # More than is left: 409 on the page, nothing given back.
    too_much = accounts.post(
        f"/billing/payments/{payment.id}/refunds",
        data={
            "amount": "400",
            "reason": "x",
            "method": "cash",
            "csrf_token": csrf_of(done.text or review.text),
        },
        follow_redirects=False,
    )
    assert too_much.status_code == 409
    assert "only ₹300.00 of this payment can still be refunded" in too_much.text
    assert count(db, tenant, PaymentRefund) == 1
    # The review step refuses it before the confirmation, naming the field.
    early = accounts.get(
        f"/billing/payments/{payment.id}/refund",
        params={"review": "1", "amount": "400", "reason": "", "method": "cash"},
    )
    assert early.status_code == 422
    words = text_of(early.text)
    assert "Amount to refund (₹): only ₹300.00 of this payment is left to refund" in words
    assert "Reason: say why the money is given back" in words


def test_the_desk_sees_no_refund_and_cannot_refund(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    invoice = invoice_of(db, ident, tenant)
    payment = pay(db, tenant, invoice.id, "500.00")
    assert "/refund" not in desk.get(f"/billing/invoices/{invoice.id}").text
    assert desk.get(f"/billing/payments/{payment.id}/refund").status_code == 403


# --------------------------------------------------------------------------- accounts day


def test_the_accounts_day_counts_money_by_method_and_the_cash_to_hand_over(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    first = invoice_of(db, ident, tenant, "1000.00")
    pay(db, tenant, first.id, "300.00")  # cash
    pay_split(db, tenant, first.id, ("cash", "100", None), ("upi", "200", "999999999999"))
    second = invoice_of(db, ident, tenant, "250.00")
    card = pay(db, tenant, second.id, "250.00", "card", "APPR99")
    refund(db, tenant, card.id, "50", "Overcharged", "cash")
    accounts = signed_in(app, db, ident, tenant, "accounts")
    shown = accounts.get("/billing/day")
    assert shown.status_code == 200
    words = text_of(shown.text)
    assert "Cash 2 payments ₹400.00" in words  # 300 and the split's 100
    assert "UPI 1 payment ₹200.00" in words
    assert "Card 1 payment ₹250.00" in words
    assert "Cash 1 refund ₹50.00" in words
    assert "Cash to hand over ₹350.00" in words
    # Outstanding: the first invoice, part paid (₹400 due); the second is paid.
    owed = words.split("Outstanding balances")[1]
    assert f"{first.number} " in owed and "₹400.00" in owed
    assert f"{second.number} " not in owed
    # Another day shows none of it; a bad date is named.
    assert "Nothing received." in accounts.get("/billing/day?date=2020-01-01").text
    bad = accounts.get("/billing/day?date=yesterday")
    assert bad.status_code == 422 and "Day: enter a date" in text_of(bad.text)


# --------------------------------------------------------------------------- ledger


def test_the_ledger_runs_the_balance_and_says_what_is_owed(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    invoice = invoice_of(db, ident, tenant, "800.00")
    pay(db, tenant, invoice.id, "300.00")
    page = f"/billing/patients/{invoice.patient_id}/ledger"
    words = text_of(desk.get(page).text)
    assert "owes ₹500.00" in words
    assert re.search(
        r"Invoice · " + re.escape(invoice.number or "") + r".*₹800\.00 ₹800\.00", words
    )
    assert re.search(r"Payment · .*₹300\.00 ₹500\.00", words)
    # The patient's profile links here.
    assert page in desk.get(f"/patients/{invoice.patient_id}").text
    pay(db, tenant, invoice.id, "500.00")
    assert "settled" in text_of(desk.get(page).text)


# --------------------------------------------------------------------------- settings


def test_settings_never_show_the_secrets_and_a_blank_secret_keeps_the_saved_one(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    admin = signed_in(app, db, ident, tenant, "admin")
    form = {
        "upiVpa": "clinic@okicici",
        "upiPayeeName": "Clinic",
        "razorpayKeyId": "rzp_test_abcdef123",
        "razorpayKeySecret": "s3cret-key-value",
        "razorpayWebhookSecret": "hook-secret-value",
        "prepayMinutes": "20",
        "consultSac": "999312",
    }
    assert post(admin, "/admin/billing", "/admin/billing", **form).status_code == 303
    shown = admin.get("/admin/billing").text
    assert "s3cret-key-value" not in shown and "hook-secret-value" not in shown
    assert "Saved — leave blank to keep it" in shown
    kept = {**form, "razorpayKeySecret": "", "razorpayWebhookSecret": "", "prepayMinutes": "30"}
    assert post(admin, "/admin/billing", "/admin/billing", **kept).status_code == 303
    with clinic_session(db, tenant.id) as session:
        saved = billing_settings.of(session, cipher, tenant.id)
    assert saved.razorpay is not None and saved.razorpay.key_secret == "s3cret-key-value"
    assert saved.prepay_minutes == 30
    bad = post(admin, "/admin/billing", "/admin/billing", **{**kept, "upiVpa": "not a vpa"})
    assert bad.status_code == 422
    assert "Clinic's UPI id: must be a UPI id such as clinic@okaxis" in text_of(bad.text)


# --------------------------------------------------------------------------- portal


def test_the_portal_shows_the_familys_issued_invoices_only(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    mine = invoice_of(db, ident, tenant, "450.00")
    theirs = invoice_of(db, ident, tenant, "999.00")
    user = portal_user_of(db, tenant, mine.patient_id)
    patient = browser_for(app, open_session(db, ident, user))
    listing = text_of(patient.get("/me/invoices").text)
    assert f"{mine.number} " in listing and "₹450.00 to pay" in listing
    assert (theirs.number or "") not in listing
    own = patient.get(f"/me/invoices/{mine.id}")
    assert own.status_code == 200 and "Pay at the clinic's desk" in own.text
    assert patient.get(f"/me/invoices/{theirs.id}").status_code == 404


# --------------------------------------------------------------------------- who may


def test_each_page_is_open_to_the_roles_the_table_gives_it_and_no_other(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    invoice = invoice_of(db, ident, tenant)
    payment = pay(db, tenant, invoice.id, "200.00")
    pages = {
        "/billing/invoices": "invoices:read",
        f"/billing/invoices/{invoice.id}": "invoices:read",
        f"/billing/patients/{invoice.patient_id}/ledger": "invoices:read",
        f"/billing/payments/{payment.id}/refund": "payments:refund",
        "/billing/day": "reports:read",
        "/admin/billing": "clinic:manage",
    }
    wrong = []
    for role in ROLES:
        if role == "patient":
            continue
        browser = signed_in(app, db, ident, tenant, role)
        for path, action in pages.items():
            status = browser.get(path).status_code
            if status != (200 if allowed(role, action) else 403):
                wrong.append(f"{role} {path}: {status}")
    assert wrong == []


def test_another_clinics_invoice_and_payment_are_not_found(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    elsewhere = make_tenant(db, "Other Clinic")
    theirs = invoice_of(db, ident, elsewhere)
    their_payment = pay(db, elsewhere, theirs.id, "100.00")
    accounts = signed_in(app, db, ident, tenant, "accounts")
    assert accounts.get(f"/billing/invoices/{theirs.id}").status_code == 404
    assert accounts.get(f"/billing/payments/{their_payment.id}/refund").status_code == 404
    token = csrf_of(accounts.get("/billing/invoices").text)
    paid = accounts.post(
        f"/billing/invoices/{theirs.id}/payments",
        data={"method": "cash", "amount": "10", "csrf_token": token},
        follow_redirects=False,
    )
    assert paid.status_code == 404
    assert stored(db, elsewhere, Invoice, theirs.id).amount_paid == Decimal("100.00")


def test_the_queue_offers_checkout_for_a_checked_in_patient(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    visit = consultation(db, ident, tenant)
    walked = walk_in_today(db, ident, tenant, visit.doctor.id, visit.patient.id)
    board = desk.get("/queue").text
    assert f"/billing/appointments/{walked}/checkout" in board
    # No visit yet: the booking's charge (made now if there is none) opens for checkout.
    sent = post(desk, "/queue", f"/billing/appointments/{walked}/checkout")
    assert sent.status_code == 303 and sent.headers["location"].endswith("/edit")
    assert "Consultation" in desk.get(sent.headers["location"]).text


def test_money_razorpay_could_not_apply_is_listed_until_someone_says_what_they_did(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    kept = kept_delivery_id(db, ident, tenant)
    accounts = signed_in(app, db, ident, tenant, "accounts")
    listed = accounts.get("/billing/gateway-events")
    assert listed.status_code == 200
    assert f"/billing/gateway-events/{kept}/reviewed" in listed.text
    assert "₹100.00" in listed.text and "Payment received" in listed.text
    assert "none found" in listed.text
    assert desk.get("/billing/gateway-events").status_code == 403  # the desk refunds nothing
    url = f"/billing/gateway-events/{kept}/reviewed"
    blank = accounts.post(url, data={"note": "  ", "csrf_token": csrf_of(listed.text)})
    assert "say what was done about it" in blank.text
    done = accounts.post(
        url, data={"note": "refunded in Razorpay", "csrf_token": csrf_of(listed.text)}
    )
    assert "Marked as dealt with." in done.text and url not in done.text
    again = accounts.post(url, data={"note": "again", "csrf_token": csrf_of(done.text)})
    assert "not waiting for review" in again.text
    with clinic_session(db, tenant.id) as session:
        row = session.get(GatewayEvent, (tenant.id, kept))
        assert row is not None and row.reviewed_at is not None and row.reviewed_by is not None
