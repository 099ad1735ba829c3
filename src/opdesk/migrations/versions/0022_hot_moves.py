"""The desk's status moves and the hold as one statement each; one caller check for all.

* ``opdesk_caller``: who asks a hot path, from its session (it was written inside
  ``opdesk_api_book``; now every hot path asks it).
* ``opdesk_token`` and ``opdesk_move``: an appointment's move along its lifecycle, and the
  day's token at check-in. ``opdesk.scheduling.lifecycle`` calls them for every move (the
  calendar's and queue's buttons, the API, the portal, the worker's no-show marking); the
  table of allowed moves and the timeline column stay in Python and are passed in.
* ``opdesk_api_hold`` and ``opdesk_api_move``: ``POST /api/v1/slots/{id}/hold`` and the
  desk's moves through ``POST /api/v1/appointments/{id}/status``, whole. What follows a
  move (its reminders cancelled, a missed visit's charge dropped, a freed slot offered to
  the waitlist) is the worker's ``moved`` rule, as a booking's is its ``booked`` rule.
* ``opdesk_api_book`` asks ``opdesk_caller`` and stores its Idempotency-Key answer before
  the audit append, so the chain's lock is the last thing it takes.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from importlib import import_module

from alembic import op

from opdesk.migrations.helpers import run_script

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

FUNCTIONS = r"""
-- Who asks a hot path: a live session (opdesk_session, which scopes the statement to its
-- clinic) whose browser write carried its form token (``csrf_ok``, checked by the caller,
-- which holds the key) and whose role may act (``roles``, from the Python permission
-- table). Returns {"userId", "role"}, or the answer for a caller refused:
-- "signed-out"; "expired" with "sessionId" and "reason" (the caller ends it); "csrf";
-- "stage" with "stage"; "forbidden" with "role".
CREATE FUNCTION opdesk_caller(
    token_hash bytea, tenant uuid, csrf_ok boolean, roles text[], touch_every interval,
    at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    who record;
BEGIN
    SELECT * INTO who FROM opdesk_session(token_hash, tenant, at, touch_every);
    IF NOT FOUND THEN
        RETURN '{"answer": "signed-out"}';
    ELSIF who.over IS NOT NULL THEN
        RETURN jsonb_build_object(
            'answer', 'expired', 'sessionId', who.session_id, 'reason', who.over);
    ELSIF NOT csrf_ok THEN
        RETURN '{"answer": "csrf"}';
    ELSIF who.stage <> 'active' THEN
        RETURN jsonb_build_object('answer', 'stage', 'stage', who.stage);
    ELSIF NOT who.role = ANY (roles) THEN
        RETURN jsonb_build_object('answer', 'forbidden', 'role', who.role);
    END IF;
    RETURN jsonb_build_object('userId', who.user_id, 'role', who.role);
END
$$;

-- Work for the worker, due at ``due`` (opdesk.automation.service.schedule's row), and the
-- audit event that records it, for audit_event_of.
CREATE FUNCTION opdesk_follow_up(
    tenant uuid, id uuid, rule text, entity_type text, entity_id uuid, due timestamptz,
    dedupe_key text, payload jsonb, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
BEGIN
    INSERT INTO automation_events (
        tenant_id, id, rule, entity_ref_type, entity_ref_id, scheduled_for, status,
        attempts, dedupe_key, payload, created_at, updated_at)
    VALUES (tenant, id, rule, entity_type, entity_id, due, 'pending', 0, dedupe_key,
            payload, at, at);
    RETURN jsonb_build_object(
        'entity', 'automation_events', 'entityId', id, 'action', 'create',
        'diff', jsonb_build_object(
            'added', jsonb_build_object(
                'rule', rule, 'entity', entity_type || '/' || entity_id,
                'scheduledFor', audit_instant(due), 'dedupeKey', dedupe_key),
            'updated', '{}'::jsonb, 'removed', '{}'::jsonb));
END
$$;

-- The next OPD token of one doctor's day. The counter row's upsert takes its lock, so
-- concurrent check-ins never share a token.
CREATE FUNCTION opdesk_token(tenant uuid, doctor uuid, day date) RETURNS integer
LANGUAGE sql SECURITY INVOKER
AS $$
    INSERT INTO queue_counters AS q (tenant_id, doctor_id, day, last_token)
    VALUES (tenant, doctor, day, 1)
    ON CONFLICT (tenant_id, doctor_id, day) DO UPDATE SET last_token = q.last_token + 1
    RETURNING q.last_token
$$;

-- Move an appointment to ``target`` if it is now in one of ``allowed_from`` (the
-- lifecycle's table, opdesk.scheduling.models.APPOINTMENT), stamping the timeline column
-- ``stamp`` and updated_at with ``at``. Returns {"appointment": the row, "from", "audit":
-- the event to record}, or {"refused": "unknown"} or {"refused": "illegal", "from"} with
-- nothing written.
CREATE FUNCTION opdesk_move(
    appointment uuid, target text, allowed_from text[], stamp text, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    was appointments;
    moved appointments;
    today date;
BEGIN
    -- The row is locked before its status is read: of two concurrent moves, the second
    -- waits and then judges the first one's result.
    SELECT * INTO was FROM appointments a WHERE a.id = appointment FOR UPDATE;
    IF NOT FOUND THEN
        RETURN '{"refused": "unknown"}';
    ELSIF NOT was.status = ANY (allowed_from) THEN
        RETURN jsonb_build_object('refused', 'illegal', 'from', was.status);
    END IF;
    EXECUTE format(
        'UPDATE appointments a SET status = $1, %I = $2, updated_at = $2 '
        'WHERE a.tenant_id = $3 AND a.id = $4 RETURNING *', stamp)
       INTO moved USING target, at, was.tenant_id, was.id;
    -- Check-in hands out the doctor's next token for the clinic's day; a patient checked
    -- in again the same day (a late arrival after a no-show) keeps theirs.
    IF target = 'checked-in' THEN
        SELECT (at AT TIME ZONE t.timezone)::date INTO today
          FROM tenants t WHERE t.id = was.tenant_id;
        IF was.token_number IS NULL OR was.queue_date IS DISTINCT FROM today THEN
            UPDATE appointments a
               SET queue_date = today,
                   token_number = opdesk_token(was.tenant_id, was.doctor_id, today)
             WHERE a.tenant_id = was.tenant_id AND a.id = was.id
            RETURNING * INTO moved;
        END IF;
    END IF;
    RETURN jsonb_build_object(
        'appointment', to_jsonb(moved), 'from', was.status,
        'audit', jsonb_build_object(
            'entity', 'appointments', 'entityId', moved.id, 'action', 'state-transition',
            'from', was.status, 'to', target,
            'diff', '{"added": {}, "updated": {}, "removed": {}}'::jsonb));
END
$$;

-- POST /api/v1/slots/{id}/hold, whole: the caller, the hold (opdesk_hold), its expiry for
-- the worker (``expiry_key`` and ``expiry_payload`` as clinic_rules.on_held makes them)
-- and both audit events. Answers {"answer": "held"}, a caller's refusal, or "refused" with
-- opdesk_hold's refusal (nothing written).
CREATE FUNCTION opdesk_api_hold(
    token_hash bytea, tenant uuid, csrf_ok boolean, roles text[], touch_every interval,
    slot uuid, hold_hash text, expires timestamptz, expiry_key text, expiry_payload jsonb,
    ids uuid[], request_id text, ip text, user_agent text, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    caller jsonb;
    actor uuid;
    outcome jsonb;
    expiry jsonb;
BEGIN
    caller := opdesk_caller(token_hash, tenant, csrf_ok, roles, touch_every, at);
    IF caller ? 'answer' THEN
        RETURN caller;
    END IF;
    actor := (caller ->> 'userId')::uuid;
    outcome := opdesk_hold(slot, hold_hash, expires, at);
    IF outcome ? 'refused' THEN
        RETURN outcome || '{"answer": "refused"}';
    END IF;
    -- At ``expires`` the hold lapses, unless a booking ended it first.
    expiry := opdesk_follow_up(
        tenant, ids[1], 'hold-expiry', 'slots', slot, expires, expiry_key, expiry_payload, at);
    PERFORM audit_append(tenant, jsonb_build_array(
        audit_event_of(tenant, ids[2], at, actor, caller ->> 'role', outcome -> 'audit',
                       request_id, ip, user_agent),
        audit_event_of(tenant, ids[3], at, actor, caller ->> 'role', expiry,
                       request_id, ip, user_agent)));
    RETURN '{"answer": "held"}';
END
$$;

-- POST /api/v1/appointments/{id}/status for the desk's moves, whole: the caller, the move
-- (opdesk_move), the worker's 'moved' rule for what follows it, and both audit events.
-- Answers {"answer": "moved", "appointment": the row}, a caller's refusal, or "refused"
-- with opdesk_move's refusal (nothing written).
CREATE FUNCTION opdesk_api_move(
    token_hash bytea, tenant uuid, csrf_ok boolean, roles text[], touch_every interval,
    appointment uuid, target text, allowed_from text[], stamp text,
    ids uuid[], request_id text, ip text, user_agent text, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    caller jsonb;
    actor uuid;
    outcome jsonb;
    follow jsonb;
BEGIN
    caller := opdesk_caller(token_hash, tenant, csrf_ok, roles, touch_every, at);
    IF caller ? 'answer' THEN
        RETURN caller;
    END IF;
    actor := (caller ->> 'userId')::uuid;
    outcome := opdesk_move(appointment, target, allowed_from, stamp, at);
    IF outcome ? 'refused' THEN
        RETURN outcome || '{"answer": "refused"}';
    END IF;
    follow := opdesk_follow_up(
        tenant, ids[1], 'moved', 'appointments', appointment, at, 'moved:' || ids[1],
        jsonb_build_object('to', target), at);
    PERFORM audit_append(tenant, jsonb_build_array(
        audit_event_of(tenant, ids[2], at, actor, caller ->> 'role', outcome -> 'audit',
                       request_id, ip, user_agent),
        audit_event_of(tenant, ids[3], at, actor, caller ->> 'role', follow,
                       request_id, ip, user_agent)));
    RETURN jsonb_build_object('answer', 'moved', 'appointment', outcome -> 'appointment');
END
$$;

-- As in 0020, with the caller asked of opdesk_caller and the Idempotency-Key's answer
-- stored before the audit append (whose lock is then held only for the commit).
CREATE OR REPLACE FUNCTION opdesk_api_book(
    token_hash bytea, tenant uuid, csrf_ok boolean, roles text[], touch_every interval,
    idem_key text, request_hash bytea,
    slot uuid, patient uuid, visit_type text, channel text, reason text, notes text,
    hold_hash text, follow_up_for uuid, check_near boolean,
    ids uuid[], request_id text, ip text, user_agent text, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    caller jsonb;
    actor uuid;
    earlier idempotency_keys;
    outcome jsonb;
    made jsonb;
    follow jsonb;
    -- ids: the appointment, its follow-up event, and the two audit events.
    appointment uuid := ids[1];
BEGIN
    caller := opdesk_caller(token_hash, tenant, csrf_ok, roles, touch_every, at);
    IF caller ? 'answer' THEN
        RETURN caller;
    END IF;
    actor := (caller ->> 'userId')::uuid;
    -- The key is claimed by inserting it; a concurrent retry waits here for the first to
    -- finish, then reads its answer. Keys are the caller's own.
    IF idem_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (tenant_id, actor_key, key, request_hash, created_at)
        VALUES (tenant, actor::text, idem_key, request_hash, at)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO earlier FROM idempotency_keys k
             WHERE k.tenant_id = tenant AND k.actor_key = actor::text AND k.key = idem_key;
            IF earlier.request_hash <> request_hash THEN
                RETURN '{"answer": "key-reused"}';
            END IF;
            RETURN jsonb_build_object(
                'answer', 'replay', 'status', earlier.status_code, 'response', earlier.response);
        END IF;
    END IF;
    outcome := opdesk_book(
        slot, patient, visit_type, channel, reason, notes, hold_hash, NULL, false, false,
        NULL, NULL, follow_up_for, check_near, appointment, actor, at);
    IF outcome ? 'refused' THEN
        -- Nothing was booked: the key goes back, so a retry runs afresh.
        DELETE FROM idempotency_keys k
         WHERE k.tenant_id = tenant AND k.actor_key = actor::text AND k.key = idem_key;
        RETURN outcome || '{"answer": "refused"}';
    END IF;
    made := outcome -> 'appointment';
    -- The draft invoice, the reminders and the hold's end: the worker's 'booked' rule.
    follow := opdesk_follow_up(
        tenant, ids[2], 'booked', 'appointments', appointment, at, 'booked:' || appointment,
        '{}', at);
    IF idem_key IS NOT NULL THEN
        UPDATE idempotency_keys k
           SET status_code = 201, response = jsonb_build_object('row', made)
         WHERE k.tenant_id = tenant AND k.actor_key = actor::text AND k.key = idem_key;
    END IF;
    PERFORM audit_append(tenant, jsonb_build_array(
        audit_event_of(tenant, ids[3], at, actor, caller ->> 'role', outcome -> 'audit',
                       request_id, ip, user_agent),
        audit_event_of(tenant, ids[4], at, actor, caller ->> 'role', follow,
                       request_id, ip, user_agent)));
    RETURN jsonb_build_object('answer', 'booked', 'appointment', made);
END
$$;
"""


def upgrade() -> None:
    run_script(FUNCTIONS)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION opdesk_api_move(bytea, uuid, boolean, text[], interval, uuid, text, "
        "text[], text, uuid[], text, text, text, timestamptz); "
        "DROP FUNCTION opdesk_api_hold(bytea, uuid, boolean, text[], interval, uuid, text, "
        "timestamptz, text, jsonb, uuid[], text, text, text, timestamptz); "
        "DROP FUNCTION opdesk_move(uuid, text, text[], text, timestamptz); "
        "DROP FUNCTION opdesk_token(uuid, uuid, date); "
        "DROP FUNCTION opdesk_follow_up(uuid, uuid, text, text, uuid, timestamptz, text, "
        "jsonb, timestamptz); "
        "DROP FUNCTION opdesk_api_book(bytea, uuid, boolean, text[], interval, text, bytea, "
        "uuid, uuid, text, text, text, text, text, uuid, boolean, uuid[], text, text, text, "
        "timestamptz); "
        "DROP FUNCTION opdesk_caller(bytea, uuid, boolean, text[], interval, timestamptz);"
    )
    # 0020's opdesk_api_book (the last function of its script) comes back.
    earlier: str = import_module("opdesk.migrations.versions.0020_hot_paths").FUNCTIONS
    run_script(earlier[earlier.index("CREATE FUNCTION opdesk_api_book") :])
