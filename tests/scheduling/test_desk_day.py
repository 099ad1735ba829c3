"""The desk's day (issue 10): moving an appointment from the desk pages, confirming what
cannot be taken back (with what will follow, in words), a second patient sent in to a
busy doctor, the same patient booked twice close together, and forms that keep what was
typed after a mistake.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.db import Database
from opdesk.scheduling import lifecycle, waitlist
from opdesk.scheduling.models import Appointment, Slot, WaitlistEntry
from opdesk.scheduling.service import Opening
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    DAY,
    bearer,
    book,
    browser_for,
    clinic_session,
    clinic_with_slots,
    csrf_of,
    ctx_for,
    join,
    make_doctor,
    make_tenant,
    make_user,
    open_session,
    patients,
)
from tests.factories.scheduling import OFFER_FOR, generate, offers, set_week


def appointment(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> Appointment:
    with clinic_session(db, tenant.id) as session:
        found = session.get(Appointment, (tenant.id, appointment_id))
        assert found is not None
        session.expunge(found)
        return found


def slot(db: Database, tenant: Tenant, slot_id: uuid.UUID) -> Slot:
    with clinic_session(db, tenant.id) as session:
        found = session.get(Slot, (tenant.id, slot_id))
        assert found is not None
        session.expunge(found)
        return found


def desk_browser(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str = "frontdesk"
) -> TestClient:
    return browser_for(app, open_session(db, ident, make_user(db, ident, tenant, role)))


def named(db: Database, ident: Any, tenant: Tenant, first: str, last: str) -> Any:
    return patients(db, ident, tenant, 1, name={"first": first, "last": last})[0]


def move_to(db: Database, ident: Any, tenant: Tenant, appointment_id: uuid.UUID, *to: str) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        for step in to:
            lifecycle.transition(
                session,
                ctx,
                waitlist.Offers(ident.cipher, OFFER_FOR),
                appointment_id=appointment_id,
                to=step,
            )


# --------------------------------------------------------------------------- item 12: move


def test_the_desk_moves_an_appointment_to_another_doctors_slot_and_it_stays_linked(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, first_doctor, first_slots = clinic_with_slots(db, ident, 2)
    _, second_doctor, second_slots = clinic_with_slots(db, ident, 3, tenant)
    patient = named(db, ident, tenant, "Ravi", "Rao")
    booked = book(db, tenant, first_slots[0], patient, channel="phone")
    url = f"/appointments/{booked.id}/reschedule"
    with desk_browser(app, db, ident, tenant) as browser:
        calendar = browser.get(f"/calendar?doctor={first_doctor.id}&date={DAY.isoformat()}")
        assert f'href="{url}"' in calendar.text, "a Move button on the booked slot"
        picking = browser.get(f"{url}?doctor={second_doctor.id}&date={DAY.isoformat()}")
        assert picking.status_code == 200
        offered = re.findall(r'name="slot_id" value="([0-9a-f-]{36})"', picking.text)
        assert offered == [str(s.id) for s in second_slots]
        asked = browser.get(
            f"{url}?doctor={second_doctor.id}&date={DAY.isoformat()}&slot_id={second_slots[1].id}"
        )
        assert "Move Ravi Rao to" in asked.text and "9:15 am" in asked.text
        assert appointment(db, tenant, booked.id).status == "confirmed", "asking changes nothing"
        unconfirmed = browser.post(
            url, data={"slot_id": str(second_slots[1].id), "csrf_token": csrf_of(asked.text)}
        )
        assert "Move Ravi Rao to" in unconfirmed.text, "a bare post asks first"
        assert appointment(db, tenant, booked.id).status == "confirmed"
        moved = browser.post(
            url,
            data={
                "slot_id": str(second_slots[1].id),
                "visit_type": "consultation",
                "confirmed": "yes",
                "csrf_token": csrf_of(asked.text),
            },
        )
        assert "Moved to" in moved.text and "9:15 am" in moved.text
        assert moved.url.params["doctor"] == str(second_doctor.id)
    assert appointment(db, tenant, booked.id).status == "cancelled"
    with clinic_session(db, tenant.id) as session:
        new = session.execute(
            select(Appointment).where(Appointment.reschedule_of == booked.id)
        ).scalar_one()
        assert (new.slot_id, new.doctor_id, new.patient_id, new.status) == (
            second_slots[1].id,
            second_doctor.id,
            patient.id,
            "confirmed",
        )
        assert new.channel == "phone"
    assert slot(db, tenant, first_slots[0].id).status == "free"


def test_moving_offers_the_old_slot_to_the_waitlist_and_the_desk_is_told_first(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 3)
    patient = named(db, ident, tenant, "Meena", "Iyer")
    waiting = named(db, ident, tenant, "Kiran", "Bhat")
    booked = book(db, tenant, slots[0], patient)
    book(db, tenant, slots[1], named(db, ident, tenant, "Other", "Person"))
    entry = join(db, tenant, waiting, doctor.id)
    url = f"/appointments/{booked.id}/reschedule"
    with desk_browser(app, db, ident, tenant) as browser:
        asked = browser.get(f"{url}?date={DAY.isoformat()}&slot_id={slots[2].id}")
        assert "The 9:00 am slot will be offered to Kiran Bhat from the waitlist" in asked.text
        browser.post(
            url,
            data={
                "slot_id": str(slots[2].id),
                "confirmed": "yes",
                "csrf_token": csrf_of(asked.text),
            },
        )
    (offer,) = offers(db, tenant)
    assert (offer.slot_id, offer.entry_id) == (slots[0].id, entry.id)


def test_a_move_the_desk_cannot_make_is_explained_and_changes_nothing(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 3)
    first, second = patients(db, ident, tenant, 2)
    booked = book(db, tenant, slots[0], first)
    book(db, tenant, slots[1], second)
    arrived = book(db, tenant, slots[2], named(db, ident, tenant, "Late", "Comer"))
    move_to(db, ident, tenant, arrived.id, "checked-in")
    with desk_browser(app, db, ident, tenant) as browser:
        page = browser.get(f"/appointments/{booked.id}/reschedule")
        taken = browser.post(
            f"/appointments/{booked.id}/reschedule",
            data={
                "slot_id": str(slots[1].id),
                "confirmed": "yes",
                "csrf_token": csrf_of(page.text),
            },
        )
        assert "this slot is already booked" in taken.text
        assert appointment(db, tenant, booked.id).status == "confirmed"
        started = browser.get(f"/appointments/{arrived.id}/reschedule")
        assert "only a booked appointment that has not begun can be moved" in started.text
        refused = browser.post(
            f"/appointments/{arrived.id}/reschedule",
            data={
                "slot_id": str(slots[0].id),
                "confirmed": "yes",
                "csrf_token": csrf_of(page.text),
            },
        )
        assert "a checked-in appointment cannot be rescheduled" in refused.text
        assert appointment(db, tenant, arrived.id).status == "checked-in"


def test_another_clinics_appointment_cannot_be_moved_or_asked_about(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    other = make_tenant(db, "Far Clinic")
    _, _, far_slots = clinic_with_slots(db, ident, 1, other)
    (far_patient,) = patients(db, ident, other, 1)
    theirs = book(db, other, far_slots[0], far_patient)
    with desk_browser(app, db, ident, tenant) as browser:
        token = csrf_of(browser.get("/calendar").text)
        assert browser.get(f"/appointments/{theirs.id}/reschedule").status_code == 404
        assert browser.get(f"/appointments/{theirs.id}/move?to=cancelled").status_code == 404
        posted = browser.post(
            f"/appointments/{theirs.id}/reschedule",
            data={"slot_id": str(slots[0].id), "confirmed": "yes", "csrf_token": token},
        )
        assert posted.status_code == 404
        cancelled = browser.post(
            f"/appointments/{theirs.id}/move",
            data={"to": "cancelled", "confirmed": "yes", "csrf_token": token},
        )
        assert cancelled.status_code == 404
    assert appointment(db, other, theirs.id).status == "confirmed"


def test_pharmacy_may_not_move_appointments(app: FastAPI, db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    (patient,) = patients(db, ident, tenant, 1)
    booked = book(db, tenant, slots[0], patient)
    with desk_browser(app, db, ident, tenant, "pharmacy") as browser:
        assert browser.get(f"/appointments/{booked.id}/reschedule").status_code == 403


# --------------------------------------------------------------------------- item 13: confirm


def test_cancel_asks_first_naming_who_the_waitlist_offers_the_slot_to(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 1)
    booked = book(db, tenant, slots[0], named(db, ident, tenant, "Suresh", "Jadhav"))
    first = join(db, tenant, named(db, ident, tenant, "Ravi", "Rao"), doctor.id)
    join(db, tenant, named(db, ident, tenant, "Asha", "Kale"), doctor.id)
    ask = f"/appointments/{booked.id}/move?to=cancelled&back=calendar"
    with desk_browser(app, db, ident, tenant) as browser:
        calendar = browser.get(f"/calendar?doctor={doctor.id}&date={DAY.isoformat()}")
        shown = ask.replace("&", "&amp;")
        assert f'href="{shown}"' in calendar.text, "Cancel opens the question, it does not post"
        asked = browser.get(ask)
        assert "Cancel Suresh Jadhav&#39;s appointment?" in asked.text
        assert "The 9:00 am slot will be offered to Ravi Rao from the waitlist" in asked.text
        assert "Asha Kale" not in asked.text
        bare = browser.post(
            f"/appointments/{booked.id}/move",
            data={"to": "cancelled", "csrf_token": csrf_of(asked.text)},
        )
        assert bare.url.path == f"/appointments/{booked.id}/move", "an unconfirmed post asks"
        assert appointment(db, tenant, booked.id).status == "confirmed"
        done = browser.post(
            f"/appointments/{booked.id}/move",
            data={"to": "cancelled", "confirmed": "yes", "csrf_token": csrf_of(asked.text)},
        )
        assert "Cancelled." in done.text
    assert appointment(db, tenant, booked.id).status == "cancelled"
    (offer,) = offers(db, tenant)
    assert offer.entry_id == first.id, "the named patient is the one offered the slot"


def test_cancel_with_nobody_waiting_says_the_slot_opens_again(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    booked = book(db, tenant, slots[0], named(db, ident, tenant, "Imran", "Shaikh"))
    with desk_browser(app, db, ident, tenant) as browser:
        asked = browser.get(f"/appointments/{booked.id}/move?to=cancelled")
        assert "The 9:00 am slot will be free for anyone to book again." in asked.text
        assert "cannot be brought back" in asked.text
        assert browser.get(f"/appointments/{booked.id}/move?to=nonsense").status_code == 404


def test_no_show_asks_first_and_a_late_arrival_can_still_be_checked_in(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    booked = book(db, tenant, slots[0], named(db, ident, tenant, "Kavya", "Nair"))
    with desk_browser(app, db, ident, tenant) as browser:
        asked = browser.get(f"/appointments/{booked.id}/move?to=no-show&back=queue")
        assert "Mark Kavya Nair as not come (no-show)?" in asked.text
        assert "If Kavya arrives after all, Check in still works." in asked.text
        marked = browser.post(
            f"/appointments/{booked.id}/move",
            data={
                "to": "no-show",
                "back": "queue",
                "confirmed": "yes",
                "csrf_token": csrf_of(asked.text),
            },
        )
        assert "Marked no-show. If they arrive after all, Check in still works." in marked.text
        arrived = browser.post(
            f"/appointments/{booked.id}/move",
            data={"to": "checked-in", "back": "queue", "csrf_token": csrf_of(marked.text)},
        )
        assert "Checked in: token 1." in arrived.text
    assert appointment(db, tenant, booked.id).status == "checked-in"


def test_the_confirmation_comes_as_a_modal_dialog_for_htmx(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    booked = book(db, tenant, slots[0], named(db, ident, tenant, "Deepa", "Rao"))
    with desk_browser(app, db, ident, tenant) as browser:
        partial = browser.get(
            f"/appointments/{booked.id}/move?to=cancelled", headers={"HX-Request": "true"}
        )
        assert partial.text.lstrip().startswith("<dialog"), "a fragment, not a page"
        assert 'formmethod="dialog"' in partial.text, "No closes the dialog"
        page = browser.get(f"/appointments/{booked.id}/move?to=cancelled")
        assert "<html" in page.text and "Keep the appointment</a>" in page.text


def test_removing_from_the_waitlist_asks_first(app: FastAPI, db: Database, ident: Any) -> None:
    tenant, doctor, _slots = clinic_with_slots(db, ident, 1)
    entry = join(db, tenant, named(db, ident, tenant, "Sunita", "Kulkarni"), doctor.id)
    with desk_browser(app, db, ident, tenant) as browser:
        listing = browser.get("/waitlist")
        assert f'href="/waitlist/{entry.id}/withdraw"' in listing.text
        bare = browser.post(
            f"/waitlist/{entry.id}/withdraw", data={"csrf_token": csrf_of(listing.text)}
        )
        assert "Take Sunita Kulkarni off the waitlist?" in bare.text
        assert entry_status(db, tenant, entry.id) == "waiting"
        done = browser.post(
            f"/waitlist/{entry.id}/withdraw",
            data={"confirmed": "yes", "csrf_token": csrf_of(listing.text)},
        )
        assert "Taken off the waitlist." in done.text
    assert entry_status(db, tenant, entry.id) == "withdrawn"


def entry_status(db: Database, tenant: Tenant, entry_id: uuid.UUID) -> str:
    with clinic_session(db, tenant.id) as session:
        found = session.get(WaitlistEntry, (tenant.id, entry_id))
        assert found is not None
        return str(found.status)


# --------------------------------------------------------------------------- item 15


def test_sending_in_a_second_patient_warns_and_goes_ahead_only_when_confirmed(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    inside = book(db, tenant, slots[0], named(db, ident, tenant, "Suresh", "Jadhav"))
    waiting = book(db, tenant, slots[1], named(db, ident, tenant, "Rahul", "Pawar"))
    move_to(db, ident, tenant, inside.id, "checked-in", "in-consult")
    move_to(db, ident, tenant, waiting.id, "checked-in")
    ask = f"/appointments/{waiting.id}/move?to=in-consult&back=queue"
    with desk_browser(app, db, ident, tenant) as browser:
        board = browser.get("/queue")
        shown = ask.replace("&", "&amp;")
        assert f'href="{shown}"' in board.text, "Send in opens the warning on a busy doctor"
        sent = browser.post(
            f"/appointments/{waiting.id}/move",
            data={"to": "in-consult", "back": "queue", "csrf_token": csrf_of(board.text)},
        )
        assert "Send token 2 in while another patient is with the doctor?" in sent.text
        assert "Suresh Jadhav (token 1) is still with" in sent.text
        assert appointment(db, tenant, waiting.id).status == "checked-in"
        confirmed = browser.post(
            f"/appointments/{waiting.id}/move",
            data={
                "to": "in-consult",
                "back": "queue",
                "confirmed": "yes",
                "csrf_token": csrf_of(board.text),
            },
        )
        assert "With doctor." in confirmed.text
    assert appointment(db, tenant, waiting.id).status == "in-consult"


def test_sending_in_when_the_doctor_is_free_needs_no_question(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    done = book(db, tenant, slots[0], named(db, ident, tenant, "Arjun", "Menon"))
    waiting = book(db, tenant, slots[1], named(db, ident, tenant, "Imran", "Shaikh"))
    move_to(db, ident, tenant, done.id, "checked-in", "in-consult", "completed")
    move_to(db, ident, tenant, waiting.id, "checked-in")
    with desk_browser(app, db, ident, tenant) as browser:
        board = browser.get("/queue")
        assert "?to=in-consult" not in board.text
        sent = browser.post(
            f"/appointments/{waiting.id}/move",
            data={"to": "in-consult", "back": "queue", "csrf_token": csrf_of(board.text)},
        )
        assert "With doctor." in sent.text
    assert appointment(db, tenant, waiting.id).status == "in-consult"


def test_the_api_refuses_the_same_patient_twice_close_together_unless_told(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 4)
    (patient,) = patients(db, ident, tenant, 1)
    first = book(db, tenant, slots[0], patient)  # 9:00-9:15
    headers = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    body = {"slotId": str(slots[1].id), "patientId": str(patient.id), "visitType": "consultation"}
    refused = client.post("/api/v1/appointments", json=body, headers=headers)
    assert refused.status_code == 409
    problem = refused.json()
    assert "already has an appointment with this doctor at 9:00 am" in problem["detail"]
    assert problem["nearby"] == [
        {"appointmentId": str(first.id), "startsAt": slots[0].starts_at.isoformat()}
    ]
    assert problem["override"] == "allowNearDuplicate"
    assert slot(db, tenant, slots[1].id).status == "free", "nothing half-written"
    # 9:45 starts 30 minutes after the first one ends: far enough apart.
    later = client.post(
        "/api/v1/appointments", json={**body, "slotId": str(slots[3].id)}, headers=headers
    )
    assert later.status_code == 201
    both = client.post(
        "/api/v1/appointments", json={**body, "allowNearDuplicate": True}, headers=headers
    )
    assert both.status_code == 201


def test_no_warning_for_another_doctor_or_a_cancelled_visit(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    _, _other_doctor, other_slots = clinic_with_slots(db, ident, 1, tenant)
    (patient,) = patients(db, ident, tenant, 1)
    first = book(db, tenant, slots[0], patient)
    headers = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    body = {"patientId": str(patient.id), "visitType": "consultation"}
    other = client.post(
        "/api/v1/appointments", json={**body, "slotId": str(other_slots[0].id)}, headers=headers
    )
    assert other.status_code == 201, "the same time with another doctor is another matter"
    move_to(db, ident, tenant, first.id, "cancelled")
    again = client.post(
        "/api/v1/appointments", json={**body, "slotId": str(slots[1].id)}, headers=headers
    )
    assert again.status_code == 201


def test_the_desk_is_warned_of_a_near_duplicate_and_books_both_when_it_says_so(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    patient = named(db, ident, tenant, "Lata", "Joshi")
    book(db, tenant, slots[0], patient)
    with desk_browser(app, db, ident, tenant) as browser:
        dialog = browser.get(f"/calendar/book?slot={slots[1].id}", headers={"HX-Request": "true"})
        form = {
            "slot_id": str(slots[1].id),
            "patient_id": str(patient.id),
            "visit_type": "consultation",
            "channel": "walk-in",
            "reason": "BP check",
            "q": "Lata",
            "csrf_token": csrf_of(dialog.text),
        }
        warned = browser.post("/calendar/book", data=form, headers={"HX-Request": "true"})
        assert warned.status_code == 200, "htmx swaps the dialog back in"
        assert "Booked twice?" in warned.text and "at 9:00 am" in warned.text
        assert f'value="{patient.id}" required checked' in warned.text, "patient kept"
        assert 'value="BP check"' in warned.text
        assert '<option value="walk-in" selected>' in warned.text
        assert slot(db, tenant, slots[1].id).status == "free"
        booked = browser.post(
            "/calendar/book", data={**form, "allow_near": "yes"}, headers={"HX-Request": "true"}
        )
        assert booked.status_code == 200 and booked.headers["HX-Redirect"].startswith("/calendar")
    assert slot(db, tenant, slots[1].id).status == "booked"


# --------------------------------------------------------------------------- item 17: forms


def test_booking_without_a_patient_keeps_the_dialog_and_what_was_typed(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    with desk_browser(app, db, ident, tenant) as browser:
        page = browser.get(f"/calendar/book?slot={slots[0].id}")
        form = {
            "slot_id": str(slots[0].id),
            "visit_type": "consultation",
            "reason": "Fever for 3 days",
            "q": "Nobody yet",
            "csrf_token": csrf_of(page.text),
        }
        in_dialog = browser.post("/calendar/book", data=form, headers={"HX-Request": "true"})
        assert in_dialog.status_code == 200
        assert in_dialog.text.lstrip().startswith("<dialog")
        assert 'aria-describedby="book-patient-error"' in in_dialog.text
        assert "Choose the patient: type a name" in in_dialog.text
        assert 'value="Fever for 3 days"' in in_dialog.text
        assert 'value="Nobody yet"' in in_dialog.text
        on_page = browser.post("/calendar/book", data=form)
        assert on_page.status_code == 422, "without JavaScript: the booking page, same errors"
        assert "Choose the patient: type a name" in on_page.text
        assert 'value="Fever for 3 days"' in on_page.text
        forged = browser.post(
            "/calendar/book", data={**form, "patient_id": "not-an-id"}, headers={"HX-Request": "1"}
        )
        assert "Choose the patient: type a name" in forged.text
    assert slot(db, tenant, slots[0].id).status == "free"


def test_the_waitlist_form_keeps_the_chosen_patient_on_an_error(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, _slots = clinic_with_slots(db, ident, 1)
    patient = named(db, ident, tenant, "Nisha", "Patel")
    with desk_browser(app, db, ident, tenant) as browser:
        page = browser.get("/waitlist")
        wrong = browser.post(
            "/waitlist",
            data={
                "doctor_id": str(doctor.id),
                "patient_id": str(patient.id),
                "q": "Nisha",
                "from_date": (DAY + timedelta(days=2)).isoformat(),
                "until_date": DAY.isoformat(),
                "csrf_token": csrf_of(page.text),
            },
        )
        assert wrong.status_code == 422
        assert "Until must be on or after “From”." in wrong.text
        assert f'value="{patient.id}" required checked' in wrong.text
        assert "<strong>Nisha Patel</strong>" in wrong.text, "the chosen patient is shown"
        assert f'value="{(DAY + timedelta(days=2)).isoformat()}"' in wrong.text
        nobody = browser.post(
            "/waitlist",
            data={
                "doctor_id": str(doctor.id),
                "from_date": DAY.isoformat(),
                "until_date": DAY.isoformat(),
                "csrf_token": csrf_of(page.text),
            },
        )
        assert nobody.status_code == 422
        assert 'aria-describedby="wait-patient-error"' in nobody.text
    with clinic_session(db, tenant.id) as session:
        assert session.execute(select(WaitlistEntry)).first() is None


def test_a_two_doctor_clinic_moves_between_days(app: FastAPI, db: Database, ident: Any) -> None:
    """The move page walks days of the chosen doctor and offers only that doctor's times."""
    tenant = make_tenant(db, "Two Day Clinic")
    doctor = make_doctor(db, ident, tenant)
    set_week(
        db, tenant, doctor, Opening(0, time(9), time(10), 15), Opening(1, time(9), time(10), 15)
    )
    generate(db, tenant, doctor, DAY, 2)
    with clinic_session(db, tenant.id) as session:
        slots = list(session.execute(select(Slot).order_by(Slot.starts_at)).scalars())
        for s in slots:
            session.expunge(s)
    (patient,) = patients(db, ident, tenant, 1)
    booked = book(db, tenant, slots[0], patient)
    url = f"/appointments/{booked.id}/reschedule"
    tuesday = DAY + timedelta(days=1)
    with desk_browser(app, db, ident, tenant) as browser:
        monday = browser.get(url)
        assert (
            f'href="{url}?doctor={doctor.id}&amp;visit_type=consultation&amp;date={tuesday}"'
            in monday.text
        )
        opened = browser.get(f"{url}?date={tuesday.isoformat()}")
        offered = re.findall(r'name="slot_id" value="([0-9a-f-]{36})"', opened.text)
        assert offered == [str(s.id) for s in slots if s.date == tuesday]
        assert datetime.combine(tuesday, time(9)).strftime("%a %-d %b") in opened.text
