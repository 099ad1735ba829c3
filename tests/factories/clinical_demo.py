"""The demo clinic as ``opdesk demo`` makes it, run in-process against a test database
(fewer patients than the command registers: enough for the week's bookings).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from opdesk.clinical.demo import refresh_demo_clinical
from opdesk.context import system_context
from opdesk.db import Database
from opdesk.demo import (
    demo_passwords,
    refresh_demo,
    refresh_demo_patients,
    refresh_demo_people,
)
from opdesk.documents.storage import LocalStorage
from opdesk.scheduling.demo import refresh_demo_schedule
from opdesk.uow import transaction

DEMO_BASE_URL = "http://127.0.0.1:8000"


def run_demo(
    database: Database, ident: Any, data_dir: Path, *, patients: int = 80
) -> tuple[uuid.UUID, int]:
    """The steps of ``opdesk demo`` in its order, in one transaction as it does; the
    clinic's id and how many consultations the clinical step signed.
    """
    ctx = system_context(None)
    with transaction(database, ctx) as session:
        tenant = refresh_demo(session, ctx)
        refresh_demo_people(session, ctx, ident, demo_passwords(data_dir))
        refresh_demo_patients(session, ctx, ident, count=patients)
        refresh_demo_schedule(session, ctx, ident)
        signed = refresh_demo_clinical(
            session,
            ctx,
            ident,
            LocalStorage(data_dir / "files"),
            DEMO_BASE_URL,
        )
        return tenant.id, signed
