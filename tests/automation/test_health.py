"""/readyz's worker line: a warning when due work waits longer than the threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.security.crypto import StaticKeyring
from tests.factories import make_tenant
from tests.factories.automation import make_event


def test_readiness_warns_when_the_oldest_due_row_waits_too_long(
    fresh_database: Database, keyring: StaticKeyring, settings: Settings
) -> None:
    tenant = make_tenant(fresh_database)
    with TestClient(create_app(settings, database=fresh_database, keyring=keyring)) as client:
        calm = client.get("/readyz")
        assert (calm.status_code, calm.json()["status"], calm.json()["worker"]) == (200, "ok", "ok")

        now = datetime.now(UTC)
        make_event(fresh_database, tenant.id, when=now - timedelta(seconds=60))
        recent = client.get("/readyz").json()
        assert (recent["status"], recent["worker"]) == ("ok", "ok")  # under the threshold

        make_event(fresh_database, tenant.id, when=now - timedelta(minutes=10))
        late = client.get("/readyz")
    # 200: the web server still serves; the warning is for monitoring.
    assert late.status_code == 200
    assert late.json()["status"] == "degraded"
    assert late.json()["worker"].startswith("2 due, the oldest waiting 6")
