"""The sweepers (the seed's TTL indexes and lapsed holds and offers) as jobs."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from opdesk import idempotency
from opdesk.context import RequestContext
from opdesk.documents.service import sweep_share_links
from opdesk.identity.service import sweep_otp_tokens
from opdesk.jobs.runner import Job
from opdesk.scheduling import waitlist
from opdesk.security import throttle

# Sign-in counters older than this no longer count toward any limit.
THROTTLE_KEPT_FOR = timedelta(days=2)


def _old_counters(session: Session, ctx: RequestContext) -> int:
    return throttle.sweep(session, ctx.now() - THROTTLE_KEPT_FOR)


def _expired_codes(session: Session, ctx: RequestContext) -> int:
    return sweep_otp_tokens(session, ctx.now())


def _old_idempotency_keys(session: Session, ctx: RequestContext) -> int:
    return idempotency.sweep(session, ctx.now())


def sweep_jobs(offers: waitlist.Offers) -> list[Job]:
    """In order: offers lapse before holds are released, so the next patient in line is
    offered a freed slot before it goes back to everyone.
    """
    return [
        Job("expired sign-in codes", _expired_codes, per_clinic=False),
        Job("old sign-in counters", _old_counters, per_clinic=False),
        Job("expired share links", sweep_share_links),
        Job("lapsed waitlist offers", lambda s, c: waitlist.lapse_offers(s, c, offers)),
        Job("lapsed holds", waitlist.release_lapsed_holds),
        Job("old idempotency keys", _old_idempotency_keys),
    ]
