"""The services that used to move statuses by hand (consents, share links, the waitlist)
now move them through their machines: the same answers, one audit event per move.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from opdesk.consents import service as consents
from opdesk.db import Database
from opdesk.documents import service as documents
from opdesk.identity.service import Identity
from opdesk.scheduling import waitlist
from opdesk.scheduling.models import OfferStatus, WaitlistStatus
from opdesk.states import IllegalTransition
from opdesk.uow import transaction
from tests.factories import ctx_for, make_consent, make_share_link, make_tenant, offered, waiting
from tests.factories.scheduling import OFFER_FOR


def trail(db: Database, tenant_id: uuid.UUID, row_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with transaction(db, ctx_for(tenant_id)) as session:
        rows = session.execute(
            text(
                "select action, from_state, to_state from audit_events "
                "where entity_id = :id order by seq"
            ),
            {"id": row_id},
        ).all()
    return [tuple(r) for r in rows]


def test_a_consent_is_revoked_once(db: Database, ident: Identity) -> None:
    tenant = make_tenant(db)
    consent = make_consent(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        revoked = consents.revoke(session, ctx, consent_id=consent.id)
    assert revoked.revoked_at is not None
    with pytest.raises(IllegalTransition) as refused, transaction(db, ctx) as session:
        consents.revoke(session, ctx, consent_id=consent.id)
    assert refused.value.detail == "this consent is already revoked"
    assert trail(db, tenant.id, consent.id) == [
        ("create", None, None),
        ("state-transition", "signed", "revoked"),
    ]


def test_a_share_link_is_revoked_once_and_then_opens_no_more(db: Database, ident: Identity) -> None:
    tenant = make_tenant(db)
    link = make_share_link(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        documents.revoke(session, ctx, link_id=link.id)
    with pytest.raises(IllegalTransition) as refused, transaction(db, ctx) as session:
        documents.revoke(session, ctx, link_id=link.id)
    assert refused.value.detail == "this link is already revoked"
    assert trail(db, tenant.id, link.id) == [
        ("create", None, None),
        ("state-transition", "active", "revoked"),
    ]


def test_a_declined_offer_puts_the_patient_back_in_line(db: Database, ident: Any) -> None:
    offer = offered(db, ident)
    ctx = ctx_for(offer.tenant_id)
    offers = waitlist.Offers(ident.cipher, OFFER_FOR)
    with transaction(db, ctx) as session:
        declined = waitlist.decline(session, ctx, offers, lock_id=offer.id)
    assert declined.status == OfferStatus.DECLINED
    with pytest.raises(IllegalTransition) as refused, transaction(db, ctx) as session:
        waitlist.accept(session, ctx, lock_id=offer.id, channel="phone", online=False)
    assert refused.value.detail == "this offer was already declined"
    assert trail(db, offer.tenant_id, offer.id) == [
        ("create", None, "offered"),
        ("state-transition", "offered", "declined"),
    ]
    assert trail(db, offer.tenant_id, offer.entry_id) == [
        ("create", None, None),
        ("state-transition", "waiting", "offered"),
        ("state-transition", "offered", "waiting"),
    ]


def test_an_entry_is_withdrawn_once_and_an_open_offer_may_still_be_taken(
    db: Database, ident: Any
) -> None:
    """Leaving the line does not take back an offer already made (as before the machines)."""
    offer = offered(db, ident)
    ctx = ctx_for(offer.tenant_id)
    with transaction(db, ctx) as session:
        entry = waitlist.withdraw(session, ctx, entry_id=offer.entry_id)
    assert entry.status == WaitlistStatus.WITHDRAWN
    with pytest.raises(IllegalTransition) as refused, transaction(db, ctx) as session:
        waitlist.withdraw(session, ctx, entry_id=offer.entry_id)
    assert refused.value.detail == "a withdrawn waitlist entry cannot be withdrawn"
    with transaction(db, ctx) as session:
        booked = waitlist.accept(session, ctx, lock_id=offer.id, channel="phone", online=False)
    assert booked.waitlist_origin == offer.entry_id
    assert trail(db, offer.tenant_id, offer.entry_id)[-2:] == [
        ("state-transition", "offered", "withdrawn"),
        ("state-transition", "withdrawn", "booked"),
    ]


def test_a_waiting_entry_withdrawn_leaves_the_line(db: Database, ident: Any) -> None:
    line = waiting(db, ident)
    ctx = ctx_for(line.tenant.id)
    with transaction(db, ctx) as session:
        waitlist.withdraw(session, ctx, entry_id=line.second.id)
        left = [e.id for e in waitlist.entries(session)]
    assert line.second.id not in left and line.entry.id in left
    assert trail(db, line.tenant.id, line.second.id) == [
        ("create", None, None),
        ("state-transition", "waiting", "withdrawn"),
    ]
