"""The delivery interface end to end with the ``log`` provider (the dev default)."""

from __future__ import annotations

from opdesk.db import Database
from opdesk.notifications import delivery
from opdesk.notifications import service as outbox
from opdesk.notifications.models import OutboxMessage
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import clinic_session, ctx_for


def test_a_sign_in_code_goes_through_the_log_provider_with_its_text_rendered(
    db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        message = outbox.enqueue(
            session,
            ctx,
            cipher,
            channel="sms",
            template="otp",
            recipient="+919812345678",
            payload={"code": "123456", "clinic": "Sunrise", "minutes": 10},
        )
        message_id = message.id
    with transaction(db, ctx) as session:
        row = session.get(OutboxMessage, (tenant.id, message_id))
        assert row is not None
        outgoing = delivery.prepare(session, ctx, cipher, row)
    assert outgoing.provider == "log"
    assert outgoing.recipient == "+919812345678"
    assert outgoing.text.startswith("123456 is your sign-in code for Sunrise")
    assert outgoing.params == ("123456", "Sunrise", "10")
    assert delivery.transmit(outgoing, timeout=1) == f"log-{message_id}"
    with clinic_session(db, tenant.id) as session:
        row = session.get(OutboxMessage, (tenant.id, message_id))
        assert row is not None
        delivery.after_sent(session, ctx, cipher, row)
        # The log provider is the dev inbox: the delivered text stays readable there.
        assert "123456" in (delivery.body_of(cipher, row) or "")
        assert row.provider == "log"
        assert row.language == "en"
