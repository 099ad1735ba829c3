"""Walk a tenant's audit chains, lane by lane, and name the first event that does not fit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, text

from opdesk.audit.models import GENESIS_HASH
from opdesk.audit.service import link_hash
from opdesk.db import set_tenant_setting

_COLUMNS = (
    "tenant_id, id, lane, seq, ts, actor_id, actor_role, entity_collection, entity_id, action, "
    "from_state, to_state, diff, request_id, ip, user_agent, prev_hash, hash"
)


@dataclass(frozen=True)
class ChainReport:
    tenant_id: uuid.UUID
    checked: int
    ok: bool
    problem: str | None = None
    bad_event_id: uuid.UUID | None = None
    bad_seq: int | None = None
    bad_lane: int = 0

    def describe(self) -> str:
        if self.ok:
            return f"tenant {self.tenant_id}: ok, {self.checked} events"
        event = f" (event {self.bad_event_id})" if self.bad_event_id else ""
        lane = f" of lane {self.bad_lane}" if self.bad_lane else ""
        where = f" at seq {self.bad_seq}{lane}{event}" if self.bad_seq is not None else ""
        return f"tenant {self.tenant_id}: BROKEN{where}: {self.problem}"


@dataclass
class _Lane:
    """How far the walk of one lane got: the last seq and hash it accepted."""

    number: int
    seq: int = 0
    hash: str = GENESIS_HASH


def verify_tenant(conn: Connection, tenant_id: uuid.UUID, batch: int = 2000) -> ChainReport:
    """Check every link of each of the tenant's lanes, then each lane's stored head.

    Detects edited fields (hash differs), deleted events (sequence gap or prev-hash
    mismatch; a deleted tail is caught by the head), inserted events and reordering.
    """
    set_tenant_setting(conn, tenant_id)
    heads = _heads(conn, tenant_id)
    lane, checked = _Lane(0), 0
    query = text(
        f"select {_COLUMNS} from audit_events where tenant_id = :t order by lane, seq, id"  # noqa: S608
    )
    result = conn.execute(query.execution_options(yield_per=batch), {"t": tenant_id})
    for row in result.mappings():
        if row["lane"] != lane.number:
            report = _check_head(tenant_id, lane, heads.pop(lane.number, None), checked)
            if report is not None:
                result.close()
                return report
            lane = _Lane(row["lane"])
        report = _check_link(tenant_id, dict(row), lane, checked)
        if report is not None:
            result.close()
            return report
        lane.seq, lane.hash, checked = lane.seq + 1, row["hash"], checked + 1
    # The last lane walked, then every head whose lane holds no event at all.
    ends = [(lane, heads.pop(lane.number, None))]
    ends += [(_Lane(number), head) for number, head in sorted(heads.items())]
    for walked, head in ends:
        report = _check_head(tenant_id, walked, head, checked)
        if report is not None:
            return report
    return ChainReport(tenant_id, checked, True)


def _heads(conn: Connection, tenant_id: uuid.UUID) -> dict[int, tuple[int, str]]:
    rows = conn.execute(
        text("select lane, last_seq, last_hash from audit_chain_heads where tenant_id = :t"),
        {"t": tenant_id},
    )
    return {lane: (seq, last) for lane, seq, last in rows}


def _check_link(
    tenant_id: uuid.UUID, row: dict[str, object], lane: _Lane, checked: int
) -> ChainReport | None:
    def broken(problem: str) -> ChainReport:
        return ChainReport(
            tenant_id,
            checked,
            False,
            problem,
            row["id"],  # type: ignore[arg-type]
            row["seq"],  # type: ignore[arg-type]
            lane.number,
        )

    expected_seq = lane.seq + 1
    if row["seq"] != expected_seq:
        return broken(f"expected seq {expected_seq}: an event is missing, added or moved")
    if row["prev_hash"] != lane.hash:
        return broken("prev_hash does not match the previous event: chain re-ordered or cut")
    if link_hash(lane.hash, row) != row["hash"]:
        return broken("content does not match its hash: the event was edited")
    return None


def _check_head(
    tenant_id: uuid.UUID, lane: _Lane, head: tuple[int, str] | None, checked: int
) -> ChainReport | None:
    """None when the lane's stored head is where the walk of its events ended."""
    head_seq, head_hash = head if head else (0, GENESIS_HASH)
    if (head_seq, head_hash) == (lane.seq, lane.hash):
        return None
    if head_seq == lane.seq:
        why = "the last event's hash differs from the head's: the last event or the head was edited"
        first_bad = lane.seq
    else:
        why = "events were removed from or added to the end"
        first_bad = min(lane.seq, head_seq) + 1  # the first seq the two disagree about
    chain = f"lane {lane.number}" if lane.number else "chain"
    problem = f"{chain} ends at seq {lane.seq} but its head records seq {head_seq}: {why}"
    return ChainReport(tenant_id, checked, False, problem, None, first_bad, lane.number)


def verify_all(conn: Connection, tenant: uuid.UUID | None = None) -> list[ChainReport]:
    """Reports for one tenant or for every tenant, including soft-deleted ones."""
    if tenant is not None:
        ids = [tenant]
    else:
        ids = list(conn.execute(text("select id from tenants order by created_at, id")).scalars())
    return [verify_tenant(conn, t) for t in ids]
