"""Every state machine, tested from its own table.

For each machine and every (from, to) pair of its statuses, a row is put in ``from``
(written around the services on purpose: no service makes a row in any state) and
:func:`opdesk.states.transition` asked to move it to ``to``:

* a move the table forbids is refused with 409 naming both states, and changes nothing:
  not the row, not the audit trail (the transaction still commits cleanly);
* a move it allows sets the status, stamps the timeline column of ``to`` (and ``touch``)
  and records exactly one audit event with from/to.

A new machine needs one row maker in :data:`BLANKS`; the first test fails until it has one.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import count
from typing import Any, get_args

import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.orm import Session

from opdesk import records, states
from opdesk.automation.models import AutomationEvent
from opdesk.consents import service as consents
from opdesk.consents.models import Consent, ConsentStatus
from opdesk.db import Base, Database, new_id
from opdesk.documents.models import ShareLink
from opdesk.identity.service import Identity
from opdesk.models import load_all_models
from opdesk.notifications.models import OutboxMessage
from opdesk.scheduling.models import (
    APPOINTMENT,
    Appointment,
    AppointmentStatus,
    Slot,
    SlotStatus,
    WaitlistEntry,
    WaitlistLock,
)
from opdesk.scheduling.schemas import StaffTarget
from opdesk.states import IllegalTransition, Machine
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import ctx_for, make_doctor, make_document, make_tenant, unaudited

load_all_models()
MACHINES = {m.entity: m for m in states.machines()}

NOW = datetime(2030, 1, 7, 5, 0, tzinfo=UTC)  # the frozen clock of every move
EARLIER = NOW - timedelta(days=1)  # when rows were made, and earlier moves stamped


@dataclass(frozen=True)
class World:
    """One clinic with what the rows point at: a doctor, a patient, a document, a consent
    text and a waitlist entry.
    """

    tenant: Tenant
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    document_id: uuid.UUID
    template_id: uuid.UUID
    entry_id: uuid.UUID


@pytest.fixture(scope="module")
def world(db: Database, ident: Identity) -> World:
    tenant = make_tenant(db, "Machine Clinic")
    doctor = make_doctor(db, ident, tenant)
    document = make_document(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        template = consents.add_template(
            session, ctx, type_="treatment", title="Treatment", body="I agree to be treated here."
        )
        unaudited(session)
        entry = _entry(tenant.id, doctor.id, document.owner_id)
        session.add(entry)
    return World(tenant, doctor.id, document.owner_id, document.id, template.id, entry.id)


# ------------------------------------------------------------------ a row of each table

_minutes = count()


def _slot(w: World) -> Slot:
    """A slot of its own quarter hour (slots of one doctor never overlap)."""
    starts = NOW + timedelta(days=30, minutes=15 * next(_minutes))
    ends = starts + timedelta(minutes=15)
    return Slot(
        tenant_id=w.tenant.id,
        id=new_id(),
        doctor_id=w.doctor_id,
        date=starts.date(),
        starts_at=starts,
        ends_at=ends,
        occupied_from=starts,
        occupied_until=ends,
        meta={"visitType": ["consultation"]},
    )


def _entry(tenant_id: uuid.UUID, doctor_id: uuid.UUID, patient_id: uuid.UUID) -> WaitlistEntry:
    day = (NOW + timedelta(days=30)).date()
    return WaitlistEntry(
        tenant_id=tenant_id,
        id=new_id(),
        patient_id=patient_id,
        doctor_id=doctor_id,
        from_date=day,
        until_date=day,
        visit_type="consultation",
        status="waiting",
        created_at=EARLIER,
    )


def _appointment(session: Session, w: World) -> Appointment:
    return Appointment(
        tenant_id=w.tenant.id,
        id=new_id(),
        patient_id=w.patient_id,
        doctor_id=w.doctor_id,
        slot_id=None,
        visit_type="consultation",
        channel="walk-in",
        timeline_requested_at=EARLIER,
        updated_at=EARLIER,
    )


def _offer(session: Session, w: World) -> WaitlistLock:
    slot = _slot(w)  # one open offer per slot: each offer gets a slot of its own
    slot.status = SlotStatus.HELD
    session.add(slot)
    session.flush()
    return WaitlistLock(
        tenant_id=w.tenant.id,
        id=new_id(),
        slot_id=slot.id,
        patient_id=w.patient_id,
        entry_id=w.entry_id,
        expires_at=NOW + timedelta(minutes=15),
        created_at=EARLIER,
    )


def _consent(session: Session, w: World) -> Consent:
    return Consent(
        tenant_id=w.tenant.id,
        id=new_id(),
        patient_id=w.patient_id,
        type="treatment",
        version=1,
        template_id=w.template_id,
        text_hash="0" * 64,
        file_id=w.document_id,
        method="in-clinic",
        signed_by=None,
        signed_at=EARLIER,
    )


def _share_link(session: Session, w: World) -> ShareLink:
    return ShareLink(
        tenant_id=w.tenant.id,
        id=new_id(),
        document_id=w.document_id,
        token_hash=secrets.token_bytes(32),
        expires_at=NOW + timedelta(days=7),
        created_at=EARLIER,
    )


def _message(session: Session, w: World) -> OutboxMessage:
    return OutboxMessage(
        tenant_id=w.tenant.id,
        id=new_id(),
        channel="sms",
        template="test",
        recipient=b"ciphertext",
        payload=b"ciphertext",
        attempts=0,
        created_at=EARLIER,
    )


def _event(session: Session, w: World) -> AutomationEvent:
    return AutomationEvent(
        tenant_id=w.tenant.id,
        id=new_id(),
        rule="demo.check",
        entity_ref_type="patients",
        entity_ref_id=w.patient_id,
        scheduled_for=NOW + timedelta(days=1),
        attempts=0,
        dedupe_key=f"machine:{new_id()}",
        payload={},
        created_at=EARLIER,
        updated_at=EARLIER,
    )


def _order(session: Session, w: World) -> Any:
    """An order on a draft visit of a walk-in of its own."""
    from opdesk.clinical.models import Order, Visit, VisitStatus

    appointment = _appointment(session, w)
    appointment.status = AppointmentStatus.IN_CONSULT
    session.add(appointment)
    session.flush()
    visit = Visit(
        tenant_id=w.tenant.id,
        id=new_id(),
        appointment_id=appointment.id,
        patient_id=w.patient_id,
        doctor_id=w.doctor_id,
        status=VisitStatus.DRAFT,
        created_at=EARLIER,
        updated_at=EARLIER,
    )
    session.add(visit)
    session.flush()
    return Order(
        tenant_id=w.tenant.id,
        id=new_id(),
        visit_id=visit.id,
        patient_id=w.patient_id,
        doctor_id=w.doctor_id,
        type="lab",
        items=[{"name": "CBC", "code": None, "panel": None}],
        status_timeline_ordered_at=EARLIER,
        created_at=EARLIER,
        updated_at=EARLIER,
    )


def _invoice(session: Session, w: World) -> Any:
    from opdesk.billing.models import Invoice

    return Invoice(
        tenant_id=w.tenant.id,
        id=new_id(),
        patient_id=w.patient_id,
        line_items=[],
        subtotal=0,
        tax_total=0,
        discount_total=0,
        grand_total=0,
        balance_due=0,
        cgst_total=0,
        sgst_total=0,
        igst_total=0,
        amount_paid=0,
        amount_refunded=0,
        amount_credited=0,
        inter_state=False,
        payments_applied=[],
        created_at=EARLIER,
        updated_at=EARLIER,
    )


def _payment(session: Session, w: World) -> Any:
    from opdesk.billing.models import Payment

    invoice = _invoice(session, w)
    invoice.status = "issued"
    invoice.number = f"M/{invoice.id.hex[:12]}"
    invoice.issued_at = EARLIER
    session.add(invoice)
    session.flush()
    return Payment(
        tenant_id=w.tenant.id,
        id=new_id(),
        invoice_id=invoice.id,
        patient_id=w.patient_id,
        method="link",
        amount=100,
        amount_refunded=0,
        ledger_impact=[],
        created_at=EARLIER,
        updated_at=EARLIER,
    )


def _settled_invoice(row: Any, state: str) -> dict[str, Any]:
    """An invoice out of draft has a number and an issue date (CHECK constraints)."""
    if state == "draft":
        return {}
    return {"number": f"M/{row.id.hex[:12]}", "issued_at": EARLIER}


def _captured_payment(row: Any, state: str) -> dict[str, Any]:
    """A payment holding money has a capture time (a CHECK constraint)."""
    return {"captured_at": EARLIER} if state in ("captured", "partial", "refunded") else {}


# Table -> a new row of it, in no particular state yet.
BLANKS: dict[str, Callable[[Session, World], Any]] = {
    "appointments": _appointment,
    "slots": lambda session, w: _slot(w),
    "waitlist_entries": lambda session, w: _entry(w.tenant.id, w.doctor_id, w.patient_id),
    "waitlist_locks": _offer,
    "consents": _consent,
    "documents_share_links": _share_link,
    "notifications_outbox": _message,
    "automation_events": _event,
    "orders": _order,
    "invoices": _invoice,
    "payments": _payment,
}

# Table -> what a row in a state holds besides its status and timeline (the schema asks for
# it): the columns put_in sets for the row's state, and a move sets for the state it enters.
IN_STATE: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "invoices": _settled_invoice,
    "payments": _captured_payment,
}


def _nothing(row: Any, state: str) -> dict[str, Any]:
    return {}


def put_in(db: Database, w: World, machine: Machine[Any], state: str) -> uuid.UUID:
    """A new row in ``state``, written around the services."""
    with transaction(db, ctx_for(w.tenant.id)) as session:
        unaudited(session)
        row = BLANKS[machine.entity](session, w)
        if machine.stored:
            row.status = state
            for column, value in IN_STATE.get(machine.entity, _nothing)(row, state).items():
                setattr(row, column, value)
        else:  # the state is the timeline: stamp the column of ``state`` only
            for column in machine.timeline.values():
                setattr(row, column, None)
            if state in machine.timeline:
                setattr(row, machine.timeline[machine.states(state)], EARLIER)
        session.add(row)
        session.flush()
        assert machine.state_of(row) == state
        made: uuid.UUID = row.id
        return made


def snapshot(db: Database, w: World, model: type[Any], row_id: uuid.UUID) -> dict[str, Any]:
    """Every column of the row as the database has it."""
    with transaction(db, ctx_for(w.tenant.id)) as session:
        row = records.by_id(session, model, row_id)
        return {c.key: getattr(row, c.key) for c in inspect(model).column_attrs}


def trail(db: Database, w: World, row_id: uuid.UUID) -> list[tuple[str, str, str]]:
    with transaction(db, ctx_for(w.tenant.id)) as session:
        rows = session.execute(
            text(
                "select action, from_state, to_state from audit_events "
                "where entity_id = :id order by seq"
            ),
            {"id": row_id},
        ).all()
    return [(r.action, r.from_state, r.to_state) for r in rows]


def every_pair() -> list[Any]:
    return [
        pytest.param(
            m, a, b, id=f"{m.entity}:{a}->{b}:{'allowed' if m.allows(a, b) else 'refused'}"
        )
        for m in MACHINES.values()
        for a, b in m.pairs()
    ]


# ------------------------------------------------------------------ the generated tests


def test_every_machine_has_a_row_maker_and_a_complete_table() -> None:
    assert set(MACHINES) == set(BLANKS)
    for machine in MACHINES.values():
        statuses: type[StrEnum] = machine.states
        assert set(machine.moves) == set(statuses)


@pytest.mark.parametrize(("machine", "from_", "to"), every_pair())
def test_every_move_is_checked_against_its_table(
    db: Database, world: World, machine: Machine[Any], from_: str, to: str
) -> None:
    row_id = put_in(db, world, machine, from_)
    before = snapshot(db, world, machine.model, row_id)
    ctx = ctx_for(world.tenant.id, clock=lambda: NOW)
    with transaction(db, ctx) as session:
        row = records.by_id(session, machine.model, row_id)  # not locked: the move locks it
        if not machine.allows(from_, to):
            with pytest.raises(IllegalTransition) as refused:
                states.transition(session, ctx, row, to, machine)
            assert refused.value.status == 409
            assert (refused.value.from_state, refused.value.to_state) == (from_, to)
            assert from_ in refused.value.detail
            if "{to}" in machine.refusal:
                assert to in refused.value.detail
            assert not session.dirty and not ctx.pending_audit
        else:
            needed = {
                column: value
                for column, value in IN_STATE.get(machine.entity, _nothing)(row, to).items()
                if getattr(row, column) is None
            }
            if needed:  # locked first: the lock reads the row afresh (and would flush these)
                records.lock(session, row)
                for column, value in needed.items():
                    setattr(row, column, value)
            left = states.transition(session, ctx, row, to, machine)
            assert left == from_
    after = snapshot(db, world, machine.model, row_id)
    if not machine.allows(from_, to):
        assert after == before
        assert trail(db, world, row_id) == []
        return
    stamped = {
        **needed,
        **({"status": to} if machine.stored else {}),
        **({machine.timeline[machine.states(to)]: NOW} if to in machine.timeline else {}),
        **({machine.touch: NOW} if machine.touch else {}),
    }
    assert after == {**before, **stamped}
    assert trail(db, world, row_id) == [("state-transition", from_, to)]


def test_an_unknown_status_is_refused_naming_both(db: Database, world: World) -> None:
    row_id = put_in(db, world, APPOINTMENT, AppointmentStatus.CONFIRMED)
    ctx = ctx_for(world.tenant.id)
    with transaction(db, ctx) as session:
        row = records.by_id(session, Appointment, row_id)
        with pytest.raises(IllegalTransition, match="from confirmed to seen-by-doctor"):
            states.transition(session, ctx, row, "seen-by-doctor", APPOINTMENT)
    assert trail(db, world, row_id) == []


def test_a_row_loaded_before_another_move_is_read_again_under_the_lock(
    db: Database, world: World
) -> None:
    """Two desks open the same appointment; the second check-in is refused, not repeated."""
    row_id = put_in(db, world, APPOINTMENT, AppointmentStatus.CONFIRMED)
    ctx = ctx_for(world.tenant.id)
    with transaction(db, ctx) as first:
        stale = records.by_id(first, Appointment, row_id)
        other = ctx_for(world.tenant.id)
        with transaction(db, other) as second:
            row = records.by_id(second, Appointment, row_id)
            states.transition(second, other, row, AppointmentStatus.CHECKED_IN, APPOINTMENT)
        assert stale.status == AppointmentStatus.CONFIRMED
        with pytest.raises(IllegalTransition, match="from checked-in to checked-in"):
            states.transition(first, ctx, stale, AppointmentStatus.CHECKED_IN, APPOINTMENT)
    assert trail(db, world, row_id) == [("state-transition", "confirmed", "checked-in")]


def test_of_concurrent_moves_of_one_row_exactly_one_wins(db: Database, world: World) -> None:
    row_id = put_in(db, world, APPOINTMENT, AppointmentStatus.CONFIRMED)
    start = threading.Barrier(6, timeout=60)
    outcomes: list[str] = []

    def move() -> None:
        ctx = ctx_for(world.tenant.id)
        try:
            with transaction(db, ctx) as session:
                row = records.by_id(session, Appointment, row_id)
                start.wait()
                states.transition(session, ctx, row, AppointmentStatus.CANCELLED, APPOINTMENT)
            outcomes.append("moved")
        except IllegalTransition as refused:
            outcomes.append(refused.detail)

    threads = [threading.Thread(target=move) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["an appointment cannot go from cancelled to cancelled"] * 5 + [
        "moved"
    ]
    assert trail(db, world, row_id) == [("state-transition", "confirmed", "cancelled")]


def test_a_row_locked_by_this_transaction_is_not_locked_again(db: Database, world: World) -> None:
    """``by_id(lock=True)`` then a move: one ``FOR UPDATE``. A lock taken in a savepoint that
    rolled back was released, so the move takes it again.
    """
    ids = [put_in(db, world, APPOINTMENT, AppointmentStatus.CONFIRMED) for _ in range(2)]
    locks: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FOR UPDATE" in statement:
            locks.append(statement)

    ctx = ctx_for(world.tenant.id)
    event.listen(db.app_engine, "before_cursor_execute", note)
    try:
        with transaction(db, ctx) as session:
            row = records.by_id(session, Appointment, ids[0], lock=True)
            states.transition(session, ctx, row, AppointmentStatus.CHECKED_IN, APPOINTMENT)
            assert len(locks) == 1
            with pytest.raises(RuntimeError), session.begin_nested():
                other = records.by_id(session, Appointment, ids[1], lock=True)
                raise RuntimeError("the savepoint rolls back")
            assert not records.holds_lock(session, other)
            states.transition(session, ctx, other, AppointmentStatus.NO_SHOW, APPOINTMENT)
            assert len(locks) == 3
    finally:
        event.remove(db.app_engine, "before_cursor_execute", note)


def test_the_database_knows_the_same_statuses(db: Database) -> None:
    """Each stored status column's CHECK lists exactly its enum's values."""
    with db.owner_engine.connect() as conn:
        for machine in MACHINES.values():
            if not machine.stored:
                continue
            definition = conn.execute(
                text("select pg_get_constraintdef(oid) from pg_constraint where conname = :n"),
                {"n": f"ck_{machine.entity}_status_known"},
            ).scalar_one()
            statuses: type[StrEnum] = machine.states
            assert all(f"'{s}'" in definition for s in statuses), definition
            assert definition.count("'") == 2 * len(statuses), definition


def test_a_machine_with_a_gap_in_its_table_is_refused_at_import() -> None:
    with pytest.raises(ValueError, match="no row in the table for refunded"):
        Machine[AppointmentStatus](
            Appointment,
            AppointmentStatus,
            {s: set() for s in AppointmentStatus if s != AppointmentStatus.REFUNDED},
            noun="an appointment",
        )
    with pytest.raises(ValueError, match="no column timeline_paid_at"):
        Machine[AppointmentStatus](
            Appointment,
            AppointmentStatus,
            {s: set() for s in AppointmentStatus},
            noun="an appointment",
            timeline={AppointmentStatus.COMPLETED: "timeline_paid_at"},
        )
    with pytest.raises(ValueError, match="a derived status needs a timeline for revoked"):
        Machine(
            Consent,
            ConsentStatus,
            {ConsentStatus.SIGNED: {ConsentStatus.REVOKED}, ConsentStatus.REVOKED: set()},
            noun="a consent",
            stored=False,
        )
    assert len(states.machines()) == len(MACHINES)  # the refused ones were not added


def test_staff_targets_and_models_use_the_enums() -> None:
    assert set(get_args(StaffTarget)) <= set(AppointmentStatus)
    for machine in MACHINES.values():
        if machine.stored:
            column = Base.metadata.tables[machine.entity].c.status
            assert column.type.python_type is machine.states
