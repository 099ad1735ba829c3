"""Running jobs: one transaction per job, or per job and clinic."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from opdesk.context import Clock, RequestContext, system_context, utc_now
from opdesk.db import Database
from opdesk.uow import transaction

log = logging.getLogger(__name__)

# A job does its work in the session it is given and says how many things it handled.
Work = Callable[[Session, RequestContext], int]


@dataclass(frozen=True)
class Job:
    """``per_clinic`` jobs run once for each clinic, scoped to it; others run once."""

    name: str
    work: Work
    per_clinic: bool = True


@dataclass
class Outcome:
    """What one job did: a count, and the clinics (or ``None``: all) where it failed."""

    name: str
    done: int = 0
    failed: list[uuid.UUID | None] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def clinic_ids(db: Database) -> list[uuid.UUID]:
    with transaction(db, system_context(None)) as session:
        return list(session.execute(text("select id from tenants order by id")).scalars())


def run_job(db: Database, job: Job, *, clock: Clock = utc_now) -> Outcome:
    """Run ``job`` in a transaction of its own (per clinic when it is a clinic job)."""
    outcome = Outcome(job.name)
    scopes: Iterable[uuid.UUID | None] = clinic_ids(db) if job.per_clinic else [None]
    for tenant_id in scopes:
        ctx = system_context(tenant_id, clock=clock)
        try:
            with transaction(db, ctx) as session:
                outcome.done += job.work(session, ctx)
        except Exception:
            # Logged and counted; the other clinics still get their turn.
            log.exception("job %s failed for clinic %s", job.name, tenant_id)
            outcome.failed.append(tenant_id)
    return outcome


def run_all(db: Database, jobs: Iterable[Job], *, clock: Clock = utc_now) -> list[Outcome]:
    return [run_job(db, job, clock=clock) for job in jobs]
