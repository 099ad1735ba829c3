"""automation_events, the outbox's worker columns, per-clinic message providers and
automation settings

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 17:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.db import APP_ROLE
from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_OUTBOX_STATUSES = ("pending", "sent", "failed")
OUTBOX_STATUSES = ("pending", "sent", "delivered", "read", "failed", "cancelled")
EVENT_STATUSES = ("pending", "success", "failed", "cancelled")
CHANNELS = ("whatsapp", "sms", "email")
# The channel a worker LISTENs on; the payload is the clinic (tenant) id.
WORK_CHANNEL = "opdesk_work"
DUE_WORK = "opdesk_due_work"


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    _automation_events()
    _outbox_columns()
    _message_providers()
    _worker_support()
    op.add_column(
        "tenants",
        sa.Column(
            "automation_settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def _automation_events() -> None:
    op.create_table(
        "automation_events",
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("entity_ref_type", sa.Text(), nullable=False),
        sa.Column("entity_ref_id", sa.Uuid(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            _one_of("status", EVENT_STATUSES), name=op.f("ck_automation_events_status_known")
        ),
        sa.CheckConstraint(
            "attempts >= 0", name=op.f("ck_automation_events_attempts_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_automation_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_automation_events")),
    )
    op.create_index(
        op.f("ix_automation_events_tenant_id_rule_scheduled_for"),
        "automation_events",
        ["tenant_id", "rule", "scheduled_for"],
    )
    op.create_index(
        "uq_automation_events_tenant_id_dedupe_key",
        "automation_events",
        ["tenant_id", "dedupe_key"],
        unique=True,
    )
    op.create_index(
        op.f("ix_automation_events_tenant_id_entity_ref_type_entity_ref_id"),
        "automation_events",
        ["tenant_id", "entity_ref_type", "entity_ref_id"],
    )
    op.create_index(
        "ix_automation_events_due",
        "automation_events",
        ["tenant_id", "scheduled_for"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    enable_tenant_rls("automation_events")
    grant_app("automation_events", "SELECT, INSERT, UPDATE")


def _outbox_columns() -> None:
    for column in (
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.Uuid(), nullable=True),
        sa.Column("language", sa.Text(), server_default="en", nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fallback_of", sa.Uuid(), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
    ):
        op.add_column("notifications_outbox", column)
    op.drop_constraint(
        op.f("ck_notifications_outbox_status_known"), "notifications_outbox", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_notifications_outbox_status_known"),
        "notifications_outbox",
        _one_of("status", OUTBOX_STATUSES),
    )
    op.create_check_constraint(
        op.f("ck_notifications_outbox_attempts_not_negative"),
        "notifications_outbox",
        "attempts >= 0",
    )
    op.create_index(
        "uq_notifications_outbox_tenant_id_dedupe_key",
        "notifications_outbox",
        ["tenant_id", "dedupe_key"],
        unique=True,
    )
    op.create_index(
        op.f("ix_notifications_outbox_tenant_id_patient_id"),
        "notifications_outbox",
        ["tenant_id", "patient_id"],
    )
    op.create_index(
        op.f("ix_notifications_outbox_tenant_id_provider_message_id"),
        "notifications_outbox",
        ["tenant_id", "provider_message_id"],
    )


def _message_providers() -> None:
    op.create_table(
        "message_providers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("settings", sa.LargeBinary(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            _one_of("channel", CHANNELS), name=op.f("ck_message_providers_channel_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_message_providers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "channel", name=op.f("pk_message_providers")),
    )
    enable_tenant_rls("message_providers")
    grant_app("message_providers")


def _worker_support() -> None:
    """What the worker needs beyond the tables: a wake-up and a cross-clinic look at due work.

    * ``NOTIFY opdesk_work, '<clinic id>'`` from a trigger whenever a row becomes due now
      (inserted, retried, moved earlier, or its lease released): every code path that queues
      work wakes the workers without knowing about them, and the notification is sent at
      commit only (a rolled-back enqueue wakes nobody). Rows due later are found by the
      worker's timer.
    * :data:`DUE_WORK`: which clinics have due work, how much, since when, and when the next
      row falls due. The app role sees one clinic at a time (row-level security), so this
      SECURITY DEFINER function, owned by the migration owner and executable by the app role
      only, answers for all clinics in one call: tenant ids, counts and times, never a row's
      content. Under FORCE row-level security the owner itself is bound by policies, so a
      SELECT policy lets the owner (and so this function) see pending rows only.
      Both scans are ranges of the due indexes (``(tenant_id, scheduled_for) WHERE pending``
      and the outbox's ``(tenant_id, status, scheduled_for)``), which PostgreSQL 18 walks
      with a skip scan: one descent per clinic with pending rows, then only the rows due
      within ``horizon``.
    """
    op.execute(
        f"""
        CREATE FUNCTION opdesk_notify_work() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('{WORK_CHANNEL}', NEW.tenant_id::text);
          RETURN NULL;
        END $$
        """
    )
    # clock_timestamp(), not now(): a row queued "now" by the application is a few
    # milliseconds younger than its transaction.
    due_soon = "NEW.scheduled_for <= clock_timestamp() + interval '1 second'"
    op.execute(
        "CREATE TRIGGER notify_work AFTER INSERT OR UPDATE OF status, scheduled_for, "
        "claimed_until ON automation_events FOR EACH ROW "
        f"WHEN (NEW.status = 'pending' AND NEW.claimed_until IS NULL AND {due_soon}) "
        "EXECUTE FUNCTION opdesk_notify_work()"
    )
    op.execute(
        "CREATE TRIGGER notify_work AFTER INSERT OR UPDATE OF status, scheduled_for, "
        "claimed_until ON notifications_outbox FOR EACH ROW "
        "WHEN (NEW.status = 'pending' AND NEW.claimed_until IS NULL "
        f"AND (NEW.scheduled_for IS NULL OR {due_soon})) "
        "EXECUTE FUNCTION opdesk_notify_work()"
    )
    for table in ("automation_events", "notifications_outbox"):
        op.execute(
            f"CREATE POLICY owner_sees_pending_work ON {table} FOR SELECT TO CURRENT_USER "
            "USING (status = 'pending')"
        )
    # A leased row counts from when its lease ends; a free one from when it is due.
    op.execute(
        f"""
        CREATE FUNCTION {DUE_WORK}(at timestamptz, horizon interval)
        RETURNS TABLE (tenant_id uuid, due bigint, oldest timestamptz, next_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$
          WITH pending AS (
            SELECT e.tenant_id, e.scheduled_for, e.claimed_until
            FROM public.automation_events e
            WHERE e.status = 'pending' AND e.scheduled_for <= at + horizon
            UNION ALL
            SELECT m.tenant_id, m.created_at, m.claimed_until
            FROM public.notifications_outbox m
            WHERE m.status = 'pending' AND m.scheduled_for IS NULL
            UNION ALL
            SELECT m.tenant_id, m.scheduled_for, m.claimed_until
            FROM public.notifications_outbox m
            WHERE m.status = 'pending' AND m.scheduled_for <= at + horizon
          ), effective AS (
            SELECT p.tenant_id, p.scheduled_for AS due_at,
                   CASE WHEN p.claimed_until > at THEN p.claimed_until
                        ELSE p.scheduled_for END AS free_at
            FROM pending p
          )
          SELECT f.tenant_id,
                 count(*) FILTER (WHERE f.free_at <= at),
                 min(f.due_at) FILTER (WHERE f.free_at <= at),
                 min(f.free_at) FILTER (WHERE f.free_at > at)
          FROM effective f
          GROUP BY f.tenant_id
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {DUE_WORK}(timestamptz, interval) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {DUE_WORK}(timestamptz, interval) TO {APP_ROLE}")


def _drop_worker_support() -> None:
    op.execute(f"DROP FUNCTION {DUE_WORK}(timestamptz, interval)")
    for table in ("automation_events", "notifications_outbox"):
        op.execute(f"DROP POLICY owner_sees_pending_work ON {table}")
        op.execute(f"DROP TRIGGER notify_work ON {table}")
    op.execute("DROP FUNCTION opdesk_notify_work()")


def downgrade() -> None:
    _drop_worker_support()
    op.drop_column("tenants", "automation_settings")
    op.drop_table("message_providers")
    op.drop_index(
        op.f("ix_notifications_outbox_tenant_id_provider_message_id"),
        table_name="notifications_outbox",
    )
    op.drop_index(
        op.f("ix_notifications_outbox_tenant_id_patient_id"), table_name="notifications_outbox"
    )
    op.drop_index("uq_notifications_outbox_tenant_id_dedupe_key", table_name="notifications_outbox")
    op.drop_constraint(
        op.f("ck_notifications_outbox_attempts_not_negative"),
        "notifications_outbox",
        type_="check",
    )
    op.drop_constraint(
        op.f("ck_notifications_outbox_status_known"), "notifications_outbox", type_="check"
    )
    op.execute(
        "UPDATE notifications_outbox SET status = 'sent' WHERE status IN ('delivered', 'read')"
    )
    op.execute("UPDATE notifications_outbox SET status = 'failed' WHERE status = 'cancelled'")
    op.create_check_constraint(
        op.f("ck_notifications_outbox_status_known"),
        "notifications_outbox",
        _one_of("status", OLD_OUTBOX_STATUSES),
    )
    for column in (
        "claimed_by",
        "claimed_until",
        "fallback_of",
        "read_at",
        "delivered_at",
        "provider_message_id",
        "provider",
        "body",
        "language",
        "patient_id",
        "dedupe_key",
    ):
        op.drop_column("notifications_outbox", column)
    op.drop_table("automation_events")
