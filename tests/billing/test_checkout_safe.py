"""Checkout never writes on GET: opening a checkout address (from the queue, the visit, a
link, a prefetch or the back button) only reads; the draft is prepared by a form POST
with the form token, once however often it is sent, by the roles that write invoices,
and only for this clinic's visits and appointments.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.audit.models import AuditEvent
from opdesk.billing import invoices, ledger, payments
from opdesk.billing.models import Invoice, InvoiceStatus
from opdesk.clinical import catalogue
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import csrf_of, make_tenant, make_user, open_session
from tests.factories.clinical_visits import Consultation, consultation, make_service, open_visit
from tests.factories.clinics import clinic_session, ctx_for
from tests.factories.web import browser_for


def signed_in(app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str) -> TestClient:
    return browser_for(app, open_session(db, ident, make_user(db, ident, tenant, role)))


@pytest.fixture
def desk(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> TestClient:
    return signed_in(app, db, ident, tenant, "frontdesk")


def token_of(browser: TestClient) -> str:
    """The session's form token, from the home page (every page carries it)."""
    return csrf_of(browser.get("/").text)


def press(browser: TestClient, url: str, token: str | None = None) -> Any:
    """The checkout button: a form POST to ``url`` with the session's form token."""
    form = {"csrf_token": token_of(browser) if token is None else token}
    return browser.post(url, data=form, follow_redirects=False)


def footprint(db: Database, tenant: Tenant) -> dict[str, Any]:
    """What a write would change: the invoices as they are, and the audit trail's length."""
    with clinic_session(db, tenant.id) as session:
        rows = session.scalars(select(Invoice).order_by(Invoice.id)).all()
        return {
            "invoices": [
                (i.id, i.status, i.visit_id, i.line_items, i.updated_at, i.grand_total)
                for i in rows
            ],
            "audit events": session.scalar(select(func.count()).select_from(AuditEvent)),
        }


def drafts_of(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> list[Invoice]:
    with clinic_session(db, tenant.id) as session:
        return list(
            session.scalars(
                select(Invoice).where(
                    Invoice.appointment_id == appointment_id,
                    Invoice.status == InvoiceStatus.DRAFT,
                )
            )
        )


def without_charge(db: Database, c: Consultation) -> None:
    """Throw away the draft the booking left (through the service), so none exists."""
    ctx = ctx_for(c.tenant.id)
    with transaction(db, ctx) as session:
        found = invoices.draft_for_appointment(session, c.appointment.id)
        assert found is not None
        invoices.discard(session, ctx, found)


def add_ecg(db: Database, c: Consultation, visit_id: uuid.UUID, price: str = "300") -> None:
    service = make_service(db, c.tenant, code=f"ECG{price}", name="ECG", price=price)
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        catalogue.add_to_visit(session, ctx, visit_id=visit_id, service_id=service.id)


def prepare_form_of(html: str) -> list[str]:
    """The addresses the page's "Prepare the bill" form posts to."""
    return re.findall(r'<form action="([^"]+)" method="post">\s*<input type="hidden"', html)


def words(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'").split())


# --------------------------------------------------------------------------- GET reads only


def test_opening_a_visits_checkout_before_its_draft_is_prepared_writes_nothing(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    c = consultation(db, ident, tenant)
    visit = open_visit(db, c)
    add_ecg(db, c, visit.id)
    url = f"/billing/visits/{visit.id}/checkout"
    before = footprint(db, tenant)
    for _ in range(3):  # a prefetch, the link, the back button
        shown = desk.get(url, follow_redirects=False)
        assert shown.status_code == 200, shown.text
    assert footprint(db, tenant) == before
    # The booking's charge still waits unchanged, without the visit's ECG.
    (charge,) = drafts_of(db, tenant, c.appointment.id)
    assert charge.visit_id is None and [i["description"] for i in charge.line_items] == [
        line["description"] for line in charge.line_items if line["type"] == "consult"
    ]
    # One clear button that posts to this address, with what it will bring.
    text = words(shown.text)
    assert "Bring the bill up to date" in text and "Prepare the bill" in text
    assert "ECG" in text and "₹300.00" in text
    assert prepare_form_of(shown.text) == [url]
    assert 'name="csrf_token"' in shown.text


def test_opening_checkout_with_no_draft_at_all_writes_nothing(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    c = consultation(db, ident, tenant)
    without_charge(db, c)
    queue_url = f"/billing/appointments/{c.appointment.id}/checkout"
    before = footprint(db, tenant)
    shown = desk.get(queue_url, follow_redirects=False)
    assert shown.status_code == 200, shown.text
    assert prepare_form_of(shown.text) == [queue_url]
    assert "There is no draft bill for this booking yet" in words(shown.text)
    assert "Consultation" in words(shown.text)

    visit = open_visit(db, c)
    before = footprint(db, tenant)
    # With a visit the queue's address leads to the visit's checkout, which only shows.
    sent = desk.get(queue_url, follow_redirects=False)
    assert sent.headers["location"] == f"/billing/visits/{visit.id}/checkout"
    shown = desk.get(sent.headers["location"], follow_redirects=False)
    assert shown.status_code == 200
    assert "There is no draft bill for this visit yet" in words(shown.text)
    assert footprint(db, tenant) == before
    assert drafts_of(db, tenant, c.appointment.id) == []


def test_a_draft_in_step_opens_in_the_editor_and_a_changed_visit_asks_again(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    c = consultation(db, ident, tenant)
    visit = open_visit(db, c)
    url = f"/billing/visits/{visit.id}/checkout"
    assert press(desk, url).headers["location"] == url
    before = footprint(db, tenant)
    editor = desk.get(url)
    assert 'action="/billing/invoices/' in editor.text and "Add a line" in editor.text
    assert footprint(db, tenant) == before

    # The doctor adds an ECG: checkout asks to bring the bill up to date, writing nothing.
    add_ecg(db, c, visit.id)
    before = footprint(db, tenant)
    asks = desk.get(url)
    assert "Bring the bill up to date" in words(asks.text)
    assert footprint(db, tenant) == before
    assert press(desk, url).status_code == 303
    (draft,) = drafts_of(db, tenant, c.appointment.id)
    assert [i["description"] for i in draft.line_items][-1] == "ECG"
    assert "Add a line" in desk.get(url).text


# --------------------------------------------------------------------------- POST prepares once


def test_pressing_checkout_twice_from_the_queue_makes_one_draft(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    c = consultation(db, ident, tenant)
    without_charge(db, c)
    url = f"/billing/appointments/{c.appointment.id}/checkout"
    first = press(desk, url)
    assert first.status_code == 303 and first.headers["location"].endswith("/edit")
    (made,) = drafts_of(db, tenant, c.appointment.id)
    assert first.headers["location"] == f"/billing/invoices/{made.id}/edit"
    before = footprint(db, tenant)
    second = press(desk, url)
    assert second.headers["location"] == first.headers["location"]
    assert footprint(db, tenant) == before  # nothing written the second time


def test_preparing_a_visits_bill_twice_makes_one_draft_and_writes_once(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    c = consultation(db, ident, tenant)
    visit = open_visit(db, c)
    add_ecg(db, c, visit.id)
    url = f"/billing/visits/{visit.id}/checkout"
    queue_url = f"/billing/appointments/{c.appointment.id}/checkout"
    assert press(desk, queue_url).headers["location"] == url  # the queue's button
    (draft,) = drafts_of(db, tenant, c.appointment.id)
    assert draft.visit_id == visit.id
    assert [i["description"] for i in draft.line_items][-1] == "ECG"
    before = footprint(db, tenant)
    assert press(desk, url).headers["location"] == url  # the prepare page's button
    assert press(desk, queue_url).headers["location"] == url
    assert footprint(db, tenant) == before


def test_checkout_pressed_at_once_on_two_desks_makes_one_draft(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    c = consultation(db, ident, tenant)
    without_charge(db, c)
    url = f"/billing/appointments/{c.appointment.id}/checkout"
    desks = [signed_in(app, db, ident, tenant, "frontdesk") for _ in range(4)]
    tokens = [token_of(d) for d in desks]
    start = threading.Barrier(len(desks))
    answers: list[int] = []

    def go(browser: TestClient, token: str) -> None:
        start.wait()
        answers.append(press(browser, url, token).status_code)

    threads = [threading.Thread(target=go, args=pair) for pair in zip(desks, tokens, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [303] * len(desks)
    assert len(drafts_of(db, tenant, c.appointment.id)) == 1


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize("kind", ["visit", "appointment"])
def test_preparing_without_the_form_token_is_refused_and_writes_nothing(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient, kind: str
) -> None:
    c = consultation(db, ident, tenant)
    without_charge(db, c)
    visit = open_visit(db, c)
    url = (
        f"/billing/visits/{visit.id}/checkout"
        if kind == "visit"
        else f"/billing/appointments/{c.appointment.id}/checkout"
    )
    before = footprint(db, tenant)
    missing = desk.post(url, data={}, follow_redirects=False)
    assert missing.status_code == 403
    assert "the form expired or came from elsewhere" in words(missing.text).lower()
    forged = press(desk, url, token="0" * 40)
    assert forged.status_code == 403
    assert footprint(db, tenant) == before


@pytest.mark.parametrize("role", ["doctor", "pharmacy", "admin"])
def test_a_role_that_does_not_write_invoices_cannot_prepare_or_open_checkout(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str
) -> None:
    c = consultation(db, ident, tenant)
    without_charge(db, c)
    visit = open_visit(db, c)
    browser = signed_in(app, db, ident, tenant, role)
    token = token_of(browser)
    before = footprint(db, tenant)
    for url in (
        f"/billing/visits/{visit.id}/checkout",
        f"/billing/appointments/{c.appointment.id}/checkout",
    ):
        refused = press(browser, url, token)
        assert refused.status_code == 403, (role, url, refused.status_code)
        assert "you don't have access to this page" in words(refused.text).lower()
        assert browser.get(url, follow_redirects=False).status_code == 403
    assert footprint(db, tenant) == before


def test_another_clinics_visit_or_appointment_is_not_found_and_unchanged(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    elsewhere = make_tenant(db, "Other Clinic")
    theirs = consultation(db, ident, elsewhere)
    their_visit = open_visit(db, theirs)
    token = token_of(desk)
    before = footprint(db, elsewhere)
    for url in (
        f"/billing/visits/{their_visit.id}/checkout",
        f"/billing/appointments/{theirs.appointment.id}/checkout",
    ):
        assert desk.get(url, follow_redirects=False).status_code == 404
        assert press(desk, url, token).status_code == 404
    assert footprint(db, elsewhere) == before


# --------------------------------------------------------------------------- paid ahead


def test_a_visit_paid_for_ahead_bills_only_what_the_visit_added(
    db: Database, ident: Any, tenant: Tenant, desk: TestClient
) -> None:
    c = consultation(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:  # the booking's charge, paid before the visit
        charge = invoices.draft_for_appointment(session, c.appointment.id)
        assert charge is not None
        invoices.issue(session, ctx, charge)
        payments.collect(session, ctx, charge, parts=[payments.Part("cash", charge.grand_total)])
    visit = open_visit(db, c)
    url = f"/billing/visits/{visit.id}/checkout"
    # Nothing beyond the consultation: the visit is billed on the charge already.
    nothing_more = desk.get(url)
    assert nothing_more.url.path == f"/billing/invoices/{charge.id}"
    assert f"This visit is billed on invoice {charge.number}" in words(nothing_more.text)

    add_ecg(db, c, visit.id)
    asking = desk.get(url)
    assert "ECG" in words(asking.text)
    made = desk.post(url, data={"csrf_token": csrf_of(asking.text)})
    assert made.status_code == 200, made.text
    with clinic_session(db, tenant.id) as session:
        second = session.scalars(
            select(Invoice).where(Invoice.visit_id == visit.id, Invoice.status == "draft")
        ).one()
        assert [i["type"] for i in second.line_items] == ["service"]  # no second consult
        assert second.appointment_id is None
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        draft = session.get(Invoice, (tenant.id, second.id))
        assert draft is not None
        invoices.issue(session, ctx, draft)
    assert desk.get(url).url.path == f"/billing/invoices/{second.id}"  # now billed there
    with clinic_session(db, tenant.id) as session:
        assert ledger.check(session) == []
