"""A check for tests: no change to an audited table commits without its audit event.

Installed into a test database (never by a migration), it adds

* a row trigger on every audited table that notes each inserted, updated or deleted
  row of the transaction;
* a trigger on ``audit_events`` that notes each event the transaction appends;
* a deferred constraint trigger that, at commit, looks for an event covering each
  noted row and otherwise fails the commit, naming the table and the row.

An event *covers* a row when it names the row itself, or the record the row belongs to
(a doctor's weekly hours belong to the doctor's profile, a booked slot to its
appointment, a device to the sign-in that used it). :data:`COVERED_BY` says which.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine

SCHEMA = "audit_guard"
# A test that writes straight to a table on purpose (to show what a constraint refuses)
# sets this for its transaction: ``set_config('audit_guard.skip', 'on', true)``.
SKIP_SETTING = "audit_guard.skip"


def _names(collection: str, field: str = "id") -> str:
    """The event is about ``collection`` and names the row's ``field``."""
    return f"(e.collection = '{collection}' and e.entity_id = (r.row ->> '{field}')::uuid)"


def _collection(collection: str) -> str:
    """Any event about ``collection`` in the transaction (a row with no id of its own)."""
    return f"(e.collection = '{collection}')"


def _sweep_of(collection: str) -> str:
    """A sweeper's event for the whole clinic (it lists the rows in its diff)."""
    return f"(e.collection = '{collection}' and e.entity_id is null)"


def _sharing(collection: str, column: str) -> str:
    """The event is about a ``collection`` row with the same ``column`` (e.g. doctor)."""
    return (
        f"(e.collection = '{collection}' and exists (select 1 from public.{collection} x "
        f"where x.tenant_id = r.tenant_id and x.id = e.entity_id "
        f"and x.{column} = (r.row ->> '{column}')::uuid))"
    )


def _pointed_at_by(collection: str, column: str) -> str:
    """The event is about a ``collection`` row whose ``column`` points at this row."""
    return (
        f"(e.collection = '{collection}' and exists (select 1 from public.{collection} x "
        f"where x.tenant_id = r.tenant_id and x.id = e.entity_id "
        f"and x.{column} = (r.row ->> 'id')::uuid))"
    )


# Audited table -> SQL conditions over ``r`` (the changed row) and ``e`` (an event of
# the same transaction); any one of them covers the change.
COVERED_BY: dict[str, tuple[str, ...]] = {
    "users": (_names("users"),),
    # A device is first seen, and seen again, by a sign-in: the session names it.
    "devices": (_names("devices"), _pointed_at_by("sessions", "device_id")),
    "doctor_profiles": (_names("doctor_profiles"),),
    "availability_templates": (_names("doctor_profiles", "doctor_id"),),
    "availability_exceptions": (_names("availability_exceptions"),),
    "slots": (
        _names("slots"),
        _names("slots", "doctor_id"),  # generation: one event per run, named by doctor
        _names("doctor_profiles", "doctor_id"),  # new weekly hours replace free slots
        _sharing("availability_exceptions", "doctor_id"),  # time away takes free slots
        _sweep_of("slots"),  # lapsed holds
        _pointed_at_by("appointments", "slot_id"),
        _pointed_at_by("waitlist_locks", "slot_id"),
    ),
    "appointments": (_names("appointments"),),
    "waitlist_entries": (_names("waitlist_entries"), _pointed_at_by("waitlist_locks", "entry_id")),
    "waitlist_locks": (_names("waitlist_locks"),),
    "patients": (_names("patients"),),
    "consent_templates": (_names("consent_templates"),),
    "consents": (_names("consents"),),
    "documents": (_names("documents"),),
    "documents_share_links": (
        _names("documents_share_links"),
        _sweep_of("documents_share_links"),
    ),
    # Scheduled, moved, run, retried or cancelled: an event names it. A worker's lease
    # (claimed_until/claimed_by) is written for a batch at once: one event for the clinic
    # lists the rows leased (or released) and the worker.
    "automation_events": (_names("automation_events"), _sweep_of("automation_events")),
    # notifications_outbox is not guarded: a worker renders, leases and defers messages
    # as bookkeeping of its own; what a person does to a message (retry) and each send or
    # failure are audited by name.
    # Keyed by clinic and channel, with no id of its own: any provider event covers it.
    "message_providers": (_collection("message_providers"),),
    # Clinical records: a visit's note versions, diagnoses, vitals and services belong to
    # the visit; a prescription's items to the prescription; an order's report files and
    # a diet plan's ticks to their order and plan.
    "visits": (_names("visits"),),
    "visits_soap_versions": (_names("visits", "visit_id"),),
    "visits_addenda": (_names("visits_addenda"), _names("visits", "visit_id")),
    "visits_diagnoses": (_names("visits", "visit_id"),),
    "visits_vitals": (_names("visits", "visit_id"),),
    "visits_services": (_names("visits", "visit_id"),),
    "clinic_services": (_names("clinic_services"),),
    "formulary_drugs": (_names("formulary_drugs"), _sweep_of("formulary_drugs")),
    "signing_keys": (_names("signing_keys"),),
    "prescriptions": (_names("prescriptions"),),
    "prescriptions_items": (_names("prescriptions", "prescription_id"),),
    "prescription_templates": (_names("prescription_templates"),),
    "orders": (_names("orders"),),
    "orders_attachments": (_names("orders", "order_id"),),
    "diet_plan_templates": (_names("diet_plan_templates"), _sweep_of("diet_plan_templates")),
    "diet_plans": (_names("diet_plans"),),
    "diet_plans_adherence": (_names("diet_plans", "diet_plan_id"),),
    # Billing: a number counter moves with the invoice it numbers; a ledger row is named
    # by the event of the invoice, payment or refund that wrote it.
    "invoices": (_names("invoices"),),
    "invoice_counters": (_collection("invoices"),),
    "payments": (_names("payments"),),
    "payments_refunds": (_names("payments_refunds"),),
    "ledger_entries": (
        _names("invoices", "invoice_id"),
        _names("payments", "payment_id"),
        _names("payments_refunds", "refund_id"),
    ),
    "gateway_events": (_names("gateway_events"),),
    "billing_settings": (_collection("billing_settings"),),
    "consultation_fees": (_names("doctor_profiles", "doctor_id"), _collection("consultation_fees")),
    # Derived figures: a build's one event (the days it wrote) covers every row it wrote.
    "report_daily": (_collection("report_daily"),),
    "report_daily_doctors": (_collection("report_daily"),),
    "report_daily_no_shows": (_collection("report_daily"),),
}


def _ddl() -> str:
    # Besides its own conditions, every table's rows are covered by a clinic-wide event
    # about the table (``opdesk keys rotate`` lists the rows each batch sealed anew).
    covered = "\n".join(
        f"      when '{table}' then ({' or '.join((*conditions, _sweep_of(table)))})"
        for table, conditions in COVERED_BY.items()
    )
    triggers = "\n".join(
        f"create trigger audit_guard_row after insert or update or delete on public.{table} "
        f"for each row execute function {SCHEMA}.note_row();"
        for table in COVERED_BY
    )
    return f"""
    drop schema if exists {SCHEMA} cascade;
    create schema {SCHEMA};
    create table {SCHEMA}.changed_rows (
      xid xid8 not null, tbl text not null, tenant_id uuid not null, row jsonb not null,
      op text not null, query text not null
    );
    create table {SCHEMA}.events (xid xid8 not null, collection text, entity_id uuid);
    create index on {SCHEMA}.events (xid);

    create function {SCHEMA}.note_row() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public as $$
    declare changed jsonb := to_jsonb(case when tg_op = 'DELETE' then old else new end);
    begin
      insert into {SCHEMA}.changed_rows
        values (pg_current_xact_id(), tg_table_name, (changed ->> 'tenant_id')::uuid, changed,
                tg_op, left(current_query(), 300));
      return null;
    end $$;

    create function {SCHEMA}.note_event() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public as $$
    begin
      insert into {SCHEMA}.events values (pg_current_xact_id(), new.entity_collection,
                                          new.entity_id);
      return null;
    end $$;

    create function {SCHEMA}.check_row() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public as $$
    declare r {SCHEMA}.changed_rows := new;
    begin
      if current_setting('{SKIP_SETTING}', true) = 'on' then
        return null;
      end if;
      perform set_config('app.tenant_id', r.tenant_id::text, true);
      if not exists (
        select 1 from {SCHEMA}.events e where e.xid = r.xid and case r.tbl
{covered}
          else false end
      ) then
        raise exception 'audit guard: % row % changed without an audit event (% by: %)',
          r.tbl, r.row ->> 'id', r.op, r.query using errcode = 'P0001';
      end if;
      return null;
    end $$;

    create trigger audit_guard_event after insert on public.audit_events
      for each row execute function {SCHEMA}.note_event();
    create constraint trigger audit_guard_check after insert on {SCHEMA}.changed_rows
      deferrable initially deferred for each row execute function {SCHEMA}.check_row();
    {triggers}
    """


def install(target: Engine | Connection) -> None:
    """Install the guard into a migrated database (as its owner)."""
    if isinstance(target, Engine):
        with target.begin() as conn:
            install(conn)
        return
    # Straight to psycopg: the DDL's '%' are PL/pgSQL's, not parameter markers.
    target.connection.driver_connection.execute(_ddl())  # type: ignore[union-attr]
