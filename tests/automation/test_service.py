"""Scheduling automation events: once per dedupe key, moved, cancelled, retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from opdesk.automation import service
from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.db import Database, new_id
from opdesk.errors import NotFound
from opdesk.states import IllegalTransition
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import ctx_for, events_of
from tests.factories.automation import event_of, make_event

WHEN = datetime(2031, 3, 4, 3, 30, tzinfo=UTC)


def _count(db: Database, tenant: Tenant, dedupe_key: str) -> int:
    with transaction(db, ctx_for(tenant.id)) as session:
        return session.execute(
            select(func.count())
            .select_from(AutomationEvent)
            .where(AutomationEvent.dedupe_key == dedupe_key)
        ).scalar_one()


def test_scheduling_twice_makes_one_row(db: Database, tenant: Tenant) -> None:
    entity = new_id()
    first = make_event(db, tenant.id, entity_id=entity, when=WHEN, dedupe_key="reminder:1")
    again = make_event(db, tenant.id, entity_id=entity, when=WHEN, dedupe_key="reminder:1")
    assert again.id == first.id
    assert _count(db, tenant, "reminder:1") == 1
    created = [e for e in events_of(db, tenant.id) if e.entity_collection == "automation_events"]
    assert [(e.action, e.entity_id) for e in created] == [("create", first.id)]


def test_scheduling_again_at_another_time_moves_the_pending_event(
    db: Database, tenant: Tenant
) -> None:
    first = make_event(db, tenant.id, when=WHEN, dedupe_key="reminder:moved")
    later = WHEN + timedelta(days=1)
    moved = make_event(db, tenant.id, when=later, dedupe_key="reminder:moved")
    assert moved.id == first.id
    assert event_of(db, tenant.id, first.id).scheduled_for == later
    trail = [e for e in events_of(db, tenant.id) if e.entity_id == first.id]
    assert [e.action for e in trail] == ["create", "update"]


def test_several_rules_at_once_make_new_ones_and_move_the_one_already_there(
    db: Database, tenant: Tenant
) -> None:
    entity = new_id()
    old = make_event(db, tenant.id, entity_id=entity, when=WHEN, dedupe_key=f"b:{entity}")
    later = WHEN + timedelta(hours=3)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        events = service.schedule_all(
            session,
            ctx,
            entity_type="appointments",
            entity_id=entity,
            when_by_rule={"a": WHEN, "b": later, "c": later},
            key_of=lambda rule: f"{rule}:{entity}",
        )
    by_key = {e.dedupe_key: e for e in events}
    assert set(by_key) == {f"a:{entity}", f"b:{entity}", f"c:{entity}"}
    assert by_key[f"b:{entity}"].id == old.id
    assert event_of(db, tenant.id, old.id).scheduled_for == later
    assert event_of(db, tenant.id, by_key[f"a:{entity}"].id).scheduled_for == WHEN
    trail = [e for e in events_of(db, tenant.id) if e.entity_collection == "automation_events"]
    created = {e.entity_id for e in trail if e.action == "create"}
    assert created == {old.id, by_key[f"a:{entity}"].id, by_key[f"c:{entity}"].id}
    assert [e.entity_id for e in trail if e.action == "update"] == [old.id]


def test_several_rules_need_times_with_a_zone(db: Database, tenant: Tenant) -> None:
    ctx = ctx_for(tenant.id)
    with pytest.raises(ValueError, match="time zone"), transaction(db, ctx) as session:
        service.schedule_all(
            session,
            ctx,
            entity_type="appointments",
            entity_id=new_id(),
            when_by_rule={"a": WHEN, "b": WHEN.replace(tzinfo=None)},
            key_of=str,
        )


def test_the_same_key_in_two_clinics_is_two_events(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = make_event(db, tenant.id, when=WHEN, dedupe_key="reminder:shared")
    theirs = make_event(db, other_tenant.id, when=WHEN, dedupe_key="reminder:shared")
    assert mine.id != theirs.id


def test_cancel_for_cancels_the_entitys_pending_events_of_the_rules_named(
    db: Database, tenant: Tenant
) -> None:
    entity = new_id()
    a = make_event(db, tenant.id, entity_id=entity, when=WHEN, rule="reminder-24h")
    b = make_event(db, tenant.id, entity_id=entity, when=WHEN, rule="reminder-2h")
    other = make_event(db, tenant.id, when=WHEN, rule="reminder-24h")
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        done = service.cancel_for(
            session, ctx, entity_type="stand-ins", entity_id=entity, rules=["reminder-24h"]
        )
    assert done == 1
    assert event_of(db, tenant.id, a.id).status == EventStatus.CANCELLED
    assert event_of(db, tenant.id, b.id).status == EventStatus.PENDING
    with transaction(db, ctx) as session:
        assert service.cancel_for(session, ctx, entity_type="stand-ins", entity_id=entity) == 1
        assert service.cancel_for(session, ctx, entity_type="stand-ins", entity_id=entity) == 0
    assert event_of(db, tenant.id, b.id).status == EventStatus.CANCELLED
    assert event_of(db, tenant.id, other.id).status == EventStatus.PENDING
    moves = [(e.from_state, e.to_state) for e in events_of(db, tenant.id) if e.entity_id == a.id]
    assert moves == [(None, None), ("pending", "cancelled")]


def test_another_clinic_cannot_cancel_or_retry_an_event(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    entity = new_id()
    event = make_event(db, tenant.id, entity_id=entity, when=WHEN)
    ctx = ctx_for(other_tenant.id)
    with transaction(db, ctx) as session:
        assert service.cancel_for(session, ctx, entity_type="stand-ins", entity_id=entity) == 0
        with pytest.raises(NotFound):
            service.retry(session, ctx, event.id)
    assert event_of(db, tenant.id, event.id).status == EventStatus.PENDING


def test_only_a_failed_event_can_be_retried(db: Database, tenant: Tenant) -> None:
    event = make_event(db, tenant.id, when=WHEN)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session, pytest.raises(IllegalTransition, match="pending"):
        service.retry(session, ctx, event.id)
    with transaction(db, ctx) as session, pytest.raises(NotFound):
        service.retry(session, ctx, new_id())


def test_a_time_without_a_zone_is_refused(db: Database, tenant: Tenant) -> None:
    with pytest.raises(ValueError, match="time zone"):
        make_event(db, tenant.id, when=datetime(2031, 3, 4, 9, 0))
