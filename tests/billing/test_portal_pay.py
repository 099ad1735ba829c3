"""A patient pays a bill online from the portal (issue 13, item 9): one link per bill
however often the button is pressed, the link's button once Razorpay made it, the bill
settled by the webhook; a clinic without Razorpay sends the patient to the desk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.billing.models import Invoice, Payment
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from tests.factories import billing as bill
from tests.factories import (
    browser_for,
    clinic_session,
    csrf_of,
    make_tenant,
    patients,
    portal_login,
)
from tests.fakes.razorpay_server import RazorpayServer


def _clinic(db: Database, ident: Any, *, razorpay: bool) -> Tenant:
    tenant = make_tenant(db, "Portal Pay Clinic")
    return bill.with_razorpay(db, ident.cipher, tenant) if razorpay else tenant


@pytest.fixture
def browsers(gateway_app: FastAPI, db: Database, ident: Any) -> Iterator[Any]:
    opened: list[TestClient] = []

    def of(tenant: Tenant, patient: Any) -> TestClient:
        token = portal_login(db, ident, tenant, patient)["Authorization"].removeprefix("Bearer ")
        opened.append(browser_for(gateway_app, token))
        return opened[-1]

    yield of
    for browser in opened:
        browser.close()


def _links(db: Database, tenant: Tenant, invoice: Invoice) -> list[Payment]:
    with clinic_session(db, tenant.id) as session:
        return list(
            session.scalars(
                select(Payment).where(Payment.invoice_id == invoice.id, Payment.method == "link")
            )
        )


def test_a_patient_pays_a_bill_online_with_one_link_however_often_they_press(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer, browsers: Any
) -> None:
    tenant = _clinic(db, ident, razorpay=True)
    (patient,) = patients(db, ident, tenant, 1)
    invoice = bill.issued(db, ident, tenant, bill.line("640.00"), patient_id=patient.id)
    browser = browsers(tenant, patient)
    url = f"/me/invoices/{invoice.id}"
    shown = browser.get(url)
    assert "Pay ₹640.00 online" in shown.text and "<form" in shown.text
    for _ in range(2):  # a double tap
        pressed = browser.post(f"{url}/pay", data={"csrf_token": csrf_of(shown.text)})
        assert pressed.status_code == 200
    (link,) = _links(db, tenant, invoice)
    assert link.link_url is not None
    assert re.search(rf'<a href="{re.escape(link.link_url)}" role="button"', pressed.text)
    outcomes = []
    for hook in rzp.pay_link(link.gateway_link_id or ""):
        answer = gateway_client.post(
            f"/api/v1/billing/webhooks/razorpay/{tenant.slug}",
            content=hook.body,
            headers=hook.headers,
        )
        outcomes.append(answer.json()["outcome"])
    assert outcomes == ["applied", "no-change"]
    settled = browser.get(url)
    assert "to pay." not in settled.text and "Pay ₹" not in settled.text
    assert bill.stored(db, tenant, Invoice, invoice.id).balance_due == Decimal("0.00")


def test_without_razorpay_the_bill_says_pay_at_the_desk_and_makes_no_link(
    gateway_client: TestClient, db: Database, ident: Any, browsers: Any
) -> None:
    tenant = _clinic(db, ident, razorpay=False)
    (patient,) = patients(db, ident, tenant, 1)
    invoice = bill.issued(db, ident, tenant, bill.line("300.00"), patient_id=patient.id)
    browser = browsers(tenant, patient)
    shown = browser.get(f"/me/invoices/{invoice.id}")
    assert "Pay at the clinic's desk" in shown.text and "online" not in shown.text
    refused = browser.post(
        f"/me/invoices/{invoice.id}/pay", data={"csrf_token": csrf_of(shown.text)}
    )
    assert "Razorpay" in refused.text  # the refusal, shown on the bill's page
    assert _links(db, tenant, invoice) == []


def test_another_familys_bill_cannot_be_paid_here(
    gateway_client: TestClient, db: Database, ident: Any, browsers: Any
) -> None:
    tenant = _clinic(db, ident, razorpay=True)
    mine, theirs = patients(db, ident, tenant, 2)
    invoice = bill.issued(db, ident, tenant, bill.line("300.00"), patient_id=theirs.id)
    browser = browsers(tenant, mine)
    page = browser.get("/me/invoices")
    assert browser.get(f"/me/invoices/{invoice.id}").status_code == 404
    tried = browser.post(f"/me/invoices/{invoice.id}/pay", data={"csrf_token": csrf_of(page.text)})
    assert tried.status_code == 404
    assert _links(db, tenant, invoice) == []
