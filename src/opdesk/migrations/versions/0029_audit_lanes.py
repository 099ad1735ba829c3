"""A clinic's audit trail in up to eight lanes, each its own hash chain.

One chain per clinic made every write of the clinic wait for the one before it: the
chain's head row stays locked until the transaction commits, so at a busy desk the
writes queued on it (the booking bench: 4.5 of 6.5 busy connections waiting on the head,
and the waits' own lock-manager traffic costing more PostgreSQL CPU than the bookings'
statements).

Now a clinic has lanes 0..7, each with its own head and its own chain (``seq`` counts
1, 2, 3, ... within the lane, and each lane starts from the all-zero hash). An append
takes the lowest lane no other transaction holds (``SKIP LOCKED``); only when every
existing lane is busy does it open the next one, and only when all eight are busy does it
wait, on the lane its backend's number points at. One write at a time, the way tests and
a quiet clinic write, therefore always lands in lane 0, exactly as before. The link hash
is unchanged, so every existing event verifies as lane 0's chain. The lane is not part of
the hashed document: moving an event to another lane breaks both lanes' sequences and
parent hashes, and exchanging two whole lanes changes no event. The trail in time order
is read by ``ts``, which a new index serves.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

from importlib import import_module

from alembic import op

from opdesk.migrations.helpers import run_script

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

LANES = 8

FUNCTIONS = rf"""
-- Append events (a JSON array of audit_events rows without lane, seq, prev_hash and hash)
-- to one of the tenant's lanes, in order, and return the lane's new last seq. Everything
-- that does not depend on the chain is done first; then a lane's head row is taken (and
-- held until the transaction ends), and the events are linked, inserted, and the head
-- moved.
CREATE OR REPLACE FUNCTION audit_append(tenant uuid, events jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    links audit_events[];
    parts text[];  -- one row of three parts per event
    lane_no smallint;
    lanes int;
    head_seq bigint;
    head_hash text;
    i int;
BEGIN
    SELECT array_agg(e ORDER BY x.n), array_agg(audit_canonical_parts(e) ORDER BY x.n)
      INTO links, parts
      FROM jsonb_array_elements(events) WITH ORDINALITY AS x(event, n),
           LATERAL jsonb_populate_record(NULL::audit_events, x.event) AS e;
    IF links IS NULL THEN
        RETURN NULL;
    END IF;
    FOR i IN 1 .. cardinality(links) LOOP
        -- Every event names the chain it joins; one of another clinic is a bug upstream.
        IF links[i].tenant_id IS DISTINCT FROM tenant THEN
            RAISE EXCEPTION 'an audit event of tenant % offered to the chain of %',
                links[i].tenant_id, tenant;
        END IF;
    END LOOP;

    -- The lowest lane no other transaction is appending to. A lane this transaction
    -- already holds counts as free, so its second append joins the same lane.
    SELECT h.lane, h.last_seq, h.last_hash INTO lane_no, head_seq, head_hash
      FROM audit_chain_heads h
     WHERE h.tenant_id = tenant
     ORDER BY h.lane
       FOR UPDATE SKIP LOCKED
     LIMIT 1;
    IF lane_no IS NULL THEN
        -- Every lane is busy, or the clinic has none yet: open the next lane while there
        -- is room. Two transactions opening the same lane: the second waits for the
        -- first's commit, inserts nothing, and waits for a lane below.
        SELECT count(*) INTO lanes FROM audit_chain_heads h WHERE h.tenant_id = tenant;
        IF lanes < {LANES} THEN
            INSERT INTO audit_chain_heads (tenant_id, lane, last_seq, last_hash)
            VALUES (tenant, lanes, 0, repeat('0', 64))
            ON CONFLICT (tenant_id, lane) DO NOTHING
            RETURNING lane, last_seq, last_hash INTO lane_no, head_seq, head_hash;
        END IF;
    END IF;
    IF lane_no IS NULL THEN
        -- Every lane there is, is busy: wait for one, spreading the waiters by backend.
        SELECT h.lane, h.last_seq, h.last_hash INTO lane_no, head_seq, head_hash
          FROM audit_chain_heads h
         WHERE h.tenant_id = tenant AND h.lane = pg_backend_pid() % greatest(lanes, 1)
           FOR UPDATE;
    END IF;

    FOR i IN 1 .. cardinality(links) LOOP
        head_seq := head_seq + 1;
        links[i].lane := lane_no;
        links[i].seq := head_seq;
        links[i].prev_hash := head_hash;
        head_hash := audit_link_hash(
            ARRAY[parts[i][1], parts[i][2], parts[i][3]], head_hash, head_seq);
        links[i].hash := head_hash;
    END LOOP;
    INSERT INTO audit_events SELECT * FROM unnest(links);
    UPDATE audit_chain_heads SET last_seq = head_seq, last_hash = head_hash
     WHERE tenant_id = tenant AND lane = lane_no;
    RETURN head_seq;
END
$$;
"""


def upgrade() -> None:
    for table in ("audit_events", "audit_chain_heads"):
        # A constant default: PostgreSQL records it in the catalog and rewrites no row.
        op.execute(f"ALTER TABLE {table} ADD COLUMN lane smallint NOT NULL DEFAULT 0")
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_lane_range "
            f"CHECK (lane >= 0 AND lane < {LANES})"
        )
    op.execute("ALTER TABLE audit_chain_heads DROP CONSTRAINT pk_audit_chain_heads")
    op.execute(
        "ALTER TABLE audit_chain_heads ADD CONSTRAINT pk_audit_chain_heads "
        "PRIMARY KEY (tenant_id, lane)"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_audit_events_tenant_id_lane_seq "
        "ON audit_events (tenant_id, lane, seq)"
    )
    op.execute("ALTER TABLE audit_events DROP CONSTRAINT uq_audit_events_tenant_id_seq")
    op.execute(
        "ALTER TABLE audit_events ADD CONSTRAINT uq_audit_events_tenant_id_lane_seq "
        "UNIQUE USING INDEX uq_audit_events_tenant_id_lane_seq"
    )
    # A clinic's trail in time order (the sign-in log's newest first), now that no one
    # sequence runs through all of it.
    op.execute("CREATE INDEX ix_audit_events_tenant_id_ts ON audit_events (tenant_id, ts)")
    run_script(FUNCTIONS)


def downgrade() -> None:
    # Only a trail that never needed a second lane goes back to one chain per clinic.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM audit_chain_heads WHERE lane > 0) THEN "
        "RAISE EXCEPTION 'audit events are in lanes above 0; one chain cannot hold them'; "
        "END IF; END $$"
    )
    op.execute("DROP INDEX ix_audit_events_tenant_id_ts")
    op.execute("ALTER TABLE audit_events DROP CONSTRAINT uq_audit_events_tenant_id_lane_seq")
    op.execute(
        "ALTER TABLE audit_events ADD CONSTRAINT uq_audit_events_tenant_id_seq "
        "UNIQUE (tenant_id, seq)"
    )
    op.execute("ALTER TABLE audit_chain_heads DROP CONSTRAINT pk_audit_chain_heads")
    op.execute(
        "ALTER TABLE audit_chain_heads ADD CONSTRAINT pk_audit_chain_heads PRIMARY KEY (tenant_id)"
    )
    for table in ("audit_events", "audit_chain_heads"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN lane")
    # 0021's append, which knows no lanes.
    previous = import_module("opdesk.migrations.versions.0021_audit_outside_lock")
    run_script("-- Append events" + previous.FUNCTIONS.split("-- Append events", 1)[1])
