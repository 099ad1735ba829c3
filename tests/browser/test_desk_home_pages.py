"""The desk's home page in a real browser (issue 14, item 4): today's totals, who is due in
the next hour (a Hindi name among them, drawn in its own letters), which doctor is running
late, and Check in from the page. Screenshots at both widths.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

import pytest
import time_machine

from opdesk.db import Database
from opdesk.scheduling import lifecycle, waitlist
from opdesk.scheduling.service import Opening
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, settle, shot, staff_sign_in
from tests.factories import (
    CLINIC_ZONE,
    DAY,
    book,
    ctx_for,
    generate,
    make_doctor,
    make_tenant,
    make_user,
    patients,
    set_week,
    slots_of,
)
from tests.factories.scheduling import OFFER_FOR

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def at(hour: int, minute: int) -> datetime:
    return datetime.combine(DAY, time(hour, minute), CLINIC_ZONE)


@pytest.fixture(autouse=True)
def half_past_ten() -> Iterator[datetime]:
    """10:30 at the clinic on DAY (the clock keeps running)."""
    moment = at(10, 30)
    with time_machine.travel(moment, tick=True):
        yield moment


def a_morning(db: Database, ident: Any, name: str) -> tuple[Tenant, list[Any]]:
    """Dr. Anjali has seen three patients in 20-25 minutes each, has one with her and two
    waiting (one a walk-in) and लक्ष्मी अय्यर due at 10:45; Dr. Farhan has one waiting for
    11:00 and Suresh due at 11:15.
    """
    tenant = make_tenant(db, name)
    doctors = []
    for label in ("Dr. Anjali Deshmukh", "Dr. Farhan Shaikh"):
        doctor = make_doctor(db, ident, tenant, name=label)
        set_week(db, tenant, doctor, Opening(0, time(9), time(12), 15))
        with time_machine.travel(at(7, 0), tick=False):
            generate(db, tenant, doctor, DAY, 1)
        doctors.append(doctor)
    anjali, farhan = (slots_of(db, tenant, d) for d in doctors)
    names = [
        ("Meena", "Iyer"), ("Kiran", "Bhat"), ("Ravi", "Rao"), ("Priya", "Nair"),
        ("Arjun", "Menon"), ("लक्ष्मी", "अय्यर"), ("Zoya", "Khan"), ("Suresh", "Jadhav"),
        ("Farida", "Sheikh"),
    ]  # fmt: skip
    people = [patients(db, ident, tenant, 1, name={"first": f, "last": la})[0] for f, la in names]
    with time_machine.travel(at(7, 0), tick=False):
        seen = [book(db, tenant, anjali[i], people[i], channel="phone") for i in range(3)]
        now_in = book(db, tenant, anjali[4], people[3])  # 10:00
        waiting = book(db, tenant, anjali[5], people[4])  # 10:15
        book(db, tenant, anjali[7], people[5])  # 10:45: लक्ष्मी
        early = book(db, tenant, farhan[8], people[6])  # 11:00
        book(db, tenant, farhan[9], people[7])  # 11:15
    moves = [
        # Each seen for 20 minutes, one after another from 9:00.
        *[(at(9, 0) + timedelta(minutes=15 * i - 5), a, "checked-in") for i, a in enumerate(seen)],
        *[(at(9, 0) + timedelta(minutes=22 * i), a, "in-consult") for i, a in enumerate(seen)],
        *[(at(9, 20) + timedelta(minutes=22 * i), a, "completed") for i, a in enumerate(seen)],
        (at(9, 58), now_in, "checked-in"),
        (at(10, 6), now_in, "in-consult"),
        (at(10, 12), waiting, "checked-in"),
        (at(10, 20), early, "checked-in"),
    ]
    offers = waitlist.Offers(ident.cipher, OFFER_FOR)
    for when, appointment, to in sorted(moves, key=lambda m: m[0]):
        with time_machine.travel(when, tick=False):
            ctx = ctx_for(tenant.id)
            with transaction(db, ctx) as session:
                lifecycle.transition(session, ctx, offers, appointment_id=appointment.id, to=to)
    with time_machine.travel(at(10, 25), tick=False):
        ctx = ctx_for(tenant.id)
        with transaction(db, ctx) as session:
            lifecycle.walk_in(
                session,
                ctx,
                patient_id=people[8].id,
                doctor_id=doctors[0].id,
                visit_type="consultation",
            )
    return tenant, people


HINDI_DRAWN = """() => document.fonts.check("16px 'Noto Sans Devanagari'", "लक्ष्मी अय्यर")"""


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_desk_home_answers_how_today_is_going(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant, _people = a_morning(db, ident, f"Home Clinic {width}")
    desk = make_user(db, ident, tenant, "frontdesk", name="Ravi Patil")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, desk.email or "")
    page.wait_for_url("**/app")
    assert page.get_by_role("heading", name="Namaste, Ravi Patil").is_visible()
    totals = page.locator("#today-totals")
    assert totals.get_by_role("heading").inner_text().startswith("Today")
    assert totals.locator('td[data-label="Booked"] strong').inner_text() == "9"
    assert totals.locator('td[data-label="Seen"] strong').inner_text() == "3"
    arrivals = page.locator("#arrivals")
    assert arrivals.get_by_role("link", name="लक्ष्मी अय्यर").is_visible()
    assert arrivals.get_by_role("button", name="Check in").count() == 2
    late = page.locator("#running-late")
    assert late.get_by_text("running about 40 min late").is_visible()
    assert late.get_by_text("on time").is_visible()
    settle(page)
    assert page.evaluate(HINDI_DRAWN)
    shot(page, f"desk-home-{width}")
    assert problems == [], problems
    page.context.close()


def test_check_in_from_the_home_page(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    tenant, _people = a_morning(db, ident, "Home Check-in Clinic")
    desk = make_user(db, ident, tenant, "frontdesk", name="Ravi Patil")
    page, problems = open_page(browser, "desktop")
    staff_sign_in(page, live_server, tenant.slug, desk.email or "")
    page.wait_for_url("**/app")
    arrivals = page.locator("#arrivals")
    assert arrivals.locator("tbody tr").first.get_by_text("लक्ष्मी अय्यर").is_visible()
    arrivals.locator("tbody tr").first.get_by_role("button", name="Check in").click()
    page.wait_for_url("**/queue")
    assert page.get_by_text("Checked in: token 7.").is_visible()
    page.goto(f"{live_server}/app")
    assert arrivals.get_by_text("लक्ष्मी अय्यर").count() == 0
    assert arrivals.get_by_role("link", name="Suresh Jadhav").is_visible()
    shot(page, "desk-home-after-check-in-desktop")
    assert problems == [], problems
    page.context.close()


def test_pharmacy_sees_its_links_and_no_patients(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    tenant, _people = a_morning(db, ident, "Home Pharmacy Clinic")
    chemist = make_user(db, ident, tenant, "pharmacy", name="Farah Chemist")
    page, problems = open_page(browser, "phone")
    staff_sign_in(page, live_server, tenant.slug, chemist.email or "")
    page.wait_for_url("**/app")
    assert page.locator("#desk-today").count() == 0
    assert page.get_by_text("लक्ष्मी").count() == 0
    assert page.locator("main").get_by_role("link", name="Prescriptions").is_visible()
    shot(page, "desk-home-pharmacy-phone")
    assert problems == [], problems
    page.context.close()
