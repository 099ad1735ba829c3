"""Billing's pages in a real browser at desktop and phone width, for a patient with a
Hindi name (सुनीता शर्मा): from the queue's Checkout to a paid invoice (counting the
clicks), the UPI QR on screen, the accounts day, the patient's account and their bill in
the portal.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from opdesk.billing import settings as billing_settings
from opdesk.billing.models import Invoice
from opdesk.clinical import catalogue, visits
from opdesk.db import Database
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, shot
from tests.factories import make_user, open_session
from tests.factories.billing import walk_in_today
from tests.factories.clinical_visits import consultation, make_service
from tests.factories.clinics import ctx_for, make_tenant
from tests.factories.web import portal_login

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

UTR = "412345678901"


def as_user(page: Any, live_server: str, token: str) -> None:
    page.context.add_cookies([{"name": "opdesk_session", "value": token, "url": live_server}])


@pytest.mark.parametrize("width", list(WIDTHS))
def test_from_the_queue_to_a_paid_invoice_by_upi(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sunrise Family Clinic")
    seen = consultation(db, ident, clinic, name={"first": "सुनीता", "last": "शर्मा"})
    walked = walk_in_today(db, ident, clinic, seen.doctor.id, seen.patient.id)
    ecg = make_service(db, clinic, code="ECG", name="ECG (12 lead)", price="350")
    ctx = seen.ctx()
    with transaction(db, ctx) as session:
        visit = visits.open_visit(session, ctx, appointment_id=walked)
        catalogue.add_to_visit(session, ctx, visit_id=visit.id, service_id=ecg.id)
    admin_ctx = ctx_for(clinic.id)
    with transaction(db, admin_ctx) as session:
        billing_settings.save(
            session,
            admin_ctx,
            ident.cipher,
            billing_settings.Billing(
                upi_vpa="sunrise.clinic@okaxis", upi_payee_name="Sunrise Clinic"
            ),
        )
    desk = make_user(db, ident, clinic, "frontdesk", name="Kavita Rao")

    page, problems = open_page(browser, width)
    as_user(page, live_server, open_session(db, ident, desk))
    page.goto(f"{live_server}/queue")
    shot(page, f"billing-queue-checkout-{width}")
    clicks = 0

    # The queue's Checkout is a one-click form button (a POST: it prepares the draft).
    page.get_by_role("button", name="Checkout").first.click()
    clicks += 1
    page.wait_for_url("**/checkout")
    main = page.locator("main").inner_text()
    assert "सुनीता शर्मा" in main and "ECG (12 lead)" in main
    page.get_by_label("Item").fill("Cough syrup")
    page.get_by_label("Kind").select_option("med")
    page.get_by_label("Price for one (₹)").fill("85")
    page.get_by_label("GST rate").select_option("12")
    page.get_by_role("button", name="Add line").click()  # optional: not counted
    page.get_by_text("Line added.").wait_for()
    shot(page, f"billing-checkout-{width}")

    page.locator("summary", has_text="Issue invoice").click()
    clicks += 1
    assert page.get_by_text(
        "It cannot be changed after this — corrections are refunds."
    ).is_visible()
    page.get_by_role("button", name="Yes, issue for").click()
    clicks += 1
    page.wait_for_url("**/billing/invoices/*")
    assert "issued for" in page.get_by_role("status").inner_text()

    page.locator(".day-tabs").get_by_role("link", name="UPI QR").click()
    clicks += 1
    qr = page.locator(".upi-qr svg")
    assert qr.is_visible()
    box = qr.bounding_box()
    assert box is not None and box["width"] >= 200
    assert "to Sunrise Clinic" in page.locator(".upi-pay").inner_text()
    shot(page, f"billing-invoice-upi-{width}")

    page.get_by_label("UTR (12 digits)").fill(UTR[:-1])
    page.get_by_role("button", name="Confirm UPI payment").click()
    page.get_by_text("UTR (12 digits): enter the UPI transfer's UTR").first.wait_for()
    shot(page, f"billing-invoice-utr-error-{width}")
    page.get_by_label("UTR (12 digits)").fill(UTR)
    page.get_by_role("button", name="Confirm UPI payment").click()
    clicks += 1
    assert "Paid in full." in page.get_by_role("status").inner_text()
    assert page.locator("main .badge").first.inner_text() == "Paid"
    shot(page, f"billing-invoice-paid-{width}")
    # Queue → Checkout → Issue invoice… → Yes, issue → UPI QR → Confirm UPI payment.
    assert clicks == 5

    page.goto(f"{live_server}/billing/patients/{seen.patient.id}/ledger")
    assert "settled" in page.locator("main").inner_text()
    shot(page, f"billing-ledger-{width}")
    assert problems == [], problems
    page.context.close()

    accounts = make_user(db, ident, clinic, "accounts", name="Ramesh Iyer")
    books, problems = open_page(browser, width)
    as_user(books, live_server, open_session(db, ident, accounts))
    books.goto(f"{live_server}/billing/day")
    text = books.locator("main").inner_text()
    assert "UPI" in text and "Cash to hand over" in text
    shot(books, f"billing-day-upi-{width}")
    assert problems == [], problems
    books.context.close()

    token = portal_login(db, ident, clinic, seen.patient)["Authorization"].removeprefix("Bearer ")
    mine, problems = open_page(browser, width)
    as_user(mine, live_server, token)
    mine.goto(f"{live_server}/me/invoices")
    mine.locator("main a", has_text="/").first.click()
    assert "सुनीता शर्मा" in mine.locator("main").inner_text()
    shot(mine, f"billing-portal-invoice-{width}")
    assert problems == [], problems
    mine.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_an_invoice_part_paid_with_a_refund_and_the_settings_page(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    from tests.factories.billing import issued, line, pay, pay_split

    clinic = make_tenant(db, "Lotus Clinic")
    invoice = issued(
        db,
        ident,
        clinic,
        line("1200.00", description="Physiotherapy session", quantity="2"),
        line("450.00", description="Knee brace", type="med", tax_rate="12", sac_hsn="9021"),
    )
    payment = pay(db, clinic, invoice.id, "1000.00", "card", "AUTH77")
    pay(db, clinic, invoice.id, "500.00")
    accounts = make_user(db, ident, clinic, "accounts")
    page, problems = open_page(browser, width)
    as_user(page, live_server, open_session(db, ident, accounts))
    page.goto(f"{live_server}/billing/payments/{payment.id}/refund")
    page.get_by_label("Amount to refund (₹)").fill("200")
    page.get_by_label("Reason").fill("Session cut short")
    page.get_by_role("button", name="Review refund").click()
    assert "Refund ₹200.00 to" in page.locator("main").inner_text()
    shot(page, f"billing-refund-confirm-{width}")
    page.get_by_role("button", name="Yes, refund ₹200.00").click()
    assert "₹200.00 refunded (card)." in page.get_by_role("status").inner_text()
    # The refund's credit note cancels what it gave back: ₹2,904 less the ₹1,500 paid is still due.
    assert invoice.grand_total == Decimal("2904.00")
    assert "₹1,404.00" in page.locator(".invoice-totals").inner_text()
    shot(page, f"billing-invoice-partial-{width}")
    page.goto(f"{live_server}/billing/invoices")
    shot(page, f"billing-invoices-{width}")
    # The day: card, cash and a split of cash and UPI in; the card refund out.
    other = issued(db, ident, clinic, line("600.00", description="Dressing"))
    pay_split(db, clinic, other.id, ("cash", "250.00", None), ("upi", "350.00", UTR))
    page.goto(f"{live_server}/billing/day")
    text = page.locator("main").inner_text()
    assert "Cash to hand over" in text and "₹750.00" in text  # ₹500 + ₹250 in cash
    shot(page, f"billing-day-{width}")
    assert problems == [], problems
    page.context.close()

    admin = make_user(db, ident, clinic, "admin")
    settings_page, problems = open_page(browser, width)
    as_user(settings_page, live_server, open_session(db, ident, admin))
    settings_page.goto(f"{live_server}/admin/billing")
    settings_page.get_by_label("Clinic's UPI id").fill("lotus@oksbi")
    settings_page.get_by_role("button", name="Save settings").click()
    settings_page.get_by_text("Name payers see: is required with a UPI id").first.wait_for()
    settings_page.get_by_label("Name payers see").fill("Lotus Clinic")
    settings_page.get_by_role("button", name="Save settings").click()
    # The click submits the form; wait for the answer before looking (not the old page).
    settings_page.get_by_text("Billing settings saved.").wait_for()
    shot(settings_page, f"billing-settings-{width}")
    assert problems == [], problems
    settings_page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_link_to_checkout_shows_the_prepare_button_and_writes_nothing_itself(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    """A checkout address opened by a link (or prefetched, or the back button) before the
    bill is prepared shows one button and makes no invoice; the button makes the draft
    with the visit's ECG.
    """
    clinic = make_tenant(db, "Neem Tree Clinic")
    seen = consultation(db, ident, clinic, name={"first": "राजेश", "last": "वर्मा"})
    walked = walk_in_today(db, ident, clinic, seen.doctor.id, seen.patient.id)
    ecg = make_service(db, clinic, code="ECG", name="ECG (12 lead)", price="350")
    ctx = seen.ctx()
    with transaction(db, ctx) as session:
        visit = visits.open_visit(session, ctx, appointment_id=walked)
        catalogue.add_to_visit(session, ctx, visit_id=visit.id, service_id=ecg.id)
    desk = make_user(db, ident, clinic, "frontdesk", name="Kavita Rao")

    def bills() -> list[Invoice]:
        with transaction(db, ctx) as session:
            return list(session.scalars(select(Invoice).where(Invoice.appointment_id == walked)))

    page, problems = open_page(browser, width)
    as_user(page, live_server, open_session(db, ident, desk))
    # The queue's address opened as a link leads to the visit's checkout, which only shows.
    page.goto(f"{live_server}/billing/appointments/{walked}/checkout")
    page.wait_for_url(f"**/billing/visits/{visit.id}/checkout")
    main = page.locator("main").inner_text()
    assert "राजेश वर्मा" in main and "There is no draft bill for this visit yet" in main
    assert "ECG (12 lead)" in main and "₹350.00" in main
    shot(page, f"billing-checkout-prepare-{width}")
    page.reload()
    assert bills() == []

    page.get_by_role("button", name="Prepare the bill").click()
    page.wait_for_url(f"**/billing/visits/{visit.id}/checkout")
    assert page.get_by_role("button", name="Add line").is_visible()
    assert "ECG (12 lead)" in page.locator(".invoice-lines").inner_text()
    (draft,) = bills()
    assert draft.visit_id == visit.id and draft.status == "draft"
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_payments_to_check_are_listed_and_marked_dealt_with(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    from tests.factories.billing import kept_delivery_id

    clinic = make_tenant(db, "Lotus Clinic")
    kept = kept_delivery_id(db, ident, clinic)
    accounts = make_user(db, ident, clinic, "accounts")
    page, problems = open_page(browser, width)
    as_user(page, live_server, open_session(db, ident, accounts))
    page.goto(f"{live_server}/billing/gateway-events")
    shot(page, f"billing-payments-to-check-{width}")
    page.get_by_label("What was done").fill("Refunded in Razorpay; patient told by phone")
    page.get_by_role("button", name="Mark as dealt with").click()
    page.get_by_text("Marked as dealt with.").wait_for()
    assert page.get_by_text("Nothing to check.").is_visible()
    assert f"/billing/gateway-events/{kept}/reviewed" not in page.content()
    assert problems == []
