"""Paying ahead for an online booking (issue 13, item 3 and 6): the booking waits as
``requested`` with its slot kept and a payment link made; paid, it is confirmed and only
then gets its messages; unpaid in the clinic's minutes, it is cancelled, its slot freed,
its bill cancelled by a credit note and its link cancelled at Razorpay; a prepaid booking
cancelled later is refunded through Razorpay and becomes ``refunded``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.automation import clinic_rules
from opdesk.automation.models import AutomationEvent
from opdesk.automation.worker import Worker
from opdesk.billing import ledger
from opdesk.billing.models import Invoice, Payment, PaymentRefund
from opdesk.config import Settings
from opdesk.context import utc_now
from opdesk.db import Database
from opdesk.scheduling.models import Appointment, Slot
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    DAY,
    browser_for,
    clinic_session,
    clinic_with_slots,
    csrf_of,
    ctx_for,
    patients,
    portal_login,
)
from tests.factories.automation import FAST
from tests.factories.billing import with_razorpay
from tests.fakes.razorpay_server import RazorpayServer

MINUTES = 20


@pytest.fixture
def pointed(settings: Settings, rzp: RazorpayServer) -> Settings:
    return settings.model_copy(update={"razorpay_base_url": rzp.url, "razorpay_timeout_seconds": 3})


def _prepaying_clinic(db: Database, ident: Any, *, slots: int = 2) -> tuple[Tenant, list[Slot]]:
    tenant, _doctor, made = clinic_with_slots(db, ident, slots)
    with_razorpay(db, ident.cipher, tenant, prepay_online=True, prepay_minutes=MINUTES)
    return tenant, made


class Patient:
    """A signed-in patient's browser on the clinic's booking pages."""

    def __init__(self, app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> None:
        (self.record,) = patients(db, ident, tenant, 1)
        token = portal_login(db, ident, tenant, self.record)["Authorization"]
        self.browser = browser_for(app, token.removeprefix("Bearer "))
        self.tenant = tenant

    def book(self, slot: Slot) -> Any:
        slug = self.tenant.slug
        picking = self.browser.get(f"/c/{slug}/book?doctor={slot.doctor_id}&date={DAY}")
        held = self.browser.post(
            f"/c/{slug}/book/hold",
            data={"slot_id": str(slot.id), "csrf_token": csrf_of(picking.text)},
        )
        assert held.url.path == f"/c/{slug}/book/confirm", held.text
        return self.browser.post(
            f"/c/{slug}/book/confirm",
            data={
                "patient_id": str(self.record.id),
                "visit_type": "consultation",
                "csrf_token": csrf_of(held.text),
            },
        )


@pytest.fixture
def patient_of(gateway_app: FastAPI, db: Database, ident: Any) -> Iterator[Any]:
    made: list[Patient] = []

    def make(tenant: Tenant) -> Patient:
        made.append(Patient(gateway_app, db, ident, tenant))
        return made[-1]

    yield make
    for patient in made:
        patient.browser.close()


def _appointment_on(db: Database, tenant: Tenant, slot: Slot) -> Appointment:
    with clinic_session(db, tenant.id) as session:
        return session.execute(
            select(Appointment).where(Appointment.slot_id == slot.id)
        ).scalar_one()


def _money(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> tuple[Invoice, Payment]:
    """The booking's invoice and its one payment."""
    (only,) = _money_links(db, tenant, appointment_id)
    return only


def _link_id(payment: Payment) -> str:
    assert payment.gateway_link_id is not None, "the link was never made"
    return payment.gateway_link_id


def _rules(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> dict[str, str]:
    with clinic_session(db, tenant.id) as session:
        rows = session.execute(
            select(AutomationEvent.rule, AutomationEvent.status).where(
                AutomationEvent.entity_ref_id == appointment_id
            )
        ).all()
    return {rule: str(status) for rule, status in rows}


def _paid_booking(
    client: TestClient, db: Database, ident: Any, rzp: RazorpayServer, patient_of: Any
) -> tuple[Tenant, Slot, Patient, Appointment]:
    """A booking on the clinic's page, its link paid at Razorpay and the webhooks in."""
    tenant, (slot, _other) = _prepaying_clinic(db, ident)
    patient = patient_of(tenant)
    patient.book(slot)
    appointment = _appointment_on(db, tenant, slot)
    _invoice, payment = _money(db, tenant, appointment.id)
    for hook in rzp.pay_link(_link_id(payment)):
        _webhook(client, tenant, hook)
    return tenant, slot, patient, appointment


def _refunds(db: Database, tenant: Tenant, payment_id: uuid.UUID) -> list[PaymentRefund]:
    with clinic_session(db, tenant.id) as session:
        return list(
            session.scalars(select(PaymentRefund).where(PaymentRefund.payment_id == payment_id))
        )


def _webhook(client: TestClient, tenant: Tenant, hook: Any) -> str:
    answer = client.post(
        f"/api/v1/billing/webhooks/razorpay/{tenant.slug}", content=hook.body, headers=hook.headers
    )
    assert answer.status_code == 200, answer.text
    outcome: str = answer.json()["outcome"]
    return outcome


def _worker(db: Database, ident: Any, pointed: Settings, *, later: timedelta) -> Worker:
    return Worker(db, ident.cipher, tuning=FAST, clock=lambda: utc_now() + later, settings=pointed)


def _clean_ledger(db: Database, tenant: Tenant) -> None:
    with clinic_session(db, tenant.id) as session:
        assert ledger.check(session) == []


def test_an_online_booking_waits_for_its_payment_and_paying_confirms_it(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer, patient_of: Any
) -> None:
    tenant, (slot, _other) = _prepaying_clinic(db, ident)
    patient = patient_of(tenant)
    booked = patient.book(slot)
    appointment = _appointment_on(db, tenant, slot)
    assert booked.url.path == f"/me/appointments/{appointment.id}/pay"
    assert appointment.status == "requested"
    assert appointment.timeline_confirmed_at is None
    invoice, payment = _money(db, tenant, appointment.id)
    assert (invoice.status, invoice.grand_total) == ("issued", Decimal("500.00"))
    assert (payment.method, payment.status, payment.amount) == (
        "link",
        "pending",
        Decimal("500.00"),
    )
    assert payment.link_url is not None  # made by the response's background task
    # Only the lapse of the wait is scheduled: no confirmation or reminders yet.
    assert _rules(db, tenant, appointment.id) == {clinic_rules.PREPAY_LAPSE: "pending"}
    page = patient.browser.get(f"/me/appointments/{appointment.id}/pay").text
    assert "Pay ₹500.00 now" in page and payment.link_url in page
    assert 'hx-trigger="every 3s"' in page  # it refreshes itself until the payment arrives
    listed = patient.browser.get("/me/appointments").text
    assert "Waiting for payment" in listed and f"/me/appointments/{appointment.id}/pay" in listed
    assert f"/me/appointments/{appointment.id}/reschedule" not in listed

    outcomes = [_webhook(gateway_client, tenant, h) for h in rzp.pay_link(_link_id(payment))]
    assert outcomes == ["applied", "no-change"]
    confirmed = _appointment_on(db, tenant, slot)
    assert confirmed.status == "confirmed" and confirmed.timeline_confirmed_at is not None
    events = _rules(db, tenant, appointment.id)
    assert events[clinic_rules.PREPAY_LAPSE] == "cancelled"
    assert events[clinic_rules.CONFIRMATION] == "pending"
    assert events[clinic_rules.NO_SHOW] == "pending"
    done = patient.browser.get(
        f"/me/appointments/{appointment.id}/pay", headers={"HX-Request": "true"}
    ).text
    assert "Your appointment is confirmed" in done and "every 3s" not in done
    _clean_ledger(db, tenant)


def test_an_unpaid_booking_lapses_its_slot_is_freed_and_its_bill_and_link_are_cancelled(
    gateway_client: TestClient,
    db: Database,
    ident: Any,
    rzp: RazorpayServer,
    patient_of: Any,
    pointed: Settings,
) -> None:
    tenant, (slot, _other) = _prepaying_clinic(db, ident)
    patient = patient_of(tenant)
    patient.book(slot)
    appointment = _appointment_on(db, tenant, slot)
    _invoice, payment = _money(db, tenant, appointment.id)

    early = _worker(db, ident, pointed, later=timedelta(minutes=MINUTES - 1))
    early.run_once()
    assert _appointment_on(db, tenant, slot).status == "requested"  # still within the wait

    late = _worker(db, ident, pointed, later=timedelta(minutes=MINUTES + 1))
    late.run_once()
    late.run_once()  # the cancellation's own event: the link cancelled at Razorpay
    gone = _appointment_on(db, tenant, slot)
    assert gone.status == "cancelled"
    with clinic_session(db, tenant.id) as session:
        freed = session.get(Slot, (tenant.id, slot.id))
        assert freed is not None and freed.status == "free"
    invoice, payment = _money(db, tenant, appointment.id)
    assert (invoice.status, invoice.balance_due, invoice.amount_credited) == (
        "refunded",
        Decimal("0.00"),
        Decimal("500.00"),
    )
    assert (payment.status, payment.failure_reason) == (
        "failed",
        "the appointment was cancelled before it was paid",
    )
    assert rzp.store.links[_link_id(payment)]["status"] == "cancelled"
    assert _rules(db, tenant, appointment.id)[clinic_rules.PREPAID_CANCELLED] == "success"
    _clean_ledger(db, tenant)
    page = patient.browser.get(f"/me/appointments/{appointment.id}/pay").text
    assert "No longer waiting for payment" in page


def test_a_payment_arriving_after_the_lapse_is_kept_for_review_not_applied(
    gateway_client: TestClient,
    db: Database,
    ident: Any,
    rzp: RazorpayServer,
    patient_of: Any,
    pointed: Settings,
) -> None:
    tenant, (slot, _other) = _prepaying_clinic(db, ident)
    patient_of(tenant).book(slot)
    appointment = _appointment_on(db, tenant, slot)
    _invoice, payment = _money(db, tenant, appointment.id)
    hooks = rzp.pay_link(_link_id(payment))  # paid at Razorpay, the webhook is late
    lapse = _worker(db, ident, pointed, later=timedelta(minutes=MINUTES + 1))
    lapse.run_once()
    assert [_webhook(gateway_client, tenant, h) for h in hooks] == ["review", "review"]
    invoice, payment = _money(db, tenant, appointment.id)
    assert (invoice.status, invoice.amount_paid, payment.status) == (
        "refunded",
        Decimal("0.00"),
        "failed",
    )
    assert _appointment_on(db, tenant, slot).status == "cancelled"
    _clean_ledger(db, tenant)


def test_a_prepaid_booking_cancelled_by_the_patient_is_refunded_through_razorpay(
    gateway_client: TestClient,
    db: Database,
    ident: Any,
    rzp: RazorpayServer,
    patient_of: Any,
    pointed: Settings,
) -> None:
    tenant, slot, patient, appointment = _paid_booking(gateway_client, db, ident, rzp, patient_of)
    url = f"/me/appointments/{appointment.id}/cancel"
    asking = patient.browser.get(url)
    assert "The ₹500.00 you paid online is refunded to you" in asking.text
    patient.browser.post(url, data={"confirmed": "yes", "csrf_token": csrf_of(asking.text)})
    assert _appointment_on(db, tenant, slot).status == "cancelled"

    worker = _worker(db, ident, pointed, later=timedelta(seconds=1))
    worker.run_once()
    assert _appointment_on(db, tenant, slot).status == "refunded"
    invoice, payment = _money(db, tenant, appointment.id)
    assert (invoice.status, invoice.amount_refunded) == ("refunded", Decimal("500.00"))
    assert (payment.status, payment.amount_refunded) == ("refunded", Decimal("500.00"))
    asked = rzp.requests("POST", f"/v1/payments/{payment.gateway_payment_id}/refund")
    assert len(asked) == 1 and asked[0].body["amount"] == 50000
    # Run again (a worker that died before recording success): nothing is refunded twice.
    worker.run_once()
    refunds = _refunds(db, tenant, payment.id)
    assert [(r.status, r.amount) for r in refunds] == [("processed", Decimal("500.00"))]
    _clean_ledger(db, tenant)


def test_a_refund_razorpay_cannot_take_now_is_asked_again_with_the_same_key(
    gateway_client: TestClient,
    db: Database,
    ident: Any,
    rzp: RazorpayServer,
    patient_of: Any,
    pointed: Settings,
) -> None:
    tenant, slot, _patient, appointment = _paid_booking(gateway_client, db, ident, rzp, patient_of)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        from opdesk.scheduling import lifecycle, waitlist

        lifecycle.transition(
            session,
            ctx,
            waitlist.Offers(ident.cipher, timedelta(minutes=30)),
            appointment_id=appointment.id,
            to="cancelled",
        )
    rzp.answer_next(503, {"error": {"code": "SERVER_ERROR", "description": "try later"}})
    worker = _worker(db, ident, pointed, later=timedelta(seconds=1))
    worker.run_once()
    assert _appointment_on(db, tenant, slot).status == "cancelled"  # not yet refunded
    retried = _worker(db, ident, pointed, later=timedelta(minutes=5))
    retried.run_once()
    assert _appointment_on(db, tenant, slot).status == "refunded"
    _invoice, payment = _money(db, tenant, appointment.id)
    refunds = _refunds(db, tenant, payment.id)
    assert [(r.status, r.amount) for r in refunds] == [("processed", Decimal("500.00"))]
    keys = {
        r.headers.get("x-refund-idempotency")
        for r in rzp.requests("POST", f"/v1/payments/{payment.gateway_payment_id}/refund")
    }
    assert keys == {refunds[0].id.hex}
    _clean_ledger(db, tenant)


def test_a_booking_waiting_for_payment_cannot_be_moved_to_dodge_it(
    gateway_client: TestClient, db: Database, ident: Any, patient_of: Any
) -> None:
    tenant, (slot, other) = _prepaying_clinic(db, ident)
    patient = patient_of(tenant)
    patient.book(slot)
    appointment = _appointment_on(db, tenant, slot)
    url = f"/me/appointments/{appointment.id}/reschedule"
    asking = patient.browser.get(f"{url}?slot_id={other.id}")
    refused = patient.browser.post(
        url,
        data={"slot_id": str(other.id), "confirmed": "yes", "csrf_token": csrf_of(asking.text)},
    )
    assert "pay for this appointment first" in refused.text
    assert _appointment_on(db, tenant, slot).status == "requested"
    with clinic_session(db, tenant.id) as session:
        assert session.get(Slot, (tenant.id, other.id)).status == "free"  # type: ignore[union-attr]


def test_without_prepayment_an_online_booking_is_confirmed_at_once(
    gateway_client: TestClient, db: Database, ident: Any, patient_of: Any
) -> None:
    tenant, _doctor, (slot,) = clinic_with_slots(db, ident, 1)
    booked = patient_of(tenant).book(slot)
    assert booked.url.path == "/me/appointments"
    appointment = _appointment_on(db, tenant, slot)
    assert appointment.status == "confirmed"
    with clinic_session(db, tenant.id) as session:
        invoice = session.execute(
            select(Invoice).where(Invoice.appointment_id == appointment.id)
        ).scalar_one()
        assert invoice.status == "draft"  # the charge waits for checkout, as before


def test_another_patients_pay_page_is_not_found(
    gateway_client: TestClient, db: Database, ident: Any, patient_of: Any
) -> None:
    tenant, (slot, _other) = _prepaying_clinic(db, ident)
    patient_of(tenant).book(slot)
    appointment = _appointment_on(db, tenant, slot)
    stranger = patient_of(tenant)
    assert stranger.browser.get(f"/me/appointments/{appointment.id}/pay").status_code == 404
    page = stranger.browser.get("/me/appointments")
    tried = stranger.browser.post(
        f"/me/appointments/{appointment.id}/pay", data={"csrf_token": csrf_of(page.text)}
    )
    assert tried.status_code == 404


def test_a_link_razorpay_would_not_make_can_be_asked_for_again(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer, patient_of: Any
) -> None:
    tenant, (slot, _other) = _prepaying_clinic(db, ident)
    patient = patient_of(tenant)
    rzp.answer_next(503, {"error": {"code": "SERVER_ERROR", "description": "busy"}})
    patient.book(slot)
    appointment = _appointment_on(db, tenant, slot)
    _invoice, failed = _money_links(db, tenant, appointment.id)[0]
    assert failed.status == "failed"
    url = f"/me/appointments/{appointment.id}/pay"
    page = patient.browser.get(url)
    assert "We could not start the payment" in page.text and "Try again" in page.text
    assert 'hx-trigger="every 3s"' not in page.text  # nothing to wait for
    again = patient.browser.post(url, data={"csrf_token": csrf_of(page.text)})
    assert "Pay ₹500.00 now" in again.text
    links = _money_links(db, tenant, appointment.id)
    assert [p.status for _i, p in links] == ["pending", "failed"]  # newest first, both kept
    # A second press once a link is on its way is refused and makes no third payment.
    refused = patient.browser.post(url, data={"csrf_token": csrf_of(again.text)})
    assert "not waiting for a new payment link" in refused.text
    assert len(_money_links(db, tenant, appointment.id)) == 2


def _money_links(
    db: Database, tenant: Tenant, appointment_id: uuid.UUID
) -> list[tuple[Invoice, Payment]]:
    with clinic_session(db, tenant.id) as session:
        invoice = session.execute(
            select(Invoice).where(Invoice.appointment_id == appointment_id)
        ).scalar_one()
        found = (
            session.execute(
                select(Payment)
                .where(Payment.invoice_id == invoice.id)
                .order_by(Payment.created_at.desc())
            )
            .scalars()
            .all()
        )
        return [(invoice, p) for p in found]


def test_the_patients_api_books_waiting_for_payment_and_says_where_to_pay(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    tenant, (slot, other) = _prepaying_clinic(db, ident)
    (me,) = patients(db, ident, tenant, 1)
    mine = portal_login(db, ident, tenant, me)
    base = f"/api/v1/public/clinics/{tenant.slug}"
    token = gateway_client.post(f"{base}/holds", json={"slotId": str(slot.id)}).json()["holdToken"]
    body = {
        "slotId": str(slot.id),
        "patientId": str(me.id),
        "visitType": "consultation",
        "holdToken": token,
    }
    key = {**mine, "Idempotency-Key": f"book-{uuid.uuid4()}"}
    booked = gateway_client.post("/api/v1/me/appointments", json=body, headers=key)
    assert booked.status_code == 201, booked.text
    assert booked.json()["status"] == "requested"
    again = gateway_client.post("/api/v1/me/appointments", json=body, headers=key)
    assert again.json() == booked.json()  # the same answer, and no second link
    appointment_id = booked.json()["id"]
    url = f"/api/v1/me/appointments/{appointment_id}/payment"
    paying = gateway_client.get(url, headers=mine).json()
    assert (paying["state"], paying["amount"]) == ("ready", "500.00")
    assert paying["linkUrl"] and paying["payBy"] and paying["invoiceNumber"]
    assert len(_money_links(db, tenant, uuid.UUID(appointment_id))) == 1
    moved = gateway_client.post(
        f"/api/v1/me/appointments/{appointment_id}/reschedule",
        json={"slotId": str(other.id), "holdToken": "whatever"},
        headers=mine,
    )
    assert moved.status_code == 409 and "pay for this appointment first" in moved.text
    _invoice, payment = _money_links(db, tenant, uuid.UUID(appointment_id))[0]
    for hook in rzp.pay_link(_link_id(payment)):
        _webhook(gateway_client, tenant, hook)
    assert gateway_client.get(url, headers=mine).json()["state"] == "paid"
    (listed,) = gateway_client.get("/api/v1/me/appointments", headers=mine).json()
    assert listed["status"] == "confirmed"
    (stranger,) = patients(db, ident, tenant, 1)
    assert (
        gateway_client.get(url, headers=portal_login(db, ident, tenant, stranger)).status_code
        == 404
    )


def test_a_booking_never_asked_to_pay_ahead_has_no_pay_page(
    gateway_client: TestClient, db: Database, ident: Any, patient_of: Any
) -> None:
    # Booked at the desk and its charge issued there: nothing to pay online, nothing paid.
    tenant, (slot, _other) = _prepaying_clinic(db, ident)
    patient = patient_of(tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        from opdesk.billing import invoices
        from opdesk.scheduling import booking

        made = booking.book(
            session,
            ctx,
            booking.BookingRequest(
                slot_id=slot.id,
                patient_id=patient.record.id,
                visit_type="consultation",
                channel="phone",
            ),
        )
        draft = invoices.draft_for_appointment(session, made.id)
        assert draft is not None
        invoices.issue(session, ctx, draft)
    assert made.status == "confirmed"
    assert patient.browser.get(f"/me/appointments/{made.id}/pay").status_code == 404
    mine = portal_login(db, ident, tenant, patient.record)
    api = gateway_client.get(f"/api/v1/me/appointments/{made.id}/payment", headers=mine)
    assert api.status_code == 404
