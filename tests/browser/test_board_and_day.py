"""The waiting-room display, every doctor's day, the printable day list and the week on a
phone, in a real browser (issue 10, items 21, 22, 27): nothing wider than the screen, tap
targets measured (24 px everywhere, 44 px on phones), the display's tokens readable across
a room and kept on screen through an outage, the day list as it prints. Screenshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from opdesk.db import Database
from opdesk.scheduling import booking, lifecycle, queries, service, waitlist
from opdesk.scheduling.service import Opening
from opdesk.uow import transaction
from tests.browser.helpers import (
    SCREENSHOTS,
    WIDTHS,
    assert_fits,
    open_page,
    settle,
    shot,
    staff_sign_in,
)
from tests.factories import CLINIC_ZONE, DAY, ctx_for, make_tenant, make_user, patients
from tests.factories.scheduling import OFFER_FOR

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

# What the tap-target rule measures: every link and button of the calendar's own parts.
TARGETS = (
    ".calendar-nav a, .doctor-switch a, .cal-day h2 a, .slot .who a, .cell .who a,"
    " .slot-actions button, .slot-actions [role=button], .day-grid thead a"
)
TV = (1920, 1080)


@pytest.fixture(autouse=True)
def clinic_morning() -> Iterator[datetime]:
    """10:05 at the clinic on :data:`DAY` (the clock keeps running)."""
    moment = datetime.combine(DAY, time(10, 5), CLINIC_ZONE)
    with time_machine.travel(moment, tick=True):
        yield moment


NAMES = (
    ("Suresh", "Jadhav"),
    ("लक्ष्मी", "अय्यर"),
    ("Ravi", "Rao"),
    ("Meena", "Kulkarni"),
    ("Imran", "Qureshi"),
    ("முருகன்", "சுப்பிரமணியன்"),
    ("Priya", "Venkataraman"),
)


def a_busy_morning(db: Database, ident: Any, name: str) -> tuple[Any, list[Any], list[Any]]:
    """Three doctors working 9:00-13:00 today; a patient with the first two, some booked
    later this morning, some walked in and waiting.
    """
    tenant = make_tenant(db, name)
    people = [
        patients(db, ident, tenant, 1, name={"first": first, "last": last})[0]
        for first, last in NAMES
    ]
    ctx = ctx_for(tenant.id)
    offers = waitlist.Offers(ident.cipher, OFFER_FOR)
    doctors = []
    for label in ("Dr. Anjali Deshmukh", "Dr. Farhan Shaikh", "Dr. Kavita Iyer"):
        user = make_user(db, ident, tenant, "doctor", name=label)
        with transaction(db, ctx) as session:
            doctor = service.create_doctor(
                session,
                ctx,
                user_id=user.id,
                fields=service.DoctorFields(
                    display_name=label,
                    specialty="General medicine",
                    registration_number="MMC-2011-04512",
                    consultation_fee=Decimal("500"),
                    visit_types=(service.VisitType("consultation", "Consultation", 15),),
                ),
            )
            service.set_templates(
                session,
                ctx,
                doctor_id=doctor.id,
                openings=[Opening(DAY.weekday(), time(9), time(13), 15)],
                valid_from=DAY,
            )
            service.generate_slots(session, ctx, doctor_id=doctor.id, days=1, first_day=DAY)
            doctors.append(doctor)
    with transaction(db, ctx) as session:
        window = queries.SlotWindow(DAY, DAY)
        for doctor, picks in ((doctors[0], (6, 7, 9)), (doctors[1], (6, 8))):
            slots = queries.slots(session, ctx, doctor.id, window, None, True)
            for index, person in zip(picks, people[2:], strict=False):
                booking.book(
                    session,
                    ctx,
                    booking.BookingRequest(slots[index].id, person.id, "consultation", "phone"),
                )

        def walk(doctor: Any, person: Any, *to: str) -> None:
            made = lifecycle.walk_in(
                session, ctx, patient_id=person.id, doctor_id=doctor.id, visit_type="consultation"
            )
            for step in to:
                lifecycle.transition(session, ctx, offers, appointment_id=made.id, to=step)

        walk(doctors[0], people[3], "in-consult", "completed")
        walk(doctors[0], people[0], "in-consult")
        walk(doctors[0], people[1])
        walk(doctors[0], people[5])
        walk(doctors[0], people[6])
        walk(doctors[0], people[4])
        walk(doctors[1], people[2], "in-consult")
        walk(doctors[1], people[4])
    return tenant, doctors, people


def signed_in_page(
    browser: Any,
    live_server: str,
    db: Database,
    ident: Any,
    tenant: Any,
    size: tuple[int, int] | str,
) -> tuple[Any, list[str]]:
    if isinstance(size, str):
        page, problems = open_page(browser, size)
    else:
        page, problems = open_page(browser, "desktop")
        page.set_viewport_size({"width": size[0], "height": size[1]})
    desk = make_user(db, ident, tenant, "frontdesk", name="Ravi Patil")
    staff_sign_in(page, live_server, tenant.slug, desk.email or "")
    page.wait_for_url("**/app")
    return page, problems


def small_targets(page: Any, least: int) -> list[str]:
    """Visible links and buttons of the calendar shorter or narrower than ``least`` px."""
    return list(
        page.evaluate(
            """([selector, least]) => Array.from(document.querySelectorAll(selector))
                .filter((el) => el.offsetParent !== null)
                .map((el) => [el, el.getBoundingClientRect()])
                .filter(([, box]) => box.height < least || box.width < least)
                .map(([el, box]) => `${el.textContent.trim()} ${box.width}x${box.height}`)""",
            [TARGETS, least],
        )
    )


# ------------------------------------------------------------------ the waiting-room display


@pytest.mark.parametrize("size", [TV, (1280, 800)], ids=["tv-1920", "screen-1280"])
def test_the_display_reads_from_across_the_room_and_has_nothing_to_press(
    browser: Any, live_server: str, db: Database, ident: Any, size: tuple[int, int]
) -> None:
    tenant, _doctors, _people = a_busy_morning(db, ident, f"Display Clinic {size[0]}")
    page, problems = signed_in_page(browser, live_server, db, ident, tenant, size)
    page.goto(f"{live_server}/queue/display")
    assert page.locator("button, input, select, textarea, form").count() == 0
    anjali = page.locator(".tv-doctor").filter(has_text="Dr. Anjali Deshmukh")
    assert anjali.locator(".tv-now").inner_text().split()[1:] == ["2", "Suresh", "J."]
    assert "लक्ष्मी अ." in anjali.locator(".tv-next").inner_text()
    assert "+ 1 more waiting" in anjali.inner_text()
    now_token = anjali.locator(".tv-now .tv-token").first
    size_px = float(now_token.evaluate("(el) => parseFloat(getComputedStyle(el).fontSize)"))
    # A token about 1/9 of the screen's height at 1920 (some 150 px), 100 px at 1280.
    assert size_px >= (140 if size == TV else 90), size_px
    name_px = float(
        anjali.locator(".tv-now .tv-name").evaluate(
            "(el) => parseFloat(getComputedStyle(el).fontSize)"
        )
    )
    assert name_px >= (48 if size == TV else 30), name_px
    # The whole board is on the screen at once: no scrolling on a television.
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= size[1], f"the board is {height}px tall on a {size[1]}px screen"
    shot(page, f"queue-display-{size[0]}")
    assert problems == [], problems
    page.context.close()


def test_the_display_refreshes_itself_and_keeps_the_last_board_through_an_outage(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    tenant, doctors, _people = a_busy_morning(db, ident, "Outage Clinic")
    page, problems = signed_in_page(browser, live_server, db, ident, tenant, TV)
    page.clock.install()
    page.goto(f"{live_server}/queue/display")
    farhan = page.locator(".tv-doctor").filter(has_text="Dr. Farhan Shaikh")
    assert farhan.locator(".tv-now").inner_text().split()[1:] == ["1", "Ravi", "R."]

    # The server cannot be reached: the board stays up, marked as possibly out of date.
    page.route("**/queue/display", lambda route: route.abort("connectionrefused"))
    page.clock.run_for(11_000)
    note = page.locator("#board-offline")
    note.wait_for(state="visible")
    assert "Reconnecting" in note.inner_text()
    assert farhan.locator(".tv-now").inner_text().split()[1:] == ["1", "Ravi", "R."]
    shot(page, "queue-display-offline")

    # Back again: the next tick shows what happened meanwhile.
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        for appointment, _ in queries.with_the_doctor(session, doctors[1].id, DAY):
            lifecycle.transition(
                session, ctx, waitlist.Offers(ident.cipher, OFFER_FOR),
                appointment_id=appointment.id, to="completed",
            )  # fmt: skip
    page.unroute("**/queue/display")
    page.clock.run_for(10_000)
    note.wait_for(state="hidden")
    page.wait_for_function(
        "() => !document.querySelector('.tv-doctor:nth-child(2) .tv-now')"
        ".textContent.includes('Ravi')"
    )
    assert farhan.locator(".tv-now").inner_text().split()[1:] == ["\u2013"]
    assert problems == [], problems
    page.context.close()


def test_a_signed_out_display_keeps_its_board_and_says_so(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    tenant, _doctors, _people = a_busy_morning(db, ident, "Signed Out Clinic")
    page, _problems = signed_in_page(browser, live_server, db, ident, tenant, TV)
    page.clock.install()
    page.goto(f"{live_server}/queue/display")
    page.context.clear_cookies()
    page.clock.run_for(11_000)
    note = page.locator("#board-offline")
    note.wait_for(state="visible")
    assert "signed out" in note.inner_text()
    assert page.locator(".tv-doctor").count() == 2
    page.context.close()


# ------------------------------------------------------------------ the calendar


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_doctors_day_fits_and_books_from_the_grid(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant, doctors, _people = a_busy_morning(db, ident, f"Grid Clinic {width}")
    page, problems = signed_in_page(browser, live_server, db, ident, tenant, width)
    page.goto(f"{live_server}/calendar?doctor={doctors[0].id}&date={DAY}&view=all")
    columns = page.locator(".day-grid thead th:visible")
    if width == "phone":
        # One doctor at a time, chosen above the grid.
        assert columns.count() == 2
        page.locator(".doctor-switch").get_by_role("link", name="Dr. Farhan Shaikh").click()
        page.wait_for_url("**view=all**")
        assert "Dr. Farhan Shaikh" in page.locator(".day-grid thead th.is-chosen").inner_text()
        assert page.locator(".day-grid thead th:visible").count() == 2
    else:
        assert columns.count() == 4  # the time and three doctors
    assert small_targets(page, 44 if width == "phone" else 24) == []
    shot(page, f"calendar-all-doctors-{width}")

    free_cell = page.locator(".day-grid td.cell.st-free.is-chosen:not(.is-past)").first
    free_cell.get_by_role("button", name="Book").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    dialog.get_by_label("Patient").fill("Meena")
    page.locator("#patient-options .patient-option input").first.check()
    dialog.get_by_role("button", name="Book appointment").click()
    assert page.get_by_role("status").inner_text() == "Booked."
    assert "view=all" in page.url, "back to every doctor's day"
    assert page.locator(".day-grid td.cell:visible").filter(has_text="Meena Kulkarni").count() >= 1
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_day_and_week_have_tap_targets_big_enough_and_the_week_is_short_on_a_phone(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant, doctors, _people = a_busy_morning(db, ident, f"Targets Clinic {width}")
    page, problems = signed_in_page(browser, live_server, db, ident, tenant, width)
    least = 44 if width == "phone" else 24
    page.goto(f"{live_server}/calendar?doctor={doctors[0].id}&date={DAY}")
    assert page.locator(".slot").count() == 16
    assert small_targets(page, least) == []
    shot(page, f"calendar-day-{width}")

    page.goto(f"{live_server}/calendar?doctor={doctors[0].id}&date={DAY}&view=week")
    assert small_targets(page, least) == []
    height = page.evaluate("document.documentElement.scrollHeight")
    if width == "phone":
        # A list of days (was 11,000 px of slots): each day opens on a tap.
        assert height < 2200, height
        today = page.locator(".cal-day").filter(has_text=DAY.strftime("%a %-d %b"))
        assert "3 booked" in today.inner_text()
    shot(page, f"calendar-week-{width}")
    assert problems == [], problems
    page.context.close()


# ------------------------------------------------------------------ the printable day list


def _long_name(day: date) -> str:
    return day.strftime("%A %-d %B %Y")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_day_list_prints_on_a4_without_navigation(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant, doctors, _people = a_busy_morning(db, ident, f"Print Clinic {width}")
    page, problems = signed_in_page(browser, live_server, db, ident, tenant, width)
    page.goto(f"{live_server}/calendar?doctor={doctors[0].id}&date={DAY}")
    page.get_by_role("button", name="Print day list").click()
    page.wait_for_url("**/day-list**")
    assert _long_name(DAY) in page.get_by_role("heading", level=1).inner_text()
    rows = page.locator("tbody tr")
    assert rows.count() == 9  # three booked, six walked in (one done already)
    assert "··· " in rows.first.inner_text()
    assert page.get_by_role("button", name="Print").is_visible()
    shot(page, f"day-list-{width}")
    if width == "desktop":
        # As printed: A4 less the margins is 190 mm wide, some 718 px at 96 px an inch.
        page.emulate_media(media="print")
        page.set_viewport_size({"width": 718, "height": 1040})
        assert not page.locator(".screen-only").is_visible()
        assert_fits(page)
        table = page.locator("table").bounding_box()
        assert table is not None and table["width"] <= 718
        settle(page)
        page.screenshot(path=str(SCREENSHOTS / "day-list-print.png"), full_page=True)
    assert problems == [], problems
    page.context.close()
