"""Wake the workers once per clinic backlog, not once per row.

Every row that became due now sent ``NOTIFY opdesk_work`` at its commit (0012). PostgreSQL
queues notifications in commit order: a committing transaction that notifies takes one
lock, held through its WAL flush, that every other notifying transaction waits for, in
every clinic. Each booking queues its follow-up due now, so at a busy desk the bookings'
commits ran one at a time on that lock. On the bench machine 16 clients committed 11,900
small transactions a second without a NOTIFY and 4,600-4,800 with one (pgbench, same
server); on a disk with slower flushes the ceiling is lower still.

Now a row notifies only when its clinic has no other free row due in the same queue. If
there is one, a worker is already bound to come for the clinic: that row's commit woke it
(or the commit of the row before it, and so on), or the worker's timer is set for it. A
worker that finds work looks again as soon as it is done, so it finds the new row too,
unless it looked for the last time in the moment between the new row's check and its
commit; then the row waits for the worker's next look, at most its poll interval (5 s by
default).

Revision ID: 0030
Revises: 0029
"""

from __future__ import annotations

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

# The trigger (0012) calls this only for a row that is pending, free, and due within a
# second. A row leased by a worker (claimed_until set) is not free: a lapsed lease wakes.
COALESCED = """
CREATE OR REPLACE FUNCTION opdesk_notify_work() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'automation_events' THEN
    IF EXISTS (SELECT 1 FROM automation_events e
                WHERE e.tenant_id = NEW.tenant_id AND e.status = 'pending'
                  AND e.claimed_until IS NULL AND e.id <> NEW.id
                  AND e.scheduled_for <= clock_timestamp()) THEN
      RETURN NULL;  -- the clinic's backlog has woken a worker already
    END IF;
  ELSIF EXISTS (SELECT 1 FROM notifications_outbox m
                 WHERE m.tenant_id = NEW.tenant_id AND m.status = 'pending'
                   AND m.claimed_until IS NULL AND m.id <> NEW.id
                   AND (m.scheduled_for IS NULL OR m.scheduled_for <= clock_timestamp())) THEN
    RETURN NULL;
  END IF;
  PERFORM pg_notify('opdesk_work', NEW.tenant_id::text);
  RETURN NULL;
END $$
"""

EACH_ROW = """
CREATE OR REPLACE FUNCTION opdesk_notify_work() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('opdesk_work', NEW.tenant_id::text);
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute(COALESCED)


def downgrade() -> None:
    op.execute(EACH_ROW)
