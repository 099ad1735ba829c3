"""``opdesk report build``: builds any range for one clinic or all, and may be repeated."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.scheduling.models import AppointmentStatus
from tests.factories.cli import opdesk
from tests.factories.clinics import make_tenant
from tests.factories.people import make_doctor, patients
from tests.factories.reports import History, clinic_days

DAY = date(2026, 11, 10)


def test_build_a_range_twice_then_a_range_longer_than_a_year(
    db: Database, ident: Identity, tmp_path: Path
) -> None:
    tenant = make_tenant(db, "Command Clinic")
    doctor = make_doctor(db, ident, tenant)
    (patient,) = patients(db, ident, tenant, 1)
    h = History(db, tenant, ZoneInfo(tenant.timezone))
    h.appointment(
        doctor, patient, slot_at=h.at(DAY, 10), status=AppointmentStatus.CONFIRMED,
        requested=h.at(DAY, 9), confirmed=h.at(DAY, 9, 1),
    )  # fmt: skip

    def build(first: str, last: str) -> str:
        done = opdesk(
            "report", "build", "--from", first, "--to", last, "--tenant", tenant.slug,
            database=db, data_dir=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"{tenant.slug}: 2 day(s) built, 2 changed" in build("2026-11-10", "2026-11-11")
    days = clinic_days(db, tenant)
    assert [days[DAY].appointments_requested, days[DAY].booking_median_seconds] == [1, 60]
    assert f"{tenant.slug}: 2 day(s) built, 0 changed" in build("2026-11-10", "2026-11-11")
    # 425 days: built a year at a time, each day once.
    assert f"{tenant.slug}: 425 day(s) built, 423 changed" in build("2025-10-01", "2026-11-29")
    assert len(clinic_days(db, tenant)) == 425


def test_a_backwards_range_or_an_unknown_clinic_is_refused(db: Database, tmp_path: Path) -> None:
    tenant = make_tenant(db, "Refusing Clinic")
    backwards = opdesk(
        "report", "build", "--from", "2026-11-11", "--to", "2026-11-10", "--tenant", tenant.slug,
        database=db, data_dir=tmp_path,
    )  # fmt: skip
    assert backwards.returncode == 1
    assert "--to comes before --from" in backwards.stderr
    nobody = opdesk(
        "report", "build", "--from", "2026-11-10", "--to", "2026-11-10", "--tenant", "nobody",
        database=db, data_dir=tmp_path,
    )  # fmt: skip
    assert nobody.returncode == 1
    assert "no clinic with the code 'nobody'" in nobody.stderr
    not_a_date = opdesk(
        "report", "build", "--from", "10/11/2026", "--to", "2026-11-10",
        database=db, data_dir=tmp_path,
    )  # fmt: skip
    assert not_a_date.returncode == 2
    assert "--from" in not_a_date.stderr
    assert clinic_days(db, tenant) == {}
