"""The audit guard's rule that the mutants surviving ``make mutate`` showed untested.

Each test names, in a comment, the mutmut ids (from ``mutants/survivors.txt``) it kills.
A survivor left alone: ``x__ddl__mutmut_6`` writes the conditions' ``or`` as ``OR``, the
same SQL.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from opdesk import audit
from opdesk.clinical.models import ClinicService
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import clinic_session, ctx_for, make_tenant


def _add_service_with_a_clinic_wide_event_about(
    db: Database, tenant: Tenant, collection: str
) -> uuid.UUID:
    """Add a catalogue service; the transaction's one audit event is about ``collection``
    for the whole clinic (no entity id), as each batch of ``opdesk keys rotate`` is.
    """
    ctx = ctx_for(tenant.id)
    service_id = uuid.uuid4()
    with transaction(db, ctx) as session:
        session.add(
            ClinicService(
                tenant_id=tenant.id,
                id=service_id,
                code=f"ECG-{service_id.hex[:8]}",
                name="ECG",
                price=Decimal("300.00"),
                created_at=ctx.now(),
                updated_at=ctx.now(),
            )
        )
        session.flush()
        audit.record(
            ctx,
            entity=collection,
            entity_id=None,
            action="update",
            diff={"rekeyed": {"rows": [[str(service_id)]]}},
        )
    return service_id


def test_a_clinic_wide_event_about_a_table_covers_a_change_to_any_of_its_rows(
    db: Database,
) -> None:
    # x__ddl__mutmut_7 (the clinic-wide event looked for was about a table named 'None', so
    # only the tables that list a sweep of their own were covered by one).
    tenant = make_tenant(db, "Sweep Clinic")
    added = _add_service_with_a_clinic_wide_event_about(db, tenant, "clinic_services")
    with clinic_session(db, tenant.id) as session:
        assert session.scalar(select(ClinicService.id).where(ClinicService.id == added)) == added


def test_a_clinic_wide_event_about_another_table_covers_nothing_here(db: Database) -> None:
    tenant = make_tenant(db, "Other Sweep Clinic")
    with pytest.raises(DBAPIError, match="audit guard: clinic_services row"):
        _add_service_with_a_clinic_wide_event_about(db, tenant, "formulary_drugs")
