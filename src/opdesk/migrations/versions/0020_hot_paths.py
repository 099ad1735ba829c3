"""The desk's busiest writes as SQL functions: resolving a session, holding and booking.

Each function is the one place its rule is written; the Python services call it (see
``opdesk.identity.sessions.resolve`` and ``opdesk.scheduling.booking``), so a booking
made by the desk, the API, the portal or a waitlist offer is decided by the same
statement. They run as the caller (SECURITY INVOKER), under row-level security: a row of
another clinic is never seen, so it is "unknown".

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

from opdesk.migrations.helpers import run_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

FUNCTIONS = r"""
-- A slot anyone may take at ``at``: free, or held past its expiry (before a sweep has let
-- the hold go), and not yet over. Plain SQL, so the planner inlines it into searches.
CREATE FUNCTION slot_claimable(
    status text, hold_expires_at timestamptz, ends_at timestamptz, at timestamptz
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ends_at > at AND (status = 'free' OR (status = 'held' AND hold_expires_at <= at))
$$;

-- Whether this requester may book the slot: anyone may take a claimable one; a live hold
-- (unexpired, on a slot not yet over) only its holder, shown by the hash of the hold's
-- token or, for a waitlist offer, by the offer's lock.
CREATE FUNCTION slot_takeable(
    s slots, hold_hash text, waitlist_lock text, at timestamptz
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT slot_claimable(s.status, s.hold_expires_at, s.ends_at, at)
        OR (s.status = 'held' AND s.hold_expires_at > at AND s.ends_at > at AND CASE
                WHEN hold_hash IS NOT NULL THEN s.meta ->> 'holdHash' = hold_hash
                WHEN waitlist_lock IS NOT NULL THEN s.meta ->> 'waitlistLock' = waitlist_lock
                ELSE false
            END)
$$;

-- The session behind a token, for one request. Scopes the transaction to the token's
-- clinic first (row-level security), so a token of another clinic finds nothing. Returns
-- no row for an unknown or ended session; one with ``over`` set ('expired', 'idle',
-- 'user-deactivated') for a session past its limits, which the caller ends; else the
-- session, its stage moved to 'active' once its device is approved, and last_seen_at
-- written at most once per ``touch_every`` (a read stays a read).
CREATE FUNCTION opdesk_session(
    token_hash bytea, tenant uuid, at timestamptz, touch_every interval
) RETURNS TABLE (
    session_id uuid, user_id uuid, role text, stage text, name text, timezone text, over text
)
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    hit record;
BEGIN
    PERFORM set_config('app.tenant_id', tenant::text, true);
    SELECT s.id, s.stage AS was, s.device_id, s.last_seen_at, s.idle_timeout_seconds,
           s.expires_at, u.id AS uid, u.active, u.role, u.name, t.timezone
      INTO hit
      FROM sessions s
      JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id
      JOIN tenants t ON t.id = s.tenant_id
     WHERE s.tenant_id = tenant AND s.token_hash = opdesk_session.token_hash
       AND s.ended_at IS NULL AND t.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM set_config('app.tenant_id', '', true);
        RETURN;
    END IF;
    session_id := hit.id;
    user_id := hit.uid;
    role := hit.role;
    name := hit.name;
    timezone := hit.timezone;
    stage := hit.was;
    -- Idle and absolute limits; a deactivated user's sessions end at their next use.
    over := CASE
        WHEN NOT hit.active THEN 'user-deactivated'
        WHEN at >= hit.expires_at THEN 'expired'
        WHEN at - hit.last_seen_at >= make_interval(secs => hit.idle_timeout_seconds)
            THEN 'idle'
    END;
    IF over IS NOT NULL THEN
        PERFORM set_config('app.tenant_id', '', true);
        RETURN NEXT;
        RETURN;
    END IF;
    -- A session waiting for its new device's approval goes on once the device is approved.
    IF stage = 'device' AND EXISTS (
        SELECT 1 FROM devices d
         WHERE d.tenant_id = tenant AND d.id = hit.device_id
           AND d.approved AND d.revoked_at IS NULL
    ) THEN
        stage := 'active';
    END IF;
    IF stage <> hit.was OR at - hit.last_seen_at >= touch_every THEN
        UPDATE sessions s
           SET stage = opdesk_session.stage,
               last_seen_at = CASE WHEN at - hit.last_seen_at >= touch_every
                                   THEN at ELSE s.last_seen_at END
         WHERE s.tenant_id = tenant AND s.id = hit.id;
    END IF;
    RETURN NEXT;
END
$$;

-- Hold a slot for one requester until ``expires``: only the holder of the token whose
-- hash is ``hold_hash`` can book it meanwhile. Returns the audit event to record, or
-- {"refused": "slot-unknown"} or {"refused": "slot-taken", "status", "endsAt"} with
-- nothing written.
CREATE FUNCTION opdesk_hold(
    slot uuid, hold_hash text, expires timestamptz, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    held slots;
BEGIN
    -- One hold per slot: the UPDATE takes the row lock, so of concurrent holds the first
    -- wins and the others find the slot held. A waitlist offer's lock on it lapses.
    UPDATE slots s
       SET status = 'held', hold_expires_at = expires,
           meta = (s.meta - 'waitlistLock') || jsonb_build_object('holdHash', hold_hash)
     WHERE s.id = slot AND slot_claimable(s.status, s.hold_expires_at, s.ends_at, at)
    RETURNING * INTO held;
    IF NOT FOUND THEN
        SELECT * INTO held FROM slots s WHERE s.id = slot;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('refused', 'slot-unknown');
        END IF;
        RETURN jsonb_build_object(
            'refused', 'slot-taken', 'status', held.status, 'endsAt', held.ends_at);
    END IF;
    RETURN jsonb_build_object('audit', jsonb_build_object(
        'entity', 'slots', 'entityId', held.id, 'action', 'state-transition',
        'from', 'free', 'to', 'held',
        'diff', jsonb_build_object(
            'added', jsonb_build_object('holdExpiresAt', audit_instant(expires)),
            'updated', '{}'::jsonb, 'removed', '{}'::jsonb)));
END
$$;

-- The patient's standing appointments with the doctor that overlap the slot's time or
-- lie within 30 minutes of it on the same day: most likely one visit booked twice.
CREATE FUNCTION appointments_near(s slots, patient uuid) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'appointmentId', a.id, 'startsAt', o.starts_at) ORDER BY o.starts_at), '[]')
      FROM appointments a
      JOIN slots o ON o.tenant_id = a.tenant_id AND o.id = a.slot_id
     WHERE a.patient_id = patient AND a.doctor_id = s.doctor_id
       AND a.status IN ('requested', 'confirmed', 'checked-in', 'in-consult')
       AND o.date = s.date
       AND o.starts_at < s.ends_at + interval '30 minutes'
       AND o.ends_at > s.starts_at - interval '30 minutes'
$$;

-- Book a slot. Exactly one appointment per slot however many try at once: the slot's
-- conditional UPDATE decides (its row lock makes every other attempt wait, then find the
-- slot booked), and the live-per-slot unique index on appointments backs it up. Every
-- refusal is decided before anything is written, so a refused booking writes nothing:
-- {"refused": "patient" | "blocked" | "follow-up-unknown" | "follow-up-other" |
-- "slot-unknown"}, {"refused": "slot-taken", "status", "endsAt"}, {"refused":
-- "visit-type", "offered": [...]}, {"refused": "near", "nearby": [...]}. A booking
-- returns {"appointment": the row, "slot": its times, "audit": the event to record}.
CREATE FUNCTION opdesk_book(
    slot uuid, patient uuid, visit_type text, channel text, reason text, notes text,
    hold_hash text, waitlist_lock text, online boolean, awaits_payment boolean,
    waitlist_origin uuid, reschedule_of uuid, follow_up_for uuid, check_near boolean,
    appointment uuid, actor uuid, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    blocked boolean;
    earlier_patient uuid;
    taken slots;
    made appointments;
BEGIN
    -- The patient is one of this clinic's (row-level security hides the rest), not deleted.
    SELECT p.flags_blocked INTO blocked FROM patients p
     WHERE p.id = patient AND p.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', 'patient');
    END IF;
    -- A patient the clinic stopped from booking online still books through the desk.
    IF online AND blocked THEN
        RETURN jsonb_build_object('refused', 'blocked');
    END IF;
    -- A follow-up continues one of the same patient's appointments.
    IF follow_up_for IS NOT NULL THEN
        SELECT a.patient_id INTO earlier_patient FROM appointments a
         WHERE a.id = opdesk_book.follow_up_for;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('refused', 'follow-up-unknown', 'followUpFor', follow_up_for);
        ELSIF earlier_patient <> patient THEN
            RETURN jsonb_build_object('refused', 'follow-up-other');
        END IF;
    END IF;
    -- The one write that decides: the slot, if this requester may take it, for a visit
    -- type it offers, and (when asked) not a second booking of one visit.
    UPDATE slots s
       SET status = 'booked', hold_expires_at = NULL,
           meta = s.meta - 'holdHash' - 'waitlistLock'
     WHERE s.id = slot
       AND slot_takeable(s, hold_hash, waitlist_lock, at)
       AND coalesce(s.meta -> 'visitType' ? visit_type, false)
       AND NOT (check_near AND appointments_near(s, patient) <> '[]')
    RETURNING * INTO taken;
    IF NOT FOUND THEN
        -- Why not, for the person who asked (the slot is read, never written, here).
        SELECT * INTO taken FROM slots s WHERE s.id = slot;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('refused', 'slot-unknown');
        ELSIF NOT slot_takeable(taken, hold_hash, waitlist_lock, at) THEN
            RETURN jsonb_build_object(
                'refused', 'slot-taken', 'status', taken.status, 'endsAt', taken.ends_at);
        ELSIF NOT coalesce(taken.meta -> 'visitType' ? visit_type, false) THEN
            RETURN jsonb_build_object(
                'refused', 'visit-type', 'offered', coalesce(taken.meta -> 'visitType', '[]'));
        END IF;
        RETURN jsonb_build_object(
            'refused', 'near', 'nearby', appointments_near(taken, patient), 'day', taken.date,
            'timezone', (SELECT t.timezone FROM tenants t WHERE t.id = taken.tenant_id));
    END IF;
    -- Booked on the clinic's page where the clinic wants it paid first: requested until
    -- the payment arrives; otherwise confirmed now.
    INSERT INTO appointments (
        tenant_id, id, patient_id, doctor_id, slot_id, visit_type, reason, notes, channel,
        status, timeline_requested_at, timeline_confirmed_at, waitlist_origin,
        reschedule_of, follow_up_for, created_by, updated_at)
    VALUES (
        taken.tenant_id, appointment, patient, taken.doctor_id, taken.id, visit_type, reason,
        notes, channel,
        CASE WHEN awaits_payment THEN 'requested' ELSE 'confirmed' END,
        at, CASE WHEN awaits_payment THEN NULL ELSE at END, waitlist_origin,
        reschedule_of, follow_up_for, actor, at)
    RETURNING * INTO made;
    RETURN jsonb_build_object(
        'appointment', to_jsonb(made),
        'slot', jsonb_build_object(
            'startsAt', taken.starts_at, 'endsAt', taken.ends_at, 'date', taken.date),
        'audit', jsonb_build_object(
            'entity', 'appointments', 'entityId', made.id, 'action', 'create',
            'from', NULL, 'to', made.status,
            'diff', jsonb_build_object(
                'added', jsonb_build_object(
                    'slotId', taken.id, 'patientId', patient, 'channel', channel),
                'updated', '{}'::jsonb, 'removed', '{}'::jsonb)));
END
$$;

-- An audit event of a hot path, as audit_append takes it: what the operation describes
-- (entity, action, states, diff) and who asked, from where.
CREATE FUNCTION audit_event_of(
    tenant uuid, id uuid, at timestamptz, actor uuid, actor_role text, event jsonb,
    request_id text, ip text, user_agent text
) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
        'tenant_id', tenant, 'id', id, 'ts', at, 'actor_id', actor, 'actor_role', actor_role,
        'entity_collection', event ->> 'entity', 'entity_id', event ->> 'entityId',
        'action', event ->> 'action', 'from_state', event ->> 'from',
        'to_state', event ->> 'to', 'diff', event -> 'diff', 'request_id', request_id,
        'ip', ip, 'user_agent', user_agent)
$$;

-- POST /api/v1/appointments, whole, in one statement: the session, its clinic and its
-- permission; the Idempotency-Key; the booking (opdesk_book); the audit events; and the
-- booking's follow-up work (its draft invoice and reminders), left to the worker's
-- 'booked' rule as an automation event that is due at once. Writes nothing but the
-- session's touch unless it books. Answers, as {"answer": ...}:
--   "booked" with "appointment" (the row);
--   "signed-out"; "expired" with "sessionId" and "reason" (the caller ends it); "csrf";
--   "stage" with "stage"; "forbidden" with "role";
--   "replay" with "status" and "response" (the first answer to this key); "key-reused";
--   "refused" with opdesk_book's refusal.
CREATE FUNCTION opdesk_api_book(
    token_hash bytea, tenant uuid, csrf_ok boolean, roles text[], touch_every interval,
    idem_key text, request_hash bytea,
    slot uuid, patient uuid, visit_type text, channel text, reason text, notes text,
    hold_hash text, follow_up_for uuid, check_near boolean,
    ids uuid[], request_id text, ip text, user_agent text, at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    who record;
    earlier idempotency_keys;
    outcome jsonb;
    made jsonb;
    -- ids: the appointment, its follow-up event, and the two audit events.
    appointment uuid := ids[1];
    follow_up uuid := ids[2];
BEGIN
    -- Who asks: a live session scopes this statement to its clinic (opdesk_session).
    SELECT * INTO who FROM opdesk_session(token_hash, tenant, at, touch_every);
    IF NOT FOUND THEN
        RETURN '{"answer": "signed-out"}';
    ELSIF who.over IS NOT NULL THEN
        RETURN jsonb_build_object(
            'answer', 'expired', 'sessionId', who.session_id, 'reason', who.over);
    END IF;
    -- A browser's write carries its session's form token (the caller holds the key).
    IF NOT csrf_ok THEN
        RETURN '{"answer": "csrf"}';
    ELSIF who.stage <> 'active' THEN
        RETURN jsonb_build_object('answer', 'stage', 'stage', who.stage);
    ELSIF NOT who.role = ANY (roles) THEN
        RETURN jsonb_build_object('answer', 'forbidden', 'role', who.role);
    END IF;
    -- The key is claimed by inserting it; a concurrent retry waits here for the first to
    -- finish, then reads its answer. Keys are the caller's own.
    IF idem_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (tenant_id, actor_key, key, request_hash, created_at)
        VALUES (tenant, who.user_id::text, idem_key, request_hash, at)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO earlier FROM idempotency_keys k
             WHERE k.tenant_id = tenant AND k.actor_key = who.user_id::text
               AND k.key = idem_key;
            IF earlier.request_hash <> request_hash THEN
                RETURN '{"answer": "key-reused"}';
            END IF;
            RETURN jsonb_build_object(
                'answer', 'replay', 'status', earlier.status_code, 'response', earlier.response);
        END IF;
    END IF;
    outcome := opdesk_book(
        slot, patient, visit_type, channel, reason, notes, hold_hash, NULL, false, false,
        NULL, NULL, follow_up_for, check_near, appointment, who.user_id, at);
    IF outcome ? 'refused' THEN
        -- Nothing was booked: the key goes back, so a retry runs afresh.
        DELETE FROM idempotency_keys k
         WHERE k.tenant_id = tenant AND k.actor_key = who.user_id::text AND k.key = idem_key;
        RETURN outcome || '{"answer": "refused"}';
    END IF;
    made := outcome -> 'appointment';
    INSERT INTO automation_events (
        tenant_id, id, rule, entity_ref_type, entity_ref_id, scheduled_for, status,
        attempts, dedupe_key, payload, created_at, updated_at)
    VALUES (tenant, follow_up, 'booked', 'appointments', appointment, at, 'pending', 0,
            'booked:' || appointment, '{}', at, at);
    PERFORM audit_append(tenant, jsonb_build_array(
        audit_event_of(tenant, ids[3], at, who.user_id, who.role, outcome -> 'audit',
                       request_id, ip, user_agent),
        audit_event_of(tenant, ids[4], at, who.user_id, who.role, jsonb_build_object(
            'entity', 'automation_events', 'entityId', follow_up, 'action', 'create',
            'diff', jsonb_build_object(
                'added', jsonb_build_object(
                    'rule', 'booked', 'entity', 'appointments/' || appointment,
                    'scheduledFor', audit_instant(at), 'dedupeKey', 'booked:' || appointment),
                'updated', '{}'::jsonb, 'removed', '{}'::jsonb)),
                       request_id, ip, user_agent)));
    IF idem_key IS NOT NULL THEN
        UPDATE idempotency_keys k SET status_code = 201, response = jsonb_build_object('row', made)
         WHERE k.tenant_id = tenant AND k.actor_key = who.user_id::text AND k.key = idem_key;
    END IF;
    RETURN jsonb_build_object('answer', 'booked', 'appointment', made);
END
$$;
"""


def upgrade() -> None:
    run_script(FUNCTIONS)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION opdesk_api_book(bytea, uuid, boolean, text[], interval, text, bytea, "
        "uuid, uuid, text, text, text, text, text, uuid, boolean, uuid[], text, text, text, "
        "timestamptz); "
        "DROP FUNCTION audit_event_of(uuid, uuid, timestamptz, uuid, text, jsonb, text, text, "
        "text); "
        "DROP FUNCTION opdesk_book(uuid, uuid, text, text, text, text, text, text, boolean, "
        "boolean, uuid, uuid, uuid, boolean, uuid, uuid, timestamptz); "
        "DROP FUNCTION appointments_near(slots, uuid); "
        "DROP FUNCTION opdesk_hold(uuid, text, timestamptz, timestamptz); "
        "DROP FUNCTION opdesk_session(bytea, uuid, timestamptz, interval); "
        "DROP FUNCTION slot_takeable(slots, text, text, timestamptz); "
        "DROP FUNCTION slot_claimable(text, timestamptz, timestamptz, timestamptz);"
    )
