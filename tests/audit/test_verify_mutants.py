"""``audit verify`` cases that mutation testing (``make mutate``) found untested: a chain
whose head row is gone, and the check of one named clinic. The ids in the comments are
mutmut's, from ``mutants/survivors.txt``.
"""

from __future__ import annotations

from sqlalchemy import text

from opdesk.audit.verify import verify_all, verify_tenant
from opdesk.db import Database, set_tenant_setting
from tests.factories import make_tenant


def test_a_deleted_chain_head_is_reported_as_events_added_after_an_empty_chain(
    db: Database,
) -> None:
    # x__check_head__mutmut_13: with no head row the check crashed instead of reporting.
    tenant = make_tenant(db, "Headless Clinic")
    with db.owner_engine.connect() as conn:
        trans = conn.begin()
        try:
            set_tenant_setting(conn, tenant.id)
            gone = conn.execute(
                text("delete from audit_chain_heads where tenant_id = :t"), {"t": tenant.id}
            )
            assert gone.rowcount == 1
            report = verify_tenant(conn, tenant.id)
        finally:
            trans.rollback()
    assert (report.ok, report.checked, report.bad_seq, report.bad_event_id) == (
        False,
        1,
        1,
        None,
    )
    assert report.problem == (
        "chain ends at seq 1 but its head records seq 0: "
        "events were removed from or added to the end"
    )


def test_verifying_one_clinic_reports_that_clinic_only(db: Database) -> None:
    # x_verify_all__mutmut_2: a named clinic was not looked up (nothing was checked).
    one, _other = make_tenant(db, "One Clinic"), make_tenant(db, "Other Clinic")
    with db.owner_engine.connect() as conn:
        reports = verify_all(conn, one.id)
    assert [(r.tenant_id, r.ok, r.checked) for r in reports] == [(one.id, True, 1)]


def test_an_edited_chain_head_is_reported_in_full(db: Database) -> None:
    # x__check_head__mutmut_24 and the mutants of its words: only the start of the head's
    # report was ever read.
    tenant = make_tenant(db, "Edited Head Clinic")
    with db.owner_engine.connect() as conn:
        trans = conn.begin()
        try:
            set_tenant_setting(conn, tenant.id)
            conn.execute(
                text(
                    "update audit_chain_heads set last_hash = repeat('ab', 32) where tenant_id = :t"
                ),
                {"t": tenant.id},
            )
            report = verify_tenant(conn, tenant.id)
        finally:
            trans.rollback()
    assert (report.ok, report.checked, report.bad_seq, report.bad_event_id) == (
        False,
        1,
        1,
        None,
    )
    assert report.problem == (
        "chain ends at seq 1 but its head records seq 1: the last event's hash differs "
        "from the head's: the last event or the head was edited"
    )
    assert report.describe() == f"tenant {tenant.id}: BROKEN at seq 1: {report.problem}"
