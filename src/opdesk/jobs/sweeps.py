"""The sweepers (the seed's TTL indexes and lapsed holds and offers) as jobs.

Lapsed offers and holds each have an automation event at their expiry that does the work
on time (``automation.clinic_rules``); these sweeps are the safety net for any event that
was missed. The last job keeps every clinic's daily report scheduled for its next local
midnight (a no-op once it is).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from opdesk import idempotency
from opdesk.automation import later_rules
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
        Job("lapsed holds", lambda s, c: waitlist.release_lapsed_holds(s, c, offers)),
        Job("old idempotency keys", _old_idempotency_keys),
        Job("daily reports scheduled", later_rules.keep_daily_report_scheduled),
    ]
