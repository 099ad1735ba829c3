"""The audit chain's link hash in SQL, and one statement that appends to a chain.

``audit_link_hash`` computes what ``opdesk.audit.service.link_hash`` computes:
``SHA-256(bytes(prev_hash) || JCS(event))`` with JCS the RFC 8785 canonical JSON. The
hot-path functions append their events with it in the statement that does their write;
the Python append path calls ``audit_append`` (one cacheable statement while the chain
lock is held, instead of a multi-row INSERT compiled per request). ``opdesk audit
verify`` still recomputes every hash in Python: two implementations of one rule, held
equal by a property test (tests/audit/test_hash_in_sql.py).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op

from opdesk.migrations.helpers import run_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

FUNCTIONS = r"""
-- RFC 8785 3.2.2.3: a number is written as ECMAScript writes the nearest double. Integers
-- beyond 2^53 have no exact double; the Python side refuses them, and so does this.
CREATE FUNCTION jcs_number(n numeric) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET extra_float_digits = 1  -- float8 text is then the shortest digits that read back exactly
AS $$
DECLARE
    parts text[];
    digits text;
    point int;   -- the value is 0.<digits> x 10^point
    k int;
BEGIN
    IF n = trunc(n) AND abs(n) > 9007199254740991 THEN
        RAISE EXCEPTION 'the integer % is beyond what JSON canonical form can hold', n
            USING ERRCODE = '22003';
    END IF;
    IF n = 0 THEN
        RETURN '0';
    END IF;
    IF n < 0 THEN
        RETURN '-' || jcs_number(-n);
    END IF;
    -- '123.45', '1e+21', '1.5e-07': integer part, fraction, exponent.
    parts := regexp_match(n::float8::text, '^(\d+)(?:\.(\d+))?(?:e([-+]\d+))?$');
    digits := parts[1] || coalesce(parts[2], '');
    point := length(parts[1]) + coalesce(parts[3]::int, 0);
    -- Leading zeros move the point; trailing zeros say nothing.
    point := point - (length(digits) - length(ltrim(digits, '0')));
    digits := rtrim(ltrim(digits, '0'), '0');
    k := length(digits);
    IF k <= point AND point <= 21 THEN            -- 1500, 1e20 written out
        RETURN digits || repeat('0', point - k);
    ELSIF 0 < point AND point <= 21 THEN          -- 12.5
        RETURN left(digits, point) || '.' || substr(digits, point + 1);
    ELSIF -6 < point AND point <= 0 THEN          -- 0.000125
        RETURN '0.' || repeat('0', -point) || digits;
    END IF;
    RETURN left(digits, 1)                        -- 1.5e-7, 1e+21
        || CASE WHEN k > 1 THEN '.' || substr(digits, 2) ELSE '' END
        || 'e' || CASE WHEN point - 1 > 0 THEN '+' ELSE '-' END || abs(point - 1)::text;
END
$$;

-- RFC 8785 3.2.3: members are sorted by their names' UTF-16 code units. UTF-8 bytes sort
-- as code points, which differs only where U+E000..U+FFFF meets a character beyond U+FFFF
-- (a surrogate pair in UTF-16, so lower there): a 0xF5 byte put before each of the former
-- makes them sort after every four-byte character, as in UTF-16.
CREATE FUNCTION jcs_name_order(member text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN member !~ '[\uE000-\uFFFF]' THEN convert_to(member, 'UTF8')
        ELSE (
            SELECT string_agg(
                CASE WHEN c BETWEEN U&'\E000' AND U&'\FFFF' COLLATE "C"
                     THEN '\xf5'::bytea || convert_to(c, 'UTF8')
                     ELSE convert_to(c, 'UTF8') END,
                ''::bytea ORDER BY i)
            FROM regexp_split_to_table(member, '') WITH ORDINALITY AS t(c, i)
        )
    END
$$;

-- RFC 8785 canonical JSON text of any JSON value. Strings, true, false and null are
-- written by PostgreSQL exactly as RFC 8785 writes them (the same escapes, lower-case
-- \u00xx, everything else as UTF-8).
CREATE FUNCTION jcs(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
    CASE jsonb_typeof(v)
    WHEN 'object' THEN
        RETURN '{' || coalesce((
            SELECT string_agg(to_jsonb(key)::text || ':' || jcs(value), ','
                              ORDER BY jcs_name_order(key))
            FROM jsonb_each(v)), '') || '}';
    WHEN 'array' THEN
        RETURN '[' || coalesce((
            SELECT string_agg(jcs(e), ',' ORDER BY i)
            FROM jsonb_array_elements(v) WITH ORDINALITY AS t(e, i)), '') || ']';
    WHEN 'number' THEN
        RETURN jcs_number(v::text::numeric);
    ELSE
        RETURN v::text;
    END CASE;
END
$$;

-- An instant as the audit trail writes it (opdesk.audit.service.jsonable): UTC, to the
-- microsecond, with an explicit +00:00.
CREATE FUNCTION audit_instant(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
$$;

-- One link of a tenant's chain: SHA-256 of the previous hash's bytes and the event's
-- canonical JSON without its own hash (the document opdesk.audit.service.canonical_event
-- builds; the two are kept equal by a property test).
CREATE FUNCTION audit_link_hash(e audit_events) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT encode(sha256(decode(e.prev_hash, 'hex') || convert_to(jcs(jsonb_build_object(
        'tenantId', e.tenant_id,
        'id', e.id,
        'seq', e.seq,
        'ts', audit_instant(e.ts),
        'actor', jsonb_build_object('id', e.actor_id, 'role', e.actor_role),
        'entity', jsonb_build_object('collection', e.entity_collection, 'id', e.entity_id),
        'action', e.action,
        'from', e.from_state,
        'to', e.to_state,
        'diff', e.diff,
        'requestId', e.request_id,
        'ip', e.ip,
        'userAgent', e.user_agent,
        'prevHash', e.prev_hash
    )), 'UTF8')), 'hex')
$$;

-- Append events (a JSON array of audit_events rows without seq, prev_hash and hash) to
-- one tenant's chain, in order. The head row's lock serialises appends: the first
-- statement creates or locks it, and it is held until the transaction ends.
CREATE FUNCTION audit_append(tenant uuid, events jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    head_seq bigint;
    head_hash text;
    link audit_events;
BEGIN
    INSERT INTO audit_chain_heads AS h (tenant_id, last_seq, last_hash)
    VALUES (tenant, 0, repeat('0', 64))
    ON CONFLICT (tenant_id) DO UPDATE SET last_seq = h.last_seq
    RETURNING h.last_seq, h.last_hash INTO head_seq, head_hash;
    FOR link IN SELECT * FROM jsonb_populate_recordset(NULL::audit_events, events) LOOP
        -- Every event names the chain it joins; one of another clinic is a bug upstream.
        IF link.tenant_id IS DISTINCT FROM tenant THEN
            RAISE EXCEPTION 'an audit event of tenant % offered to the chain of %',
                link.tenant_id, tenant;
        END IF;
        head_seq := head_seq + 1;
        link.seq := head_seq;
        link.prev_hash := head_hash;
        link.hash := audit_link_hash(link);
        INSERT INTO audit_events SELECT link.*;
        head_hash := link.hash;
    END LOOP;
    UPDATE audit_chain_heads SET last_seq = head_seq, last_hash = head_hash
    WHERE tenant_id = tenant;
    RETURN head_seq;
END
$$;
"""


def upgrade() -> None:
    run_script(FUNCTIONS)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION audit_append(uuid, jsonb); DROP FUNCTION audit_link_hash(audit_events); "
        "DROP FUNCTION jcs(jsonb); DROP FUNCTION jcs_name_order(text); "
        "DROP FUNCTION jcs_number(numeric); DROP FUNCTION audit_instant(timestamptz);"
    )
