"""Gaps that mutation testing (``make mutate``) found: each test kills mutants that survived
the module's own tests. The mutant ids are mutmut's, from ``mutants/survivors.txt``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update

from opdesk import idempotency
from opdesk.db import Database
from opdesk.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from opdesk.scheduling import booking, service, waitlist
from opdesk.scheduling.models import Slot
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import TenantUpdate
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    book,
    cancel,
    clinic_session,
    clinic_with_slots,
    ctx_for,
    events_of,
    hold,
    make_patient,
    make_user,
    offers,
    open_session,
    patients,
    unaudited,
    waiting,
)
from tests.factories.scheduling import OFFER_FOR

# --------------------------------------------------------------------------- idempotency


class Answer(BaseModel):
    n: int


def keyed(
    db: Database,
    tenant: Tenant,
    *,
    actor: str,
    key: str,
    body: Any,
    n: int = 0,
    operation: str = "book",
    at: datetime | None = None,
) -> Any:
    """One request with an ``Idempotency-Key``, acting (answering ``n``) unless replayed."""
    ctx = ctx_for(tenant.id) if at is None else ctx_for(tenant.id, clock=lambda: at)
    with transaction(db, ctx) as session:
        return idempotency.run_once(
            session,
            ctx,
            actor_key=actor,
            key=key,
            operation=operation,
            body=body,
            act=lambda: Answer(n=n),
            status_code=201,
        )


def replayed(answer: Any) -> Any:
    """The body of the first answer, replayed (a ``Replay``, or the response made of one)."""
    if isinstance(answer, idempotency.Replay):
        return answer.body
    assert isinstance(answer, JSONResponse)
    assert answer.headers["Idempotent-Replayed"] == "true"
    return json.loads(bytes(answer.body))


def test_a_key_is_1_to_200_printable_characters_and_a_bad_one_names_the_header() -> None:
    # x_check_key__mutmut_1, _2, _4 (the bounds), _6 to _13 (the field and reason).
    assert idempotency.check_key("k") == "k"
    assert idempotency.check_key("k" * 200) == "k" * 200
    for bad in ("", "k" * 201, "tab\there", "line\nbreak"):
        with pytest.raises(InvalidInput) as refused:
            idempotency.check_key(bad)
        assert refused.value.errors == [
            FieldError("Idempotency-Key", "must be 1 to 200 printable characters")
        ]


def test_keys_belong_to_one_caller_who_may_hold_many(db: Database, tenant: Tenant) -> None:
    # x_claim__mutmut_24 (any caller's row) and _25 (any key's row): a retry would find two.
    assert keyed(db, tenant, actor="desk-1", key="k", body={"slot": 1}, n=1) == Answer(n=1)
    assert keyed(db, tenant, actor="desk-2", key="k", body={"slot": 1}, n=2) == Answer(n=2)
    assert keyed(db, tenant, actor="desk-1", key="k2", body={"slot": 1}, n=3) == Answer(n=3)
    assert replayed(keyed(db, tenant, actor="desk-1", key="k", body={"slot": 1})) == {"n": 1}
    assert replayed(keyed(db, tenant, actor="desk-2", key="k", body={"slot": 1})) == {"n": 2}
    assert replayed(keyed(db, tenant, actor="desk-1", key="k2", body={"slot": 1})) == {"n": 3}


def test_one_key_for_another_operation_is_refused(db: Database, tenant: Tenant) -> None:
    # x_run_once__mutmut_13 (the operation left out of the fingerprint) and x_claim__mutmut_32.
    keyed(db, tenant, actor="desk-1", key="k", body={}, operation="book", n=1)
    with pytest.raises(Conflict) as refused:
        keyed(db, tenant, actor="desk-1", key="k", body={}, operation="cancel", n=2)
    assert refused.value.detail == "this Idempotency-Key was already used for a different request"


def test_the_fingerprint_ignores_key_order_and_takes_dates_and_ids() -> None:
    # x_fingerprint__mutmut_3, _6, _8 (keys unsorted) and _4, _7 (no default=str).
    slot, at = uuid.uuid4(), datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
    one = idempotency.fingerprint("book", {"slotId": slot, "at": at, "visit": {"b": 1, "a": 2}})
    other = idempotency.fingerprint("book", {"visit": {"a": 2, "b": 1}, "at": at, "slotId": slot})
    assert one == other
    assert one != idempotency.fingerprint("book", {"slotId": uuid.uuid4(), "at": at})


def test_the_sweeper_forgets_keys_older_than_a_day_only(db: Database, tenant: Tenant) -> None:
    # x_sweep__mutmut_1 to _9: no test ran the idempotency sweeper.
    now = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    ages = {"old": idempotency.KEEP_FOR + timedelta(seconds=1), "day": idempotency.KEEP_FOR}
    ages["new"] = timedelta(minutes=5)
    for key, age in ages.items():
        keyed(db, tenant, actor="desk-1", key=key, body={}, at=now - age)
    with transaction(db, ctx_for(tenant.id)) as session:
        assert idempotency.sweep(session, now) == 1
        assert idempotency.sweep(session, now) == 0
        left = session.scalars(select(idempotency.IdempotentRequest.key)).all()
    assert sorted(left) == ["day", "new"]


# --------------------------------------------------------------------------- booking


def test_a_hold_is_audited_as_a_move_from_free_to_held_until_it_expires(
    db: Database, ident: Any
) -> None:
    # x_hold__mutmut_48 to _70 (but _64): the hold's audit event was never read.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    held = hold(db, tenant, slots[0])
    (event,) = [e for e in events_of(db, tenant.id) if e.action == "state-transition"]
    assert (event.entity_collection, event.entity_id) == ("slots", slots[0].id)
    assert (event.from_state, event.to_state) == ("free", "held")
    assert event.diff["updated"] == event.diff["removed"] == {}
    (expires,) = event.diff["added"].values()
    assert event.diff["added"] == {"holdExpiresAt": expires}
    assert datetime.fromisoformat(expires) == held.expires_at


def test_a_slot_is_over_from_the_minute_it_ends(db: Database, ident: Any) -> None:
    # x_refusal__mutmut_1 (ends_at < now), _2 to _4 (the words).
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    with time_machine.travel(slots[0].ends_at, tick=False), pytest.raises(Conflict) as refused:
        hold(db, tenant, slots[0])
    assert refused.value.detail == "this slot is already over; please choose a later one"


def test_each_refusal_says_why_the_slot_cannot_be_had(db: Database, ident: Any) -> None:
    # x_refusal__mutmut_12, _14 (a test matched part of one reason only), _7, _9, _16, _17.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    (patient,) = patients(db, ident, tenant, 1)
    hold(db, tenant, slots[0])
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        service.set_blocked(session, ctx, slots[1].id, blocked=True)
    for slot, why in (
        (slots[0], "is being booked by someone else right now"),
        (slots[1], "is not open for booking"),
    ):
        with pytest.raises(Conflict) as refused:
            book(db, tenant, slot, patient)
        assert refused.value.detail == f"this slot {why}; please choose another"
    # Free again by the time the refusal reads it (taken and let go in between).
    assert slots[1].status == "free"
    taken = {"refused": "slot-taken", "status": "free", "endsAt": slots[1].ends_at.isoformat()}
    again = booking.slot_refusal(ctx, slots[1].id, taken).detail
    assert again == "this slot is no longer available; please choose another"


def test_a_wrong_visit_type_is_refused_naming_what_the_slot_is_for() -> None:
    # (was x_check_visit_type__mutmut_8 to _16): the words name what the slot is for.
    for offered, choices in (
        (["consultation", "follow-up"], "consultation, follow-up"),
        ([], "none"),
    ):
        refused = booking.visit_type_refusal(offered, "new")
        assert refused.errors == [FieldError("visitType", f"this slot is for {choices}, not 'new'")]


def test_a_hold_that_ran_out_cannot_book_a_slot_that_is_over(db: Database, ident: Any) -> None:
    # x__held_for__mutmut_5 (no expiry), _7 (>= expiry), _11 (the token alone): the hold
    # counted as the holder's when it had run out. Taken a minute before the slot ends, it
    # runs out after the slot does; at that instant nobody may book.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    with time_machine.travel(slots[0].ends_at - timedelta(minutes=1), tick=False):
        held = hold(db, tenant, slots[0])
    assert held.expires_at > slots[0].ends_at
    with time_machine.travel(held.expires_at, tick=False), pytest.raises(Conflict) as refused:
        book(db, tenant, slots[0], patient, hold_token=held.token)
    assert refused.value.detail == "this slot is already over; please choose a later one"


def test_an_offer_books_only_the_slot_it_holds_while_it_holds_it(db: Database, ident: Any) -> None:
    # x__held_for__mutmut_22 (any live hold was the offer's), _21 (an offer past its time
    # still held the slot). Only waitlist.accept passes an offer, after checking it, so
    # this calls booking's own guard directly.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    hold(db, tenant, slots[0])
    with pytest.raises(Conflict):
        book(db, tenant, slots[0], patient, waitlist_lock_id=uuid.uuid4())
    line = waiting(db, ident)
    cancel(db, ident, line.tenant, line.booked.id)
    (offer,) = offers(db, line.tenant)
    with time_machine.travel(line.slot.ends_at, tick=False), pytest.raises(Conflict):
        book(db, line.tenant, line.slot, line.people[1], waitlist_lock_id=offer.id)


def test_booking_for_an_unknown_patient_names_the_id(db: Database, ident: Any) -> None:
    # x__patient__mutmut_10: the 404's words were never read.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    nobody = SimpleNamespace(id=uuid.uuid4())
    with pytest.raises(NotFound) as refused:
        book(db, tenant, slots[0], nobody)
    assert refused.value.detail == f"no patient with id {nobody.id}"


def test_a_hold_taken_after_an_offer_lapsed_outlives_the_offer_sweeper(
    db: Database, ident: Any
) -> None:
    # x_hold__mutmut_26 to _28: the lapsed offer's mark stayed on the slot, so the offer
    # sweeper freed the new holder's slot and offered it on.
    line = waiting(db, ident)
    cancel(db, ident, line.tenant, line.booked.id)
    (offer,) = offers(db, line.tenant)
    with time_machine.travel(offer.expires_at + timedelta(seconds=1), tick=False):
        held = hold(db, line.tenant, line.slot)
        ctx, sweeper = ctx_for(line.tenant.id), waitlist.Offers(ident.cipher, OFFER_FOR)
        with transaction(db, ctx) as session:
            assert waitlist.lapse_offers(session, ctx, sweeper) == 1
            status = session.scalar(select(Slot.status).where(Slot.id == line.slot.id))
        assert status == "held"
        appointment = book(db, line.tenant, line.slot, line.people[0], hold_token=held.token)
    assert appointment.slot_id == line.slot.id


def _slot(db: Database, tenant: Tenant, slot_id: uuid.UUID) -> Slot:
    with clinic_session(db, tenant.id) as session:
        return session.execute(select(Slot).where(Slot.id == slot_id)).scalar_one()


def test_a_booking_is_audited_with_its_slot_patient_and_channel(db: Database, ident: Any) -> None:
    # x_book__mutmut_94, _100, _106, _109 to _116: the create event's diff was never read.
    # (_105, diff_of(None, ...), is equivalent: a missing "before" is taken as empty.)
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    booked = book(db, tenant, slots[0], patient, channel="phone")
    (event,) = [e for e in events_of(db, tenant.id) if e.entity_collection == "appointments"]
    assert (event.action, event.entity_id, event.to_state) == ("create", booked.id, "confirmed")
    assert event.diff == {
        "added": {"slotId": str(slots[0].id), "patientId": str(patient.id), "channel": "phone"},
        "updated": {},
        "removed": {},
    }


def test_a_follow_up_of_another_patients_visit_is_refused_by_field_and_reason(
    db: Database, ident: Any
) -> None:
    # x_book__mutmut_22, _25, _28, _29: only the field's name was matched, anywhere in the text.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    patient, stranger = patients(db, ident, tenant, 2)
    first = book(db, tenant, slots[0], patient)
    with pytest.raises(InvalidInput) as refused:
        book(db, tenant, slots[1], stranger, follow_up_for=first.id)
    assert refused.value.errors == [FieldError("followUpFor", "is another patient's appointment")]
    assert _slot(db, tenant, slots[1].id).status == "free"


def test_a_patient_barred_online_is_told_to_call_the_clinic(db: Database, ident: Any) -> None:
    # x_book__mutmut_9, _10: the words of the refusal were read only on the reschedule path.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    barred = make_patient(db, ident, tenant, flags={"blocked": True})
    with pytest.raises(Forbidden) as refused:
        book(db, tenant, slots[0], barred, online=True)
    assert refused.value.detail == "this patient cannot book online; please call the clinic"
    assert _slot(db, tenant, slots[0].id).status == "free"


def test_booking_a_held_slot_leaves_no_trace_of_the_hold(db: Database, ident: Any) -> None:
    # x_take_slot__mutmut_36, _37, _49 to _51: the booked slot kept its hold's expiry and
    # token hash, so the hold outlived the booking.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    held = hold(db, tenant, slots[0])
    assert "holdHash" in _slot(db, tenant, slots[0].id).meta
    book(db, tenant, slots[0], patient, hold_token=held.token)
    taken = _slot(db, tenant, slots[0].id)
    assert (taken.status, taken.hold_expires_at) == ("booked", None)
    assert not {"holdHash", "waitlistLock"} & taken.meta.keys()


def test_accepting_an_offer_clears_the_offers_mark_from_the_slot(db: Database, ident: Any) -> None:
    # x_take_slot__mutmut_37, _53 to _55: the booked slot kept the offer's lock id.
    line = waiting(db, ident)
    cancel(db, ident, line.tenant, line.booked.id)
    (offer,) = offers(db, line.tenant)
    assert _slot(db, line.tenant, line.slot.id).meta["waitlistLock"] == str(offer.id)
    book(db, line.tenant, line.slot, line.people[1], waitlist_lock_id=offer.id)
    taken = _slot(db, line.tenant, line.slot.id)
    assert (taken.status, taken.hold_expires_at) == ("booked", None)
    assert "waitlistLock" not in taken.meta


def test_a_booked_slot_is_not_claimable_even_with_a_stale_hold_expiry(
    db: Database, ident: Any
) -> None:
    # x_claimable__mutmut_14: only a *held* slot past its expiry may be taken. Every write
    # clears the expiry when a slot leaves "held", so this writes the state a slip there
    # would leave, to show the status check is the guard that stops a second booking.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    patient, other = patients(db, ident, tenant, 2)
    book(db, tenant, slots[0], patient)
    with clinic_session(db, tenant.id) as session:
        unaudited(session)
        session.execute(
            update(Slot)
            .where(Slot.id == slots[0].id)
            .values(hold_expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    with pytest.raises(Conflict) as refused:
        book(db, tenant, slots[0], other)
    assert refused.value.detail == "this slot is already booked; please choose another"


# --------------------------------------------------------------------------- near duplicates


def _desk_api(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def _desk_books(
    client: Any, db: Database, ident: Any, tenant: Tenant, slot: Slot, patient: Any
) -> Any:
    """The desk's booking over the API, which warns of a near duplicate (409)."""
    return client.post(
        "/api/v1/appointments",
        json={"slotId": str(slot.id), "patientId": str(patient.id), "visitType": "consultation"},
        headers=_desk_api(db, ident, tenant),
    )


def test_moving_an_appointment_a_slot_later_is_not_refused_as_a_near_duplicate(
    client: Any, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    (patient,) = patients(db, ident, tenant, 1)
    first = book(db, tenant, slots[0], patient)  # 9:00
    moved = client.post(
        f"/api/v1/appointments/{first.id}/reschedule",
        json={"slotId": str(slots[1].id)},  # 9:15, same doctor
        headers=_desk_api(db, ident, tenant),
    )
    assert moved.status_code == 201, moved.text


def test_a_near_duplicate_names_every_nearby_time_earliest_first(
    client: Any, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 3)
    (patient,) = patients(db, ident, tenant, 1)
    book(db, tenant, slots[2], patient)  # 9:30, made first
    book(db, tenant, slots[0], patient)  # 9:00 (the factory books without the check)
    refused = _desk_books(client, db, ident, tenant, slots[1], patient)
    assert refused.status_code == 409
    assert "with this doctor at 9:00 am, 9:30 am on " in refused.json()["detail"]


def test_an_appointment_starting_30_minutes_after_the_new_one_ends_is_not_near(
    client: Any, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 4)
    (patient,) = patients(db, ident, tenant, 1)
    book(db, tenant, slots[3], patient)  # 9:45; the new one ends at 9:15
    booked = _desk_books(client, db, ident, tenant, slots[0], patient)
    assert booked.status_code == 201, booked.text


def test_a_near_duplicate_gives_the_times_on_the_clinics_clock(
    client: Any, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    (patient,) = patients(db, ident, tenant, 1)
    book(db, tenant, slots[0], patient)  # 9:00 in India
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        tenants.update_tenant(
            session, ctx, tenant_id=tenant.id, changes=TenantUpdate(timezone="Asia/Dubai")
        )
    refused = _desk_books(client, db, ident, tenant, slots[1], patient)
    assert refused.status_code == 409
    # 9:00 am in India is 7:30 am in Dubai, where the clinic now says it is
    assert "with this doctor at 7:30 am on " in refused.json()["detail"]


def test_a_hold_token_that_is_no_longer_the_slots_still_books_it_when_it_is_free(
    db: Database, ident: Any
) -> None:
    # x_take_slot__mutmut_12/_14: with a token, only the token's hold counted, so a patient
    # whose hold was swept (or who sent a stale token) was refused a slot anyone may book.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    booked = book(db, tenant, slots[0], patient, hold_token="a-token-of-no-hold")
    assert booked.slot_id == slots[0].id
