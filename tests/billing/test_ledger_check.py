"""`opdesk ledger check`: clean on agreeing books, names each difference otherwise."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from opdesk.billing import ledger
from opdesk.billing.models import LedgerKind
from opdesk.db import Database
from tests.factories import billing as bill
from tests.factories import clinic_session, ctx_for, make_tenant, unaudited
from tests.factories.cli import opdesk


def test_ledger_check_passes_on_agreeing_books_and_fails_naming_a_difference(
    db: Database, ident: Any, tmp_path: Path
) -> None:
    tenant = make_tenant(db, "Ledger Clinic")
    payment = bill.paid(db, ident, tenant, "300.00")
    done = opdesk("ledger", "check", "--tenant", tenant.slug, database=db, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{tenant.slug}: invoices, payments, refunds and ledger agree" in done.stdout
    with clinic_session(db, tenant.id) as session:
        unaudited(session)  # a bug's stray row, written around the services
        ledger.append(
            session,
            ctx_for(tenant.id),
            patient_id=payment.patient_id,
            kind=LedgerKind.INVOICE,
            amount=Decimal("5.00"),
            description="stray charge",
            invoice_id=payment.invoice_id,
        )
    found = opdesk("ledger", "check", "--tenant", tenant.slug, database=db, data_dir=tmp_path)
    assert found.returncode == 1
    assert f"{tenant.slug}: 2 difference(s)" in found.stdout
    assert "ledger charged 305.00, invoice total 300.00" in found.stdout
    assert f"patient {payment.patient_id}: ledger balance 5.00, invoices due 0.00" in found.stdout
