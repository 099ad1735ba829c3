"""The patient's own pages (issue 10): nothing is cancelled, moved or declined by one tap,
today's visit is not "earlier", a moved appointment says where it went, a waitlist offer
says for whom and with which doctor, and the account page does not talk of a password.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from opdesk.db import Database
from opdesk.scheduling import lifecycle
from opdesk.scheduling.models import Appointment, WaitlistLock
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    DAY,
    book,
    browser_for,
    cancel,
    clinic_session,
    clinic_with_slots,
    csrf_of,
    ctx_for,
    join,
    patients,
    portal_login,
)


def status_of(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> str:
    with clinic_session(db, tenant.id) as session:
        found = session.get(Appointment, (tenant.id, appointment_id))
        assert found is not None
        return str(found.status)


def patient_browser(app: FastAPI, db: Database, ident: Any, tenant: Tenant, patient: Any) -> Any:
    token = portal_login(db, ident, tenant, patient)["Authorization"].removeprefix("Bearer ")
    return browser_for(app, token)


def section(html: str, title: str) -> str:
    """The part of the page under the heading ``title``, up to the next heading."""
    start = html.index(f"<h2>{title}</h2>")
    following = html.find("<h2>", start + 1)
    return html[start : following if following != -1 else len(html)]


def test_cancel_asks_first_and_a_bare_post_changes_nothing(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1, name={"first": "Ravi", "last": "Rao"})
    booked = book(db, tenant, slots[0], patient)
    with patient_browser(app, db, ident, tenant, patient) as browser:
        mine = browser.get("/me/appointments")
        assert f'href="/me/appointments/{booked.id}/cancel"' in mine.text
        bare = browser.post(
            f"/me/appointments/{booked.id}/cancel", data={"csrf_token": csrf_of(mine.text)}
        )
        assert bare.url.path == f"/me/appointments/{booked.id}/cancel"
        assert "Cancel this appointment?" in bare.text
        assert "Ravi Rao" in bare.text and "9:00 am" in bare.text
        assert "cannot be taken back" in bare.text
        assert status_of(db, tenant, booked.id) == "confirmed"
        done = browser.post(
            f"/me/appointments/{booked.id}/cancel",
            data={"confirmed": "yes", "csrf_token": csrf_of(mine.text)},
        )
        assert "Your appointment is cancelled." in done.text
    assert status_of(db, tenant, booked.id) == "cancelled"


def test_tapping_a_new_time_asks_before_moving(app: FastAPI, db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 3)
    (patient,) = patients(db, ident, tenant, 1)
    booked = book(db, tenant, slots[0], patient)
    url = f"/me/appointments/{booked.id}/reschedule"
    with patient_browser(app, db, ident, tenant, patient) as browser:
        picking = browser.get(url)
        assert f'<form action="{url}" method="get"' in picking.text, "a tap only asks"
        asked = browser.get(f"{url}?date={DAY.isoformat()}&slot_id={slots[2].id}")
        assert "Move to" in asked.text and "9:30 am?" in asked.text
        assert "goes to another patient" in asked.text
        bare = browser.post(
            url, data={"slot_id": str(slots[2].id), "csrf_token": csrf_of(asked.text)}
        )
        assert "9:30 am?" in bare.text, "a post without the confirmation asks"
        assert status_of(db, tenant, booked.id) == "confirmed"
        moved = browser.post(
            url,
            data={
                "slot_id": str(slots[2].id),
                "confirmed": "yes",
                "csrf_token": csrf_of(asked.text),
            },
        )
        assert "Moved to" in moved.text and "9:30 am." in moved.text
    assert status_of(db, tenant, booked.id) == "cancelled"


def test_a_moved_appointment_says_where_it_went(app: FastAPI, db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 3)
    (patient,) = patients(db, ident, tenant, 1)
    booked = book(db, tenant, slots[0], patient)
    with patient_browser(app, db, ident, tenant, patient) as browser:
        asked = browser.get(f"/me/appointments/{booked.id}/reschedule?slot_id={slots[1].id}")
        browser.post(
            f"/me/appointments/{booked.id}/reschedule",
            data={
                "slot_id": str(slots[1].id),
                "confirmed": "yes",
                "csrf_token": csrf_of(asked.text),
            },
        )
        mine = browser.get("/me/appointments")
    day = DAY.strftime("%a %-d %b")
    earlier = section(mine.text, "Past, cancelled and moved")
    assert f"Moved to {day}, 9:15 am" in earlier
    assert ">Cancelled<" not in earlier
    coming = section(mine.text, "Coming up")
    assert f"moved from {day}, 9:00 am" in coming


def test_todays_visit_under_way_is_coming_up_not_earlier(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, _slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:  # at the clinic today, waiting with a token
        lifecycle.walk_in(
            session, ctx, patient_id=patient.id, doctor_id=doctor.id, visit_type="consultation"
        )
    with patient_browser(app, db, ident, tenant, patient) as browser:
        mine = browser.get("/me/appointments")
    coming = section(mine.text, "Coming up")
    assert "Today, token 1" in coming and "Checked in" in coming
    assert "Past, cancelled and moved" not in mine.text
    assert "Change time" not in coming, "a visit under way is not changed online"


def test_the_offer_says_for_whom_and_with_which_doctor_and_no_asks_first(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 1)
    holder, waiting = patients(db, ident, tenant, 2, name={"first": "Kiran", "last": "Bhat"})
    booked = book(db, tenant, slots[0], holder)
    join(db, tenant, waiting, doctor.id)
    cancel(db, ident, tenant, booked.id)
    with patient_browser(app, db, ident, tenant, waiting) as browser:
        mine = browser.get("/me/appointments")
        offer = re.search(r'<article class="offer">(.*?)</article>', mine.text, re.S)
        assert offer is not None
        card = offer.group(1)
        assert "A time has opened up for Kiran Bhat" in card
        assert doctor.display_name in card and "9:00 am" in card
        with clinic_session(db, tenant.id) as session:
            lock = session.execute(select(WaitlistLock)).scalar_one()
        assert f'href="/me/waitlist-offers/{lock.id}/decline"' in card
        bare = browser.post(
            f"/me/waitlist-offers/{lock.id}/decline", data={"csrf_token": csrf_of(mine.text)}
        )
        assert "Say no to this time?" in bare.text
        with clinic_session(db, tenant.id) as session:
            assert session.get_one(WaitlistLock, (tenant.id, lock.id)).status == "offered"
        done = browser.post(
            f"/me/waitlist-offers/{lock.id}/decline",
            data={"confirmed": "yes", "csrf_token": csrf_of(mine.text)},
        )
        assert "we will offer it to the next patient" in done.text


def test_another_familys_appointment_has_no_confirmation_page(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    mine, theirs = patients(db, ident, tenant, 2)
    booked = book(db, tenant, slots[0], theirs)
    with patient_browser(app, db, ident, tenant, mine) as browser:
        assert browser.get(f"/me/appointments/{booked.id}/cancel").status_code == 404
        page = browser.get("/me/appointments")
        posted = browser.post(
            f"/me/appointments/{booked.id}/cancel",
            data={"confirmed": "yes", "csrf_token": csrf_of(page.text)},
        )
        assert posted.status_code == 404
    assert status_of(db, tenant, booked.id) == "confirmed"


def test_the_account_page_does_not_talk_of_a_password_to_patients(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, _slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    with patient_browser(app, db, ident, tenant, patient) as browser:
        account = browser.get("/account")
    assert account.status_code == 200
    body = account.text.split("<main", 1)[1]
    assert "Change password" not in body and "Only your password" not in body
    assert 'action="/account/mfa' not in body and 'href="/account/mfa' not in body
    assert "one-time code sent by SMS" in body
