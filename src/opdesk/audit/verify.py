"""Walk a tenant's audit chain and name the first event that does not fit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, text

from opdesk.audit.models import GENESIS_HASH
from opdesk.audit.service import link_hash
from opdesk.db import set_tenant_setting

_COLUMNS = (
    "tenant_id, id, seq, ts, actor_id, actor_role, entity_collection, entity_id, action, "
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

    def describe(self) -> str:
        if self.ok:
            return f"tenant {self.tenant_id}: ok, {self.checked} events"
        event = f" (event {self.bad_event_id})" if self.bad_event_id else ""
        where = f" at seq {self.bad_seq}{event}" if self.bad_seq is not None else ""
        return f"tenant {self.tenant_id}: BROKEN{where}: {self.problem}"


def verify_tenant(conn: Connection, tenant_id: uuid.UUID, batch: int = 2000) -> ChainReport:
    """Check every link of one tenant's chain, then the stored head.

    Detects edited fields (hash differs), deleted events (sequence gap or prev-hash
    mismatch; a deleted tail is caught by the head), inserted events and reordering.
    """
    set_tenant_setting(conn, tenant_id)
    expected_seq, running_hash, checked = 1, GENESIS_HASH, 0
    query = text(f"select {_COLUMNS} from audit_events where tenant_id = :t order by seq, id")  # noqa: S608
    result = conn.execute(query.execution_options(yield_per=batch), {"t": tenant_id})
    for row in result.mappings():
        report = _check_link(tenant_id, dict(row), expected_seq, running_hash, checked)
        if report is not None:
            result.close()
            return report
        expected_seq, running_hash, checked = expected_seq + 1, row["hash"], checked + 1
    return _check_head(conn, tenant_id, expected_seq - 1, running_hash, checked)


def _check_link(
    tenant_id: uuid.UUID,
    row: dict[str, object],
    expected_seq: int,
    running_hash: str,
    checked: int,
) -> ChainReport | None:
    def broken(problem: str) -> ChainReport:
        return ChainReport(
            tenant_id,
            checked,
            False,
            problem,
            row["id"],  # type: ignore[arg-type]
            row["seq"],  # type: ignore[arg-type]
        )

    if row["seq"] != expected_seq:
        return broken(f"expected seq {expected_seq}: an event is missing, added or moved")
    if row["prev_hash"] != running_hash:
        return broken("prev_hash does not match the previous event: chain re-ordered or cut")
    if link_hash(running_hash, row) != row["hash"]:
        return broken("content does not match its hash: the event was edited")
    return None


def _check_head(
    conn: Connection, tenant_id: uuid.UUID, last_seq: int, last_hash: str, checked: int
) -> ChainReport:
    head = conn.execute(
        text("select last_seq, last_hash from audit_chain_heads where tenant_id = :t"),
        {"t": tenant_id},
    ).one_or_none()
    head_seq, head_hash = head if head else (0, GENESIS_HASH)
    if (head_seq, head_hash) == (last_seq, last_hash):
        return ChainReport(tenant_id, checked, True)
    if head_seq == last_seq:
        why = "the last event's hash differs from the head's: the last event or the head was edited"
        first_bad = last_seq
    else:
        why = "events were removed from or added to the end"
        first_bad = min(last_seq, head_seq) + 1  # the first seq the two disagree about
    problem = f"chain ends at seq {last_seq} but its head records seq {head_seq}: {why}"
    return ChainReport(tenant_id, checked, False, problem, None, first_bad)


def verify_all(conn: Connection, tenant: uuid.UUID | None = None) -> list[ChainReport]:
    """Reports for one tenant or for every tenant, including soft-deleted ones."""
    if tenant is not None:
        ids = [tenant]
    else:
        ids = list(conn.execute(text("select id from tenants order by created_at, id")).scalars())
    return [verify_tenant(conn, t) for t in ids]
