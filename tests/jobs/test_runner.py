"""Jobs run in a transaction per clinic: one clinic's failure leaves the others done."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.db import Database
from opdesk.jobs.runner import Job, run_job
from tests.factories import events_of, make_tenant


def test_a_failing_clinic_rolls_back_alone_and_is_reported(fresh_database: Database) -> None:
    good, bad, also_good = (make_tenant(fresh_database, n) for n in ("Asha", "Bharat", "Chetan"))

    def touch(session: Session, ctx: RequestContext) -> int:
        assert ctx.tenant_id is not None
        audit.record(ctx, entity="tenants", entity_id=ctx.tenant_id, action="update")
        session.flush()
        if ctx.tenant_id == bad.id:
            raise RuntimeError("this clinic's data is broken")
        return 1

    outcome = run_job(fresh_database, Job("touch", touch))

    assert outcome.done == 2
    assert outcome.failed == [bad.id]
    assert not outcome.ok
    touched = {t: _updates(fresh_database, t) for t in (good.id, bad.id, also_good.id)}
    assert touched == {good.id: 1, bad.id: 0, also_good.id: 1}


def test_a_whole_database_job_runs_once_without_a_clinic(fresh_database: Database) -> None:
    make_tenant(fresh_database)
    seen: list[uuid.UUID | None] = []

    def once(_session: Session, ctx: RequestContext) -> int:
        seen.append(ctx.tenant_id)
        return 5

    outcome = run_job(fresh_database, Job("once", once, per_clinic=False))
    assert (outcome.done, outcome.ok, seen) == (5, True, [None])


def _updates(db: Database, tenant_id: uuid.UUID) -> int:
    return sum(e.action == "update" for e in events_of(db, tenant_id))
