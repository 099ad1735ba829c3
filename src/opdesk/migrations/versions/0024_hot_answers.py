"""The hot paths answer in the API's own JSON, built by PostgreSQL.

``opdesk_api_book`` and ``opdesk_api_move`` returned the appointment as its table row,
which the route turned into a mapped object, then into ``AppointmentOut``, then into JSON
again: most of the Python time a booking cost once its statement had answered. Now the
statement returns the appointment as ``AppointmentOut`` writes it (``api_appointment``;
tests/scheduling/test_hot_answers.py holds the two equal), and the route sends that text
as it is.

What the Idempotency-Key stores is unchanged (the row, under "row"), so a retry of a
booking made before this migration is answered as before.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

from importlib import import_module

from alembic import op

from opdesk.migrations.helpers import run_script

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

FUNCTIONS = r"""
-- An instant as the API writes it (pydantic's ISO 8601 in UTC): seconds, then the
-- microseconds only when there are any, then "Z".
CREATE FUNCTION api_instant(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM ts)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(ts AT TIME ZONE 'UTC', '.US') END
        || 'Z'
$$;

-- An appointment as the API answers it (opdesk.scheduling.schemas.AppointmentOut): the
-- same names, nesting and values, so a hot path's answer is the service path's.
CREATE FUNCTION api_appointment(a appointments) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
        'id', a.id,
        'patientId', a.patient_id,
        'doctorId', a.doctor_id,
        'slotId', a.slot_id,
        'visitType', a.visit_type,
        'reason', a.reason,
        'channel', a.channel,
        'status', a.status,
        'timeline', jsonb_build_object(
            'requestedAt', api_instant(a.timeline_requested_at),
            'confirmedAt', api_instant(a.timeline_confirmed_at),
            'checkedInAt', api_instant(a.timeline_checked_in_at),
            'inConsultAt', api_instant(a.timeline_in_consult_at),
            'completedAt', api_instant(a.timeline_completed_at),
            'noShowAt', api_instant(a.timeline_no_show_at),
            'cancelledAt', api_instant(a.timeline_cancelled_at),
            'refundedAt', api_instant(a.timeline_refunded_at)),
        'notes', a.notes,
        'waitlistOrigin', a.waitlist_origin,
        'rescheduleOf', a.reschedule_of,
        'followUpFor', a.follow_up_for,
        'createdBy', a.created_by,
        'updatedAt', api_instant(a.updated_at),
        'tokenNumber', a.token_number,
        'queueDate', a.queue_date)
$$;

-- The same, from the row as opdesk_book and opdesk_move return it (to_jsonb).
CREATE FUNCTION api_appointment(stored jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT api_appointment(jsonb_populate_record(NULL::appointments, stored))
$$;

-- As in 0022; "appointment" in the answer is now the API's JSON (the Idempotency-Key
-- still stores the row).
CREATE OR REPLACE FUNCTION opdesk_api_move(
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
    RETURN jsonb_build_object(
        'answer', 'moved', 'appointment', api_appointment(outcome -> 'appointment'));
END
$$;

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
                'answer', 'replay', 'status', earlier.status_code,
                'appointment', api_appointment(earlier.response -> 'row'));
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
    RETURN jsonb_build_object(
        'answer', 'booked', 'status', made ->> 'status', 'appointment', api_appointment(made));
END
$$;
"""


def upgrade() -> None:
    run_script(FUNCTIONS)


def downgrade() -> None:
    # 0022's two hot paths come back; they no longer need the functions above.
    earlier: str = import_module("opdesk.migrations.versions.0022_hot_moves").FUNCTIONS
    run_script(
        earlier[earlier.index("CREATE FUNCTION opdesk_api_move") :].replace(
            "CREATE FUNCTION opdesk_api_move", "CREATE OR REPLACE FUNCTION opdesk_api_move", 1
        )
    )
    op.execute(
        "DROP FUNCTION api_appointment(jsonb); DROP FUNCTION api_appointment(appointments); "
        "DROP FUNCTION api_instant(timestamptz);"
    )
