"""The hot paths answer in the API's own JSON, built by PostgreSQL.

``opdesk_api_book`` and ``opdesk_api_move`` answer with the appointment as its table row,
which the route turned into a mapped object, then into ``AppointmentOut``, then into JSON
again: most of the Python time a booking cost once its statement had answered. Now the
route's statement passes that row through ``api_appointment``, which writes it as
``AppointmentOut`` does (tests/scheduling/test_hot_answers.py holds the two equal), and
the route sends the text as it is. The hot-path functions themselves are unchanged, and
so is what an Idempotency-Key stores (the row).

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

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
"""


def upgrade() -> None:
    run_script(FUNCTIONS)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION api_appointment(jsonb); DROP FUNCTION api_appointment(appointments); "
        "DROP FUNCTION api_instant(timestamptz);"
    )
