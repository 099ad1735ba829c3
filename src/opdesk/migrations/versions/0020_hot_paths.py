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
-- {"refused": "patient" | "blocked" | "slot-unknown" | "slot-taken"}, {"refused":
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
"""


def upgrade() -> None:
    # Straight to psycopg without parameters (see 0019): '?' and ':' are SQL here.
    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    driver.execute(FUNCTIONS)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION opdesk_book(uuid, uuid, text, text, text, text, text, text, boolean, "
        "boolean, uuid, uuid, uuid, boolean, uuid, uuid, timestamptz); "
        "DROP FUNCTION appointments_near(slots, uuid); "
        "DROP FUNCTION opdesk_hold(uuid, text, timestamptz, timestamptz); "
        "DROP FUNCTION opdesk_session(bytea, uuid, timestamptz, interval); "
        "DROP FUNCTION slot_takeable(slots, text, text, timestamptz); "
        "DROP FUNCTION slot_claimable(text, timestamptz, timestamptz, timestamptz);"
    )
