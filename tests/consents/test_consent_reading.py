"""A consent is agreed to after its text was shown (issue 10, item 16): the patient's
portal and the desk show the published text, with its version and hash, and record the
agreement only for the version shown while it is still the one in force.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.consents import service
from opdesk.consents.models import Consent, ConsentTemplate
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    browser_for,
    clinic_session,
    csrf_of,
    ctx_for,
    events_of,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    portal_login,
)

FIRST = (
    "मैं सहमति देता/देती हूँ कि क्लिनिक मुझे WhatsApp पर अपॉइंटमेंट की याद दिलाए।\n\n"
    "I agree that the clinic may send me appointment reminders on WhatsApp."
)
SECOND = FIRST + "\n\nReports and bills may also be sent this way."


def publish(db: Database, tenant: Tenant, body: str, type_: str = "whatsapp") -> ConsentTemplate:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return service.add_template(
            session, ctx, type_=type_, title="WhatsApp reminders", body=body
        )


def consents_of(db: Database, tenant: Tenant, patient_id: uuid.UUID) -> list[Consent]:
    with clinic_session(db, tenant.id) as session:
        return service.latest(session, patient_id)


def portal_browser(app: FastAPI, db: Database, ident: Any, tenant: Tenant, patient: Any) -> Any:
    token = portal_login(db, ident, tenant, patient)["Authorization"].removeprefix("Bearer ")
    return browser_for(app, token)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ the patient's portal


def test_the_home_page_has_no_one_tap_agreement_only_a_way_to_read_the_text(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    patient = make_patient(db, ident, tenant)
    with portal_browser(app, db, ident, tenant, patient) as browser:
        home = browser.get("/me")
        assert home.status_code == 200
        assert "consents/new" in home.text
        assert 'action="/me/consents"' not in home.text, "no form agrees from the home page"
        assert 'name="version"' not in home.text
        link = f'href="/me/patients/{patient.id}/consents/new?type=whatsapp"'
        assert link in home.text
        assert "Read and agree: WhatsApp messages" in home.text


def test_the_reading_page_shows_the_text_version_and_hash_with_the_form_under_it(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    text = publish(db, tenant, FIRST)
    patient = make_patient(db, ident, tenant)
    with portal_browser(app, db, ident, tenant, patient) as browser:
        page = browser.get(f"/me/patients/{patient.id}/consents/new?type=whatsapp")
    assert page.status_code == 200
    assert "WhatsApp पर अपॉइंटमेंट" in page.text and "appointment reminders" in page.text
    assert "version 1" in page.text
    assert text.text_hash[:16] in page.text  # the hash is shown (in groups of 16)
    body = page.text.split("consent-text")[1]
    assert body.index("appointment reminders") < body.index("I agree</button>")
    assert (hidden(page.text, "version"), hidden(page.text, "text_hash")) == ("1", sha(FIRST))
    assert consents_of(db, tenant, patient.id) == [], "reading records nothing"


def test_agreeing_under_the_text_records_that_version_and_hash_with_an_audit_event(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    patient = make_patient(db, ident, tenant)
    with portal_browser(app, db, ident, tenant, patient) as browser:
        page = browser.get(f"/me/patients/{patient.id}/consents/new?type=whatsapp")
        done = browser.post(
            f"/me/patients/{patient.id}/consents/new",
            data={
                "type": "whatsapp",
                "version": hidden(page.text, "version"),
                "text_hash": hidden(page.text, "text_hash"),
                "csrf_token": csrf_of(page.text),
            },
        )
    assert done.status_code == 200
    assert "Your consent to WhatsApp messages (version 1) is recorded" in done.text
    (consent,) = consents_of(db, tenant, patient.id)
    assert (consent.version, consent.text_hash, consent.method) == (1, sha(FIRST), "otp")
    (event,) = [e for e in events_of(db, tenant.id) if e.entity_collection == "consents"]
    assert (event.action, event.entity_id) == ("create", consent.id)
    assert event.diff["added"]["version"] == 1
    assert event.diff["added"]["textHash"] == sha(FIRST)
    assert event.diff["added"]["method"] == "otp"


def test_agreeing_without_the_version_shown_is_refused_and_the_text_shown(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    patient = make_patient(db, ident, tenant)
    with portal_browser(app, db, ident, tenant, patient) as browser:
        token = csrf_of(browser.get("/me").text)
        url = f"/me/patients/{patient.id}/consents/new"
        bare = browser.post(url, data={"type": "whatsapp", "csrf_token": token})
        no_hash = browser.post(url, data={"type": "whatsapp", "version": "1", "csrf_token": token})
    for refused in (bare, no_hash):
        assert refused.status_code == 422
        assert "Please read the text first" in refused.text
        assert "appointment reminders" in refused.text, "the text is shown to read"
        assert hidden(refused.text, "version") == "1"
    assert consents_of(db, tenant, patient.id) == []


def test_agreeing_to_an_outdated_version_is_refused_and_the_new_text_shown(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    patient = make_patient(db, ident, tenant)
    with portal_browser(app, db, ident, tenant, patient) as browser:
        opened = browser.get(f"/me/patients/{patient.id}/consents/new?type=whatsapp")
        publish(db, tenant, SECOND)  # the clinic changes the text while the patient reads
        form = {
            "type": "whatsapp",
            "version": hidden(opened.text, "version"),
            "text_hash": hidden(opened.text, "text_hash"),
            "csrf_token": csrf_of(opened.text),
        }
        stale = browser.post(f"/me/patients/{patient.id}/consents/new", data=form)
        assert stale.status_code == 409
        assert "version 2 is now in force, not version 1" in stale.text
        assert "Read the current text and agree again" in stale.text
        assert "Reports and bills" in stale.text
        assert hidden(stale.text, "version") == "2"
        assert consents_of(db, tenant, patient.id) == []
        wrong_hash = browser.post(
            f"/me/patients/{patient.id}/consents/new",
            data={**form, "version": "2"},  # version 2 named with version 1's hash
        )
        assert wrong_hash.status_code == 409
        assert consents_of(db, tenant, patient.id) == []
        agreed = browser.post(
            f"/me/patients/{patient.id}/consents/new",
            data={**form, "version": "2", "text_hash": hidden(stale.text, "text_hash")},
        )
    assert "(version 2) is recorded" in agreed.text
    (consent,) = consents_of(db, tenant, patient.id)
    assert (consent.version, consent.text_hash) == (2, sha(SECOND))


def test_another_familys_patient_and_an_unknown_type_are_not_found(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    patient, stranger = make_patient(db, ident, tenant), make_patient(db, ident, tenant)
    with portal_browser(app, db, ident, tenant, patient) as browser:
        token = csrf_of(browser.get("/me").text)
        theirs = f"/me/patients/{stranger.id}/consents/new"
        assert browser.get(f"{theirs}?type=whatsapp").status_code == 404
        posted = browser.post(
            theirs,
            data={"type": "whatsapp", "version": "1", "text_hash": sha(FIRST), "csrf_token": token},
        )
        assert posted.status_code == 404
        unpublished = f"/me/patients/{patient.id}/consents/new?type=sms"
        assert browser.get(unpublished).status_code == 404
    assert consents_of(db, tenant, stranger.id) == []


# ------------------------------------------------------------------ the API


def test_the_api_accepts_agreement_only_to_the_version_in_force(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    patient = make_patient(db, ident, tenant)
    me = portal_login(db, ident, tenant, patient)
    (text,) = client.get("/api/v1/me/consent-texts", headers=me).json()
    assert (text["type"], text["version"], text["body"]) == ("whatsapp", 1, FIRST)
    body = {"patientId": str(patient.id), "type": "whatsapp"}
    unversioned = client.post("/api/v1/me/consents", json=body, headers=me)
    assert unversioned.status_code == 422
    assert unversioned.json()["errors"][0]["field"].endswith("version")
    publish(db, tenant, SECOND)
    stale = client.post("/api/v1/me/consents", json={**body, "version": 1}, headers=me)
    assert stale.status_code == 409
    assert "version 2 is now in force" in stale.json()["detail"]
    wrong = client.post(
        "/api/v1/me/consents",
        json={**body, "version": 2, "textHash": text["textHash"]},
        headers=me,
    )
    assert wrong.status_code == 409
    assert consents_of(db, tenant, patient.id) == []
    signed = client.post(
        "/api/v1/me/consents",
        json={**body, "version": 2, "textHash": sha(SECOND)},
        headers=me,
    )
    assert signed.status_code == 201, signed.text
    assert (signed.json()["version"], signed.json()["textHash"]) == (2, sha(SECOND))


def test_the_desk_api_names_the_version_too(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    publish(db, tenant, SECOND)
    patient = make_patient(db, ident, tenant)
    desk = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    url = f"/api/v1/patients/{patient.id}/consents"
    assert client.post(url, json={"type": "whatsapp"}, headers=desk).status_code == 422
    assert (
        client.post(url, json={"type": "whatsapp", "version": 1}, headers=desk).status_code == 409
    )
    assert (
        client.post(url, json={"type": "whatsapp", "version": 2}, headers=desk).status_code == 201
    )


def test_patients_cannot_read_another_clinics_texts(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    other = make_tenant(db, "Other Clinic")
    theirs = portal_login(db, ident, other, make_patient(db, ident, other))
    assert client.get("/api/v1/me/consent-texts", headers=theirs).json() == []


# ------------------------------------------------------------------ at the desk


def test_the_desk_shows_the_text_before_recording_a_signed_consent(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    patient = make_patient(db, ident, tenant)
    desk = make_user(db, ident, tenant, "frontdesk")
    with browser_for(app, open_session(db, ident, desk)) as browser:
        profile = browser.get(f"/patients/{patient.id}")
        assert f'action="/patients/{patient.id}/consents/new" method="get"' in profile.text
        shown = browser.get(f"/patients/{patient.id}/consents/new?type=whatsapp")
        assert shown.status_code == 200
        assert "appointment reminders" in shown.text and "version 1" in shown.text
        url = f"/patients/{patient.id}/consents/new"
        token = csrf_of(shown.text)
        bare = browser.post(url, data={"type": "whatsapp", "csrf_token": token})
        assert bare.status_code == 422
        assert "The consent text was not shown with this form" in bare.text
        assert "appointment reminders" in bare.text
        publish(db, tenant, SECOND)
        form = {
            "type": "whatsapp",
            "version": hidden(shown.text, "version"),
            "text_hash": hidden(shown.text, "text_hash"),
            "csrf_token": token,
        }
        stale = browser.post(url, data=form)
        assert stale.status_code == 409
        assert "version 2 is now in force" in stale.text and "Reports and bills" in stale.text
        assert consents_of(db, tenant, patient.id) == []
        done = browser.post(
            url, data={**form, "version": "2", "text_hash": hidden(stale.text, "text_hash")}
        )
        assert "Recorded WhatsApp messages consent (version 2)" in done.text
    (consent,) = consents_of(db, tenant, patient.id)
    assert (consent.version, consent.text_hash, consent.method) == (2, sha(SECOND), "in-clinic")


def test_the_desk_reading_page_lists_the_texts_when_no_type_is_chosen(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    patient = make_patient(db, ident, tenant)
    doctor = make_user(db, ident, tenant, "doctor")
    with browser_for(app, open_session(db, ident, doctor)) as browser:
        page = browser.get(f"/patients/{patient.id}/consents/new")
    assert page.status_code == 200
    assert f'href="/patients/{patient.id}/consents/new?type=whatsapp"' in page.text
    assert 'name="version"' not in page.text


# ------------------------------------------------------------------ the admin's texts


def test_the_admin_reads_every_published_version_with_its_date_and_hash(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    first, second = publish(db, tenant, FIRST), publish(db, tenant, SECOND)
    admin = make_user(db, ident, tenant, "admin")
    with browser_for(app, open_session(db, ident, admin)) as browser:
        page = browser.get("/admin/consents")
    assert page.status_code == 200
    assert "Version 2 in force since" in page.text
    assert "Read version 2 (in force)" in page.text
    assert "Read version 1 (published" in page.text
    assert "Reports and bills may also be sent this way." in page.text  # version 2's words
    for text in (first, second):
        shown = "<wbr>".join(text.text_hash[i : i + 16] for i in range(0, 64, 16))
        assert shown in page.text, f"the whole hash of version {text.version}"
    assert 'action="/admin/consents"' not in page.text, "no blank form until a text is chosen"


def test_a_new_version_starts_from_the_latest_text_and_a_first_one_empty(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant, FIRST)
    publish(db, tenant, SECOND)
    admin = make_user(db, ident, tenant, "admin")
    with browser_for(app, open_session(db, ident, admin)) as browser:
        listing = browser.get("/admin/consents")
        assert 'href="/admin/consents?type=whatsapp#publish"' in listing.text
        assert 'aria-label="Write version 3 of WhatsApp messages"' in listing.text
        assert 'aria-label="Write the first text of SMS messages"' in listing.text
        draft = browser.get("/admin/consents?type=whatsapp")
        assert "New version of WhatsApp messages" in draft.text
        assert "Starts from version 2" in draft.text
        textarea = draft.text.split('<textarea id="f-body"')[1].split("</textarea>")[0]
        assert "Reports and bills may also be sent this way." in textarea
        assert 'name="title" type="text" value="WhatsApp reminders"' in draft.text
        assert hidden(draft.text, "type") == "whatsapp"
        published = browser.post(
            "/admin/consents",
            data={
                "type": "whatsapp",
                "title": "WhatsApp reminders",
                "body": SECOND + " Stop any time by replying STOP.",
                "csrf_token": csrf_of(draft.text),
            },
        )
        assert "Published version 3 of WhatsApp messages." in published.text
        empty = browser.get("/admin/consents?type=sms")
        assert "First text of SMS messages" in empty.text
        assert '<textarea id="f-body" name="body" rows="10"></textarea>' in empty.text
    desk = make_user(db, ident, tenant, "frontdesk")
    with browser_for(app, open_session(db, ident, desk)) as browser:
        assert browser.get("/admin/consents?type=whatsapp").status_code == 403
