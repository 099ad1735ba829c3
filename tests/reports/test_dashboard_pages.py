"""The reports dashboard, its CSV exports and the month's PDF, as each role opens them.

The known clinic (:func:`tests.factories.reports.known_clinic`) is placed in the past week,
so the 7-day view holds all of it whatever day the tests run.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.scheduling.models import DoctorProfile
from opdesk.uow import transaction
from tests.factories import make_tenant, make_user, open_session
from tests.factories.clinical_rx import pdf_text
from tests.factories.clinics import ctx_for
from tests.factories.reports import KnownClinic, build_days, known_clinic
from tests.factories.web import browser_for

INDIA = ZoneInfo("Asia/Kolkata")


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'").split())


@pytest.fixture
def clinic(db: Database, ident: Any) -> KnownClinic:
    today = datetime.now(UTC).astimezone(INDIA).date()
    day = today - timedelta(days=4)
    known = known_clinic(db, ident, day)
    build_days(db, known.tenant, day - timedelta(days=2), today - timedelta(days=1))
    return known


def as_role(app: FastAPI, db: Database, ident: Any, clinic: KnownClinic, role: str) -> TestClient:
    return browser_for(app, open_session(db, ident, make_user(db, ident, clinic.tenant, role)))


def as_doctor(
    app: FastAPI, db: Database, ident: Any, clinic: KnownClinic, profile: uuid.UUID
) -> TestClient:
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        doctor = session.get_one(DoctorProfile, (clinic.tenant.id, profile))
        user = session.get_one(User, (clinic.tenant.id, doctor.user_id))
        session.expunge(user)
    return browser_for(app, open_session(db, ident, user))


def rows_of(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text.removeprefix("\ufeff"))))


def test_accounts_sees_the_clinic_with_its_money(
    app: FastAPI, db: Database, ident: Any, clinic: KnownClinic
) -> None:
    accounts = as_role(app, db, ident, clinic, "accounts")
    page = accounts.get("/reports?days=7")
    assert page.status_code == 200
    words = text_of(page.text)
    assert "The last 7 days" in words
    # Booked 5 (D: 3, D+1: 1, and a1 the day before D), seen 3, 1 no-show of 4 expected.
    assert "Booked 5 Seen 3 No-show rate 25.0 %" in words
    assert "Net revenue ₹1,640.00" in words  # 1,840 on D less the 200 refunded on D+1
    assert "Dr. Asha Rao 1 1 1 100.0 % ₹250.00" in words
    assert "Dr. Bala Iyer 2 0 2 50.0 % ₹1,180.00" in words
    assert "Cash 2 ₹660.00 ₹200.00" in words
    assert words.count("<svg") == 0 and page.text.count("<svg") >= 8  # drawn on the server


def test_a_doctor_sees_their_own_figures_and_no_money(
    app: FastAPI, db: Database, ident: Any, clinic: KnownClinic
) -> None:
    dr_b = as_doctor(app, db, ident, clinic, clinic.b)
    assert dr_b.get("/reports").status_code == 403
    page = dr_b.get("/reports/mine?days=7")
    assert page.status_code == 200
    words = text_of(page.text)
    assert "My figures Dr. Bala Iyer" in words
    assert "Booked 2 Seen 2 No-show rate 0.0 %" in words
    assert "₹" not in words and "revenue" not in words.casefold()
    assert "Dr. Asha Rao" not in words
    # Their exports carry their rows only, and no money table at all.
    days = rows_of(dr_b.get("/reports/mine/export/days.csv?days=7"))
    assert days[0][-1] == "booking_median_seconds"
    assert sum(int(row[3]) for row in days[1:] if row[3]) == 2  # completed
    for money in ("methods", "owed", "doctors"):
        assert dr_b.get(f"/reports/mine/export/{money}.csv").status_code == 404
    assert dr_b.get("/reports/export/days.csv").status_code == 403
    pdf = dr_b.get("/reports/mine/month.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "₹" not in pdf_text(pdf.content)


@pytest.mark.parametrize("role", ["frontdesk", "pharmacy", "patient"])
def test_other_roles_see_neither_view(
    app: FastAPI, db: Database, ident: Any, clinic: KnownClinic, role: str
) -> None:
    browser = as_role(app, db, ident, clinic, role)
    for path in ("/reports", "/reports/mine", "/reports/export/days.csv", "/reports/month.pdf"):
        assert browser.get(path).status_code == 403, path


def test_every_table_exports_as_csv(
    app: FastAPI, db: Database, ident: Any, clinic: KnownClinic
) -> None:
    admin = as_role(app, db, ident, clinic, "admin")
    exported = {
        name: rows_of(admin.get(f"/reports/export/{name}.csv?days=7"))
        for name in (
            "days",
            "doctors",
            "no-shows-by-weekday",
            "no-shows-by-hour",
            "no-shows-by-channel",
            "methods",
            "owed",
        )
    }
    assert len(exported["days"]) == 1 + 7
    assert exported["doctors"][1:] == [
        ["Dr. Asha Rao", "1", "1", "1", "1", "250.00"],
        ["Dr. Bala Iyer", "2", "0", "2", "1", "1180.00"],
    ]
    assert ["Online", "2", "1", "50.0"] in exported["no-shows-by-channel"]
    assert exported["methods"][1] == ["Cash", "660.00", "2", "200.00"]
    assert exported["owed"][1] == ["Up to 30 days", "3", "1840.00"]
    assert admin.get("/reports/export/secrets.csv").status_code == 404


def test_a_bad_period_or_month_is_named(
    app: FastAPI, db: Database, ident: Any, clinic: KnownClinic
) -> None:
    admin = as_role(app, db, ident, clinic, "admin")
    for asked in ("5", "abc", "-7"):
        bad = admin.get(f"/reports?days={asked}")
        assert bad.status_code == 422
        assert "choose 7, 30 or 90 days" in bad.text
    assert admin.get("/reports/month.pdf?month=November").status_code == 422
    assert admin.get("/reports/month.pdf?month=2999-01").status_code == 422
    month = admin.get("/reports/month.pdf")
    assert month.status_code == 200 and month.content.startswith(b"%PDF")


def test_another_clinics_admin_sees_none_of_it(
    app: FastAPI, db: Database, ident: Any, clinic: KnownClinic
) -> None:
    other = make_tenant(db, "Other Clinic")
    admin = browser_for(app, open_session(db, ident, make_user(db, ident, other, "admin")))
    words = text_of(admin.get("/reports?days=7").text)
    assert "Booked 0 Seen 0" in words
    assert "Dr. Asha Rao" not in words and "₹1,640.00" not in words
    assert rows_of(admin.get("/reports/export/doctors.csv"))[1:] == []
