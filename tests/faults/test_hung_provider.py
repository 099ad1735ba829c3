"""Issue 17, item 4: an outside provider that never answers.

The SMS provider (the local MSG91 stand-in) takes the request and then says nothing. The
worker must give up after its send timeout, hold no database transaction or row lock
while it waits, and put the message back for a later attempt after a backoff.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

from sqlalchemy import text

from opdesk.context import utc_now
from opdesk.db import Database
from opdesk.notifications.models import OutboxStatus
from opdesk.security.crypto import FieldCipher
from tests.factories import make_tenant
from tests.factories.automation import make_message, make_worker, message_of, wait_until
from tests.factories.messages import set_provider
from tests.fakes.sms_server import SmsServer

SEND_TIMEOUT = 1.5


def open_transactions(db: Database) -> list[tuple[str, str]]:
    """Sessions of this database inside a transaction, other than the one asking."""
    with db.owner_engine.connect() as owner:
        rows = owner.execute(
            text(
                "select state, left(query, 60) from pg_stat_activity "
                "where datname = current_database() and pid <> pg_backend_pid() "
                "and (state like 'idle in transaction%' or wait_event_type = 'Lock')"
            )
        )
        return [(r[0], r[1]) for r in rows]


def test_a_hung_sms_provider_costs_the_send_timeout_holds_no_transaction_and_backs_off(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    tenant = make_tenant(fresh_database)
    with SmsServer(auth_key="hung-key") as sms:
        sms.delay = 30.0
        set_provider(
            fresh_database,
            cipher,
            tenant,
            "sms",
            templates=json.dumps({"otp": {"en": {"templateId": "tpl-otp"}}}),
            authKey="hung-key",
            senderId="OPDESK",
            baseUrl=sms.url,
        )
        message = make_message(fresh_database, cipher, tenant.id)
        started = utc_now()
        worker = make_worker(
            fresh_database, cipher, send_timeout=SEND_TIMEOUT, backoff_base=60, backoff_cap=60
        )
        took: list[float] = []

        def one_pass() -> None:
            began = time.monotonic()
            worker.run_once()
            took.append(time.monotonic() - began)

        passing = threading.Thread(target=one_pass)
        passing.start()
        wait_until(lambda: sms.in_flight > 0, timeout=10, every=0.02)
        # The call is out and the provider silent: nothing of ours waits inside PostgreSQL.
        assert open_transactions(fresh_database) == []
        passing.join(timeout=SEND_TIMEOUT + 10)
        assert not passing.is_alive()

    assert took[0] < SEND_TIMEOUT + 2, f"the worker waited {took[0]:.1f} s on a hung provider"
    again = message_of(fresh_database, tenant.id, message.id)
    assert again.status == OutboxStatus.PENDING
    assert again.attempts == 1
    assert again.last_error is not None and "no answer" in again.last_error
    assert again.claimed_by is None
    # Backed off: the next attempt is drawn from the next minute (full jitter up to the
    # 60 s base), not made again at once by the same pass.
    assert again.scheduled_for is not None
    assert started <= again.scheduled_for <= utc_now() + timedelta(seconds=60)
