"""Payment links and refunds through Razorpay (a local test server speaking its API), and
its webhooks: signed, applied once each, in any order, unknown payments kept for review.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.billing import ledger
from opdesk.billing.models import GatewayEvent, Invoice, LedgerEntry, Payment
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from tests.factories import bearer, clinic_session, make_tenant, make_user, open_session
from tests.factories import billing as bill
from tests.fakes.razorpay_server import (
    RazorpayServer,
    SignedWebhook,
)


def _clinic(db: Database, ident: Any) -> Tenant:
    tenant = make_tenant(db, "Link Clinic")
    return bill.with_razorpay(
        db, ident.cipher, tenant, upi_vpa="linkclinic@okaxis", upi_payee_name="Link Clinic"
    )


def _api(db: Database, ident: Any, tenant: Tenant, role: str = "frontdesk") -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, role)))


def _post(client: TestClient, tenant: Tenant, hook: SignedWebhook) -> Any:
    return client.post(
        f"/api/v1/billing/webhooks/razorpay/{tenant.slug}", content=hook.body, headers=hook.headers
    )


def _linked(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, amount: str = "750.00"
) -> dict[str, Any]:
    invoice = bill.issued(db, ident, tenant, bill.line(amount))
    sent = client.post(
        f"/api/v1/invoices/{invoice.id}/payment-link", json={}, headers=_api(db, ident, tenant)
    )
    assert sent.status_code == 202, sent.text
    payment = client.get(
        f"/api/v1/payments/{sent.json()['id']}", headers=_api(db, ident, tenant)
    ).json()
    assert payment["linkUrl"], payment
    linked: dict[str, Any] = payment
    return linked


def test_a_link_is_made_through_razorpay_and_its_webhook_settles_the_invoice(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    tenant = _clinic(db, ident)
    payment = _linked(gateway_client, db, ident, tenant)
    assert (payment["status"], payment["method"]) == ("pending", "link")
    (made,) = [
        r
        for r in rzp.requests("POST", "/v1/payment_links")
        if r.body.get("reference_id") == payment["id"].replace("-", "")
    ]
    assert made.body["amount"] == 75000  # paise
    for hook in rzp.pay_link(payment["gateway"]["linkId"]):
        assert _post(gateway_client, tenant, hook).status_code == 200
    done = gateway_client.get(
        f"/api/v1/payments/{payment['id']}", headers=_api(db, ident, tenant)
    ).json()
    assert done["status"] == "captured"
    assert done["gateway"]["paymentId"].startswith("pay_")
    invoice = bill.stored(db, tenant, Invoice, payment["invoiceId"])
    assert (invoice.status, invoice.balance_due) == ("paid", Decimal("0.00"))
    with clinic_session(db, tenant.id) as session:
        assert ledger.check(session) == []


def test_a_webhook_replayed_10_times_in_a_row_and_10_at_once_moves_money_once(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    tenant = _clinic(db, ident)
    payment = _linked(gateway_client, db, ident, tenant)
    captured, paid = rzp.pay_link(payment["gateway"]["linkId"])
    outcomes = [_post(gateway_client, tenant, paid).json()["outcome"] for _ in range(10)]
    assert outcomes == ["applied"] + ["duplicate"] * 9
    replies: list[str] = []
    start = threading.Barrier(10)

    def deliver() -> None:
        start.wait()
        replies.append(_post(gateway_client, tenant, captured).json()["outcome"])

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the captured event is another event about the same payment: kept once, changes nothing
    assert sorted(replies) == ["duplicate"] * 9 + ["no-change"]
    with clinic_session(db, tenant.id) as session:
        credits = session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "payment")
        )
        kept = session.scalar(select(func.count()).select_from(GatewayEvent))
    assert (credits, kept) == (1, 2)


def test_a_bad_signature_is_400_and_changes_nothing(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    tenant = _clinic(db, ident)
    payment = _linked(gateway_client, db, ident, tenant)
    _captured, paid = rzp.pay_link(payment["gateway"]["linkId"])
    forged = dict(paid.headers)
    for headers, body in (
        ({**forged, "X-Razorpay-Signature": "0" * 64}, paid.body),
        ({k: v for k, v in forged.items() if k != "X-Razorpay-Signature"}, paid.body),
        (forged, paid.body.replace(b'"paid"', b'"PAID"', 1)),
    ):
        refused = gateway_client.post(
            f"/api/v1/billing/webhooks/razorpay/{tenant.slug}", content=body, headers=headers
        )
        assert refused.status_code == 400
    assert bill.stored(db, tenant, Payment, payment["id"]).status == "pending"
    with clinic_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(GatewayEvent)) == 0


def test_an_event_about_an_unknown_payment_is_kept_for_review(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    tenant = _clinic(db, ident)
    stray = rzp.webhook(
        "payment.captured",
        {
            "payment": {
                "entity": {
                    "id": "pay_Unknown00001",
                    "amount": 10000,
                    "currency": "INR",
                    "status": "captured",
                    "method": "upi",
                    "notes": [],
                }
            }
        },
    )
    assert _post(gateway_client, tenant, stray).json()["outcome"] == "review"
    with clinic_session(db, tenant.id) as session:
        (kept,) = session.scalars(select(GatewayEvent))
    assert (kept.outcome, kept.kind, kept.event_id) == (
        "review",
        "payment.captured",
        stray.event_id,
    )


def test_a_failed_attempt_leaves_the_link_payable_and_its_expiry_fails_the_payment(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    tenant = _clinic(db, ident)
    payment = _linked(gateway_client, db, ident, tenant)
    link_id = payment["gateway"]["linkId"]
    for hook in rzp.fail_link(link_id, "Payment was declined by the bank"):
        assert _post(gateway_client, tenant, hook).json()["outcome"] == "applied"
    still = bill.stored(db, tenant, Payment, payment["id"])
    assert (still.status, still.failure_reason) == ("pending", "Payment was declined by the bank")
    for hook in rzp.expire_link(link_id):
        _post(gateway_client, tenant, hook)
    gone = bill.stored(db, tenant, Payment, payment["id"])
    assert gone.status == "failed"  # kept, not deleted
    invoice = bill.stored(db, tenant, Invoice, payment["invoiceId"])
    assert invoice.status == "issued"


def test_a_payment_arriving_before_the_link_was_written_down_still_settles(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    # The webhook names our payment by the link's reference_id; the out-of-order
    # payment.captured (sent before payment_link.paid) settles it on its own too.
    tenant = _clinic(db, ident)
    payment = _linked(gateway_client, db, ident, tenant)
    captured, paid = rzp.pay_link(payment["gateway"]["linkId"])
    assert _post(gateway_client, tenant, captured).json()["outcome"] == "applied"
    assert _post(gateway_client, tenant, paid).json()["outcome"] == "no-change"


def test_a_link_payment_is_refunded_through_razorpay(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    tenant = _clinic(db, ident)
    payment = _linked(gateway_client, db, ident, tenant, "600.00")
    for hook in rzp.pay_link(payment["gateway"]["linkId"]):
        _post(gateway_client, tenant, hook)
    accounts = _api(db, ident, tenant, "accounts")
    url = f"/api/v1/payments/{payment['id']}/gateway-refunds"
    made = gateway_client.post(
        url, json={"amount": "250.00", "reason": "lab test not done"}, headers=accounts
    )
    assert made.status_code == 202, made.text
    refunds = gateway_client.get(
        f"/api/v1/payments/{payment['id']}/refunds", headers=accounts
    ).json()
    assert [(r["status"], r["amount"]) for r in refunds] == [("processed", "250.00")]
    too_much = gateway_client.post(url, json={"amount": "350.01", "reason": "x"}, headers=accounts)
    assert too_much.status_code == 409
    # the gateway's webhook for the refund finds it already settled
    (hook,) = rzp.refund_webhooks(refunds[0]["gatewayRefundId"])
    assert _post(gateway_client, tenant, hook).json()["outcome"] == "no-change"
    after = bill.stored(db, tenant, Payment, payment["id"])
    assert (after.status, after.amount_refunded) == ("partial", Decimal("250.00"))
    desk = gateway_client.post(
        url, json={"amount": "1.00", "reason": "x"}, headers=_api(db, ident, tenant)
    )
    assert desk.status_code == 403
    with clinic_session(db, tenant.id) as session:
        assert ledger.check(session) == []


def test_a_clinic_without_razorpay_cannot_send_a_link(
    gateway_client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db)
    invoice = bill.issued(db, ident, tenant)
    refused = gateway_client.post(
        f"/api/v1/invoices/{invoice.id}/payment-link", json={}, headers=_api(db, ident, tenant)
    )
    assert refused.status_code == 409
    assert "Billing settings" in refused.json()["detail"]


def test_razorpay_refusing_the_link_fails_the_payment_with_the_reason(
    gateway_client: TestClient, db: Database, ident: Any, rzp: RazorpayServer
) -> None:
    tenant = _clinic(db, ident)
    invoice = bill.issued(db, ident, tenant)
    rzp.answer_next(500)
    sent = gateway_client.post(
        f"/api/v1/invoices/{invoice.id}/payment-link", json={}, headers=_api(db, ident, tenant)
    )
    assert sent.status_code == 202
    failed = bill.stored(db, tenant, Payment, sent.json()["id"])
    assert failed.status == "failed"
    assert "try again" in (failed.failure_reason or "")
    assert bill.stored(db, tenant, Invoice, invoice.id).status == "issued"


@pytest.mark.parametrize("amount", ["0", "-5", "NaN", "1000000000000"])
def test_a_link_for_a_bad_amount_is_refused(
    gateway_client: TestClient, db: Database, ident: Any, amount: str
) -> None:
    tenant = _clinic(db, ident)
    invoice = bill.issued(db, ident, tenant)
    refused = gateway_client.post(
        f"/api/v1/invoices/{invoice.id}/payment-link",
        json={"amount": amount},
        headers=_api(db, ident, tenant),
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "amount"


def test_the_patient_is_messaged_the_link_when_it_is_made(
    gateway_client: TestClient, db: Database, ident: Any
) -> None:
    from opdesk.notifications.delivery import payload_of
    from opdesk.notifications.models import OutboxMessage
    from tests.factories import make_patient
    from tests.factories.messages import consent_to

    tenant = _clinic(db, ident)
    patient = make_patient(db, ident, tenant)
    consent_to(db, ident.cipher, tenant, patient.id, "sms")
    invoice = bill.issued(db, ident, tenant, bill.line("480.00"), patient_id=patient.id)
    sent = gateway_client.post(
        f"/api/v1/invoices/{invoice.id}/payment-link", json={}, headers=_api(db, ident, tenant)
    )
    link = bill.stored(db, tenant, Payment, sent.json()["id"]).link_url
    with clinic_session(db, tenant.id) as session:
        (message,) = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "payment-link")
        )
    assert payload_of(ident.cipher, message)["link"] == link
    assert payload_of(ident.cipher, message)["amount"] == "₹480.00"
