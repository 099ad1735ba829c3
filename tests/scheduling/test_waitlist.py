"""The waitlist: freed slots offered in order, held for the offer, passed on when declined
or left to lapse; the offer message is an outbox row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from opdesk.db import Database
from opdesk.errors import Conflict, InvalidInput
from opdesk.notifications.models import OutboxMessage
from opdesk.notifications.service import read as read_message
from opdesk.scheduling import waitlist
from opdesk.scheduling.models import WaitlistEntry
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    DAY,
    book,
    cancel,
    clinic_with_slots,
    ctx_for,
    free,
    make_tenant,
    offers,
    patients,
    waiting,
)
from tests.factories.scheduling import OFFER_FOR


def entry_status(db: Database, tenant: Tenant, entry: WaitlistEntry) -> str:
    with transaction(db, ctx_for(tenant.id)) as session:
        found = session.get(WaitlistEntry, (tenant.id, entry.id))
        assert found is not None
        return found.status


def test_a_cancelled_slot_is_offered_to_the_first_in_line_and_held_for_them(
    db: Database, ident: Any
) -> None:
    line = waiting(db, ident)
    cancel(db, ident, line.tenant, line.booked.id)
    (offer,) = offers(db, line.tenant)
    assert offer.patient_id == line.people[1].id and offer.status == "offered"
    assert entry_status(db, line.tenant, line.entry) == "offered"
    assert entry_status(db, line.tenant, line.second) == "waiting"
    assert line.slot.id not in {s.id for s in free(db, line.tenant, line.slot)}
    with pytest.raises(Conflict):  # nobody else can take it during the offer
        book(db, line.tenant, line.slot, line.people[2])
    with transaction(db, ctx_for(line.tenant.id)) as session:
        message = session.execute(
            select(OutboxMessage).where(OutboxMessage.template == "waitlist-offer")
        ).scalar_one()
        item = read_message(ident.cipher, message, line.tenant.name)
    assert item.channel == "sms" and item.payload["offerId"] == str(offer.id)
    assert item.payload["minutes"] == 15


def test_accepting_books_the_slot_with_the_waitlist_origin(db: Database, ident: Any) -> None:
    line = waiting(db, ident)
    cancel(db, ident, line.tenant, line.booked.id)
    (offer,) = offers(db, line.tenant)
    ctx = ctx_for(line.tenant.id)
    with transaction(db, ctx) as session:
        appointment = waitlist.accept(session, ctx, lock_id=offer.id, channel="web", online=True)
    assert appointment.waitlist_origin == line.entry.id
    assert appointment.patient_id == line.people[1].id and appointment.slot_id == line.slot.id
    assert entry_status(db, line.tenant, line.entry) == "booked"
    assert offers(db, line.tenant)[0].status == "accepted"
    with pytest.raises(Conflict), transaction(db, ctx) as session:  # no second use
        waitlist.accept(session, ctx, lock_id=offer.id, channel="web", online=True)


def test_declining_passes_the_slot_to_the_next_patient(db: Database, ident: Any) -> None:
    line = waiting(db, ident)
    cancel(db, ident, line.tenant, line.booked.id)
    first = offers(db, line.tenant)[0]
    ctx = ctx_for(line.tenant.id)
    with transaction(db, ctx) as session:
        waitlist.decline(session, ctx, waitlist.Offers(ident.cipher, OFFER_FOR), lock_id=first.id)
    declined, second = offers(db, line.tenant)
    assert declined.status == "declined"
    assert second.patient_id == line.people[2].id and second.status == "offered"
    # The first patient is still in line for other slots, but not offered this one again.
    assert entry_status(db, line.tenant, line.entry) == "waiting"


def test_a_lapsed_offer_frees_the_slot_at_once_and_the_sweeper_offers_it_on(
    db: Database, ident: Any
) -> None:
    line = waiting(db, ident)
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        cancel(db, ident, line.tenant, line.booked.id)
    first = offers(db, line.tenant)[0]
    later = start + OFFER_FOR + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        assert [s.id for s in free(db, line.tenant, line.slot)] == [line.slot.id]
        ctx = ctx_for(line.tenant.id)
        with pytest.raises(Conflict, match="expired"), transaction(db, ctx) as session:
            waitlist.accept(session, ctx, lock_id=first.id, channel="web", online=True)
        sweep_ctx = ctx_for(line.tenant.id)
        with transaction(db, sweep_ctx) as session:
            lapsed = waitlist.lapse_offers(
                session, sweep_ctx, waitlist.Offers(ident.cipher, OFFER_FOR)
            )
    assert lapsed == 1
    expired, second = offers(db, line.tenant)
    assert expired.status == "expired"
    assert second.patient_id == line.people[2].id


def test_no_offer_when_nobody_waits_and_bad_ranges_are_refused(db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Quiet Clinic")
    _tenant, doctor, slots = clinic_with_slots(db, ident, 1, tenant)
    (patient,) = patients(db, ident, tenant, 1)
    appointment = book(db, tenant, slots[0], patient)
    cancel(db, ident, tenant, appointment.id)
    assert offers(db, tenant) == []
    assert [s.id for s in free(db, tenant, slots[0])] == [slots[0].id]
    ctx = ctx_for(tenant.id)
    with pytest.raises(InvalidInput) as bad, transaction(db, ctx) as session:
        waitlist.join(
            session,
            ctx,
            patient_id=patient.id,
            doctor_id=doctor.id,
            from_date=DAY,
            until_date=DAY - timedelta(days=1),
            visit_type="surgery",
        )
    assert {e.field for e in bad.value.errors} == {"untilDate", "visitType"}
