"""What billing tells the patient: the bill on request, the payment link when made, and
one balance-due reminder for a bill left unpaid (none once it is settled).
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.automation.models import AutomationEvent
from opdesk.billing import reminders
from opdesk.db import Database
from opdesk.notifications.delivery import payload_of
from opdesk.notifications.models import OutboxMessage
from opdesk.tenancy.models import Tenant
from tests.factories import bearer, clinic_session, make_patient, make_user, open_session
from tests.factories import billing as bill
from tests.factories.messages import consent_to


def _desk(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def _balance_events(db: Database, tenant: Tenant, invoice_id: Any) -> list[AutomationEvent]:
    with clinic_session(db, tenant.id) as session:
        return list(
            session.scalars(
                select(AutomationEvent).where(
                    AutomationEvent.entity_ref_id == invoice_id,
                    AutomationEvent.rule == "balance-due",
                )
            )
        )


def test_an_unpaid_invoice_is_reminded_of_once_and_a_paid_one_not_at_all(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    invoice = bill.issued(db, ident, tenant, bill.line("400.00"))
    (event,) = _balance_events(db, tenant, invoice.id)
    assert event.status == "pending"
    assert event.payload["values"]["amount"] == "₹400.00"
    with clinic_session(db, tenant.id) as session:
        found = reminders.balance_still_due(session, invoice.id)
    assert found == {"amount": "₹400.00", "link": reminders.invoice_link(invoice.id)}
    bill.pay(db, tenant, invoice.id, "150.00")
    with clinic_session(db, tenant.id) as session:
        assert reminders.balance_still_due(session, invoice.id) == {
            "amount": "₹250.00",
            "link": reminders.invoice_link(invoice.id),
        }
    bill.pay(db, tenant, invoice.id, "250.00")
    (event,) = _balance_events(db, tenant, invoice.id)
    assert event.status == "cancelled"
    with clinic_session(db, tenant.id) as session:
        assert reminders.balance_still_due(session, invoice.id) is None


def test_the_desk_sends_the_bill_once_to_a_patient_who_agreed_to_messages(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant, name={"first": "सुनीता", "last": "शर्मा"})
    consent_to(db, ident.cipher, tenant, patient.id, "sms")
    invoice = bill.issued(db, ident, tenant, bill.line("650.00"), patient_id=patient.id)
    headers = _desk(db, ident, tenant)
    for _ in range(2):
        sent = client.post(f"/api/v1/invoices/{invoice.id}/send", headers=headers)
        assert sent.status_code == 202, sent.text
        assert sent.json() == {"channel": "sms"}
    with clinic_session(db, tenant.id) as session:
        (message,) = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "invoice")
        )
    payload = payload_of(ident.cipher, message)
    assert payload["number"] == invoice.number
    assert payload["amount"] == "₹650.00"
    assert payload["patient"] == "सुनीता शर्मा"
    assert payload["link"].endswith(f"/me/invoices/{invoice.id}")


def test_a_bill_cannot_be_sent_to_a_patient_who_allows_no_messages_or_as_a_draft(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    headers = _desk(db, ident, tenant)
    silent = bill.issued(db, ident, tenant)
    refused = client.post(f"/api/v1/invoices/{silent.id}/send", headers=headers)
    assert refused.status_code == 409
    assert "printed bill" in refused.json()["detail"]
    draft = bill.draft(db, ident, tenant)
    assert client.post(f"/api/v1/invoices/{draft.id}/send", headers=headers).status_code == 409
