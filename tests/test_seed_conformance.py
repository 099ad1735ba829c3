"""The migrated schema matches the seed: every collection, field and index of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from opdesk.db import Database

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = [ROOT.parent / "shared", Path("/work/shared")]
TOOL = next(
    (c / "tools" / "seed_conformance.py" for c in CANDIDATES if c.exists()),
    CANDIDATES[0] / "tools" / "seed_conformance.py",
)
SEED_COLLECTIONS = [
    "audit_events",
    "automation_events",
    "users",
    "devices",
    "otp_tokens",
    "notifications_outbox",
    "patients",
    "documents",
    "consents",
    "slots",
    "appointments",
    "waitlist_locks",
    "visits",
    "prescriptions",
    "diet_plans",
    "orders",
    "invoices",
    "payments",
    "ledger_entries",
    "report_daily",
]


@pytest.mark.skipif(not TOOL.exists(), reason="the shared seed tool is not beside this checkout")
def test_every_seed_collection_conforms(db: Database) -> None:
    url = db.owner_url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, str(TOOL), url, "--project", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in SEED_COLLECTIONS:
        assert f"{name:<22} ok" in done.stdout
    assert "missing 0" in done.stdout
