"""A session's ``last_seen_at`` moves at most once a minute, and that touch never makes
the session's other requests wait (migration 0023): a request finding the session row
taken by another goes on without touching it.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from opdesk.db import Database
from opdesk.identity.models import AuthSession
from opdesk.tenancy.models import Tenant
from tests.factories import clinic_session, make_user, open_session
from tests.factories.people import bearer


def last_seen(db: Database, tenant: Tenant, user_id: Any) -> Any:
    with clinic_session(db, tenant.id) as session:
        row = session.query(AuthSession).filter(AuthSession.user_id == user_id).one()
        return row.id, row.last_seen_at


def test_a_due_touch_skips_a_session_row_another_request_holds(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "frontdesk")
    headers = bearer(open_session(db, ident, user))
    session_id, _ = last_seen(db, tenant, user.id)
    stale = "update sessions set last_seen_at = last_seen_at - interval '2 minutes' where id = :s"
    with db.owner_engine.begin() as owner:
        owner.execute(text(stale), {"s": session_id})
    _, before = last_seen(db, tenant, user.id)

    answers: list[int] = []
    with db.owner_engine.connect() as holder:
        # Another request of the same session, mid-touch: it holds the row.
        holder.execute(
            text("select 1 from sessions where id = :s for no key update"), {"s": session_id}
        )
        asking = threading.Thread(
            target=lambda: answers.append(
                client.get("/api/v1/patients?q=a", headers=headers).status_code
            )
        )
        asking.start()
        asking.join(timeout=5)
        waited = asking.is_alive()
        holder.rollback()
    asking.join(timeout=10)
    assert not waited, "the request queued behind the other's hold on the session row"
    assert answers == [200]
    _, untouched = last_seen(db, tenant, user.id)
    assert untouched == before  # it left the touch to the one holding the row

    # The row free again, the next request touches it; one within the minute does not.
    assert client.get("/api/v1/patients?q=a", headers=headers).status_code == 200
    _, touched = last_seen(db, tenant, user.id)
    assert touched > before + timedelta(minutes=1)
    assert client.get("/api/v1/patients?q=a", headers=headers).status_code == 200
    assert last_seen(db, tenant, user.id)[1] == touched
