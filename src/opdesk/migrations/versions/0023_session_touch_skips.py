"""A session's once-a-minute touch no longer makes its other requests queue.

``opdesk_session`` moves ``last_seen_at`` at most once a minute. Every request of the
session arriving in the same instant read the old time, so each went to UPDATE the row,
and each waited for the one before it to finish its whole transaction (a booking's
included, and its wait for the audit chain's lock): once a minute a desk's requests ran
one at a time. Now the touch takes the row only if no one else holds it (``SKIP
LOCKED``) and only while it is still due; the others go on, since one of them is moving
it anyway. A stage change (a new device approved) still waits: it must be written.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from importlib import import_module

from opdesk.migrations.helpers import run_script

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION opdesk_session(
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
    IF stage <> hit.was THEN
        -- Rare, and it must be written: wait for the row if need be.
        UPDATE sessions s
           SET stage = opdesk_session.stage,
               last_seen_at = CASE WHEN at - hit.last_seen_at >= touch_every
                                   THEN at ELSE s.last_seen_at END
         WHERE s.tenant_id = tenant AND s.id = hit.id;
    ELSIF at - hit.last_seen_at >= touch_every THEN
        -- The touch: by whichever request gets the row first; one finding it taken, or
        -- already touched by a request that finished meanwhile, leaves it.
        UPDATE sessions s
           SET last_seen_at = at
         WHERE s.tenant_id = tenant AND s.id = (
                SELECT x.id FROM sessions x
                 WHERE x.tenant_id = tenant AND x.id = hit.id
                   AND at - x.last_seen_at >= touch_every
                   FOR NO KEY UPDATE SKIP LOCKED);
    END IF;
    RETURN NEXT;
END
$$;
"""


def upgrade() -> None:
    run_script(FUNCTIONS)


def downgrade() -> None:
    # 0020's definition, as it was: its script holds it among the other hot-path functions.
    script: str = import_module("opdesk.migrations.versions.0020_hot_paths").FUNCTIONS
    start = script.index("CREATE FUNCTION opdesk_session(")
    end = script.index("$$;", start) + len("$$;")
    run_script(script[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
