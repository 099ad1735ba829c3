"""A patient paying ahead for an online booking: the appointment says it waits for payment,
the pay page gives the amount, the time to pay by and one button, at both widths, and it
turns to "confirmed" by itself once the money arrives (here: paid at the desk).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from opdesk.billing import gateway, payments, prepay
from opdesk.billing.models import Invoice
from opdesk.billing.razorpay_client import PaymentLink
from opdesk.db import Database
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, patient_sign_in, shot
from tests.factories import (
    book,
    clinic_with_slots,
    ctx_for,
    hold,
    make_patient,
    unique_mobile,
)
from tests.factories.billing import with_razorpay

LINK = "https://rzp.io/rzp/opdesk-test-link"


def _waiting_booking(db: Database, ident: Any, cipher: Any, phone: str) -> tuple[Any, Any]:
    """A prepaying clinic and a booking of a Hindi-named patient that waits for its link's
    payment (the link recorded as Razorpay would answer it).
    """
    tenant, _doctor, (slot,) = clinic_with_slots(db, ident, 1)
    with_razorpay(db, cipher, tenant, prepay_online=True, prepay_minutes=20)
    ctx = ctx_for(tenant.id)
    patient = make_patient(db, ident, tenant, name={"first": "सुनीता", "last": "देशपांडे"}, phone=phone)
    held = hold(db, tenant, slot)
    appointment = book(db, tenant, slot, patient, hold_token=held.token, online=True)
    assert appointment.status == "requested"
    with transaction(db, ctx) as session:
        opened = prepay.open_payment(session, ctx, cipher, appointment.id)
        link = PaymentLink("plink_Test0001", LINK, "created", opened.amount, opened.payment_id.hex)
        gateway.record_link(session, ctx, opened.payment_id, link)
    return tenant, appointment


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_pay_page_asks_once_and_confirms_by_itself_when_paid(
    browser: Any, live_server: str, db: Database, ident: Any, cipher: Any, width: str
) -> None:
    phone = unique_mobile()
    tenant, appointment = _waiting_booking(db, ident, cipher, phone)
    page, problems = open_page(browser, width)
    patient_sign_in(page, live_server, db, cipher, tenant, phone)

    page.goto(f"{live_server}/me/appointments")
    card = page.locator("article.appointment-card")
    assert "Waiting for payment" in card.inner_text()
    assert card.get_by_text("Change time").count() == 0  # pay first
    shot(page, f"prepay-appointments-{width}")
    card.get_by_role("button", name="Pay now").click()
    page.wait_for_url(f"**/me/appointments/{appointment.id}/pay")
    pay = page.get_by_role("button", name="Pay ₹500.00 now")
    assert pay.get_attribute("href") == LINK
    assert "Please pay by" in page.inner_text("#pay-state")
    shot(page, f"prepay-pay-{width}")

    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:  # the desk takes the fee in cash meanwhile
        invoice = prepay.charge_of(session, appointment.id)
        assert isinstance(invoice, Invoice)
        payments.collect(session, ctx, invoice, parts=[payments.Part("cash", Decimal("500.00"))])
    page.get_by_text("Your appointment is confirmed").wait_for(timeout=10_000)
    shot(page, f"prepay-paid-{width}")
    assert problems == []


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_bill_shows_its_online_payment_button(
    browser: Any, live_server: str, db: Database, ident: Any, cipher: Any, width: str
) -> None:
    phone = unique_mobile()
    tenant, appointment = _waiting_booking(db, ident, cipher, phone)
    page, problems = open_page(browser, width)
    patient_sign_in(page, live_server, db, cipher, tenant, phone)
    with transaction(db, ctx_for(tenant.id)) as session:
        invoice = prepay.charge_of(session, appointment.id)
        assert invoice is not None
    page.goto(f"{live_server}/me/invoices/{invoice.id}")
    pay = page.get_by_role("button", name="Pay ₹500.00 online")
    assert pay.get_attribute("href") == LINK
    shot(page, f"portal-bill-pay-{width}")
    assert problems == []
