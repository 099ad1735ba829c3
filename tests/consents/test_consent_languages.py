"""Consent texts per language (issue 10, item 16): a version of a consent is one agreement
written in one or more languages. The admin adds translations of the version in force
without a new version number; patients read (and sign) the text in their preferred
language, else English with a note, and may switch; the consent names the exact row read
and its signed copy carries those words.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
import zlib
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.consents import service
from opdesk.consents.models import Consent, ConsentTemplate
from opdesk.db import Database
from opdesk.demo import DEMO_TRANSLATIONS, refresh_demo_paperwork
from opdesk.documents.storage import LocalStorage
from opdesk.errors import Conflict
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

EN_TITLE = "Reminders on WhatsApp"
EN = (
    "I agree that the clinic may send me appointment reminders, reports and bills on "
    "WhatsApp at my registered mobile number. I can stop this at any time."
)
HI_TITLE = "WhatsApp पर रिमाइंडर"
HI = (
    "मैं सहमति देता/देती हूँ कि क्लिनिक मेरे पंजीकृत मोबाइल नंबर पर WhatsApp के ज़रिए "
    "मुझे अपॉइंटमेंट के रिमाइंडर, रिपोर्ट और बिल भेज सकता है।\n\n"
    "मैं इसे कभी भी बंद करवा सकता/सकती हूँ।"
)
EN2 = EN + "\n\nMessages come only from the clinic's own number."


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def publish(
    db: Database, tenant: Tenant, body: str = EN, language: str = "en", title: str = EN_TITLE
) -> ConsentTemplate:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return service.add_template(
            session, ctx, type_="whatsapp", title=title, body=body, language=language
        )


def translate(
    db: Database,
    tenant: Tenant,
    version: int = 1,
    language: str = "hi",
    body: str = HI,
    title: str = HI_TITLE,
) -> ConsentTemplate:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return service.add_translation(
            session,
            ctx,
            type_="whatsapp",
            version=version,
            language=language,
            title=title,
            body=body,
        )


def consents_of(db: Database, tenant: Tenant, patient_id: uuid.UUID) -> list[Consent]:
    with clinic_session(db, tenant.id) as session:
        return service.latest(session, patient_id)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)


def section(html: str, type_: str) -> str:
    """One consent type's part of the admin page."""
    part = html.split(f'id="type-{type_}"')[1]
    return part.split('class="consent-type"')[0].split('id="publish"')[0]


def portal_browser(app: FastAPI, db: Database, ident: Any, tenant: Tenant, patient: Any) -> Any:
    token = portal_login(db, ident, tenant, patient)["Authorization"].removeprefix("Bearer ")
    return browser_for(app, token)


def pdf_text(data: bytes) -> str:
    """The text of a PDF written by documents.pdf (fpdf2: Type0 fonts, ToUnicode maps,
    2-byte codes in literal strings), read through each font's ToUnicode map: shaped
    Devanagari comes back in logical order, one cluster per mapped glyph.
    """
    objects = {
        int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj\s*(.*?)endobj", data, re.S)
    }

    def stream(obj: bytes) -> bytes:
        # Exactly /Length bytes: compressed data may itself end in a CR, which a pattern
        # for the "\r\n" before "endstream" would take away (about one PDF in 256).
        length = re.search(rb"/Length (\d+)", obj)
        found = re.search(rb"stream\r?\n", obj)
        assert found and length
        raw = obj[found.end() : found.end() + int(length.group(1))]
        return zlib.decompress(raw) if b"FlateDecode" in obj else raw

    fonts: dict[str, dict[int, str]] = {}
    for obj in objects.values():
        for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R", obj):
            to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", objects[int(ref)])
            if to_unicode is None:
                continue
            cmap = stream(objects[int(to_unicode.group(1))])
            codes: dict[int, str] = {}
            for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
                for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                    codes[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
            fonts[name.decode()] = codes
    escapes = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}

    def unescape(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        return bytes([int(code, 8)]) if code[:1].isdigit() else escapes.get(code, code)

    text: list[str] = []
    for obj in objects.values():
        if b"stream" not in obj:
            continue
        try:
            content = stream(obj)
        except zlib.error:
            continue
        if b" Tj" not in content:
            continue
        font: dict[int, str] = {}
        for m in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj|ET", content, re.S):
            if m.group(1):
                font = fonts.get(m.group(1).decode(), {})
            elif m.group(0) == b"ET":
                text.append("\n")
            else:
                raw = re.sub(rb"\\([0-7]{1,3}|.)", unescape, m.group(2), flags=re.S)
                glyphs = (int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))
                text.append("".join(font.get(c, "") for c in glyphs))
    return "".join(text)


@pytest.fixture
def admin(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))


@pytest.fixture
def desk(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


# ------------------------------------------------------------------ the admin's texts


def test_a_translation_keeps_the_version_number_and_is_audited_with_its_language(
    client: TestClient, db: Database, tenant: Tenant, admin: dict[str, str]
) -> None:
    first = client.post(
        "/api/v1/consent-templates",
        json={"type": "whatsapp", "title": EN_TITLE, "body": EN},
        headers=admin,
    )
    assert first.status_code == 201 and first.json()["language"] == "en"
    hindi = client.post(
        "/api/v1/consent-templates/translations",
        json={"type": "whatsapp", "version": 1, "language": "hi", "title": HI_TITLE, "body": HI},
        headers=admin,
    )
    assert hindi.status_code == 201, hindi.text
    assert (hindi.json()["version"], hindi.json()["language"]) == (1, "hi")
    assert hindi.json()["textHash"] == sha(HI) != first.json()["textHash"]
    with clinic_session(db, tenant.id) as session:
        rows = service.in_force(session)["whatsapp"]
    assert [(r.version, r.language) for r in rows] == [(1, "en"), (1, "hi")]
    (event,) = [
        e
        for e in events_of(db, tenant.id)
        if e.entity_collection == "consent_templates" and e.entity_id == rows[1].id
    ]
    assert event.action == "create"
    assert event.diff["added"]["language"] == "hi" and event.diff["added"]["version"] == 1


def test_a_translation_is_refused_for_an_outdated_version_a_language_it_has_or_no_text(
    client: TestClient, db: Database, tenant: Tenant, admin: dict[str, str], desk: dict[str, str]
) -> None:
    url = "/api/v1/consent-templates/translations"
    body = {"type": "whatsapp", "version": 1, "language": "hi", "title": HI_TITLE, "body": HI}
    none_yet = client.post(url, json=body, headers=admin)
    assert none_yet.status_code == 409
    assert "publish it first" in none_yet.json()["detail"]
    publish(db, tenant)
    assert client.post(url, json=body, headers=admin).status_code == 201
    again = client.post(url, json={**body, "body": HI + " दोबारा।"}, headers=admin)
    assert again.status_code == 409
    assert "already written in हिन्दी" in again.json()["detail"]
    publish(db, tenant, EN2)
    stale = client.post(url, json={**body, "language": "mr"}, headers=admin)
    assert stale.status_code == 409
    assert (
        "Version 2 of WhatsApp messages is now in force, not version 1" in (stale.json()["detail"])
    )
    unknown = client.post(url, json={**body, "version": 2, "language": "xx"}, headers=admin)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "language"
    assert client.post(url, json={**body, "version": 2}, headers=desk).status_code == 403
    with clinic_session(db, tenant.id) as session:
        rows = service.templates(session)
    assert [(r.version, r.language) for r in rows] == [(2, "en"), (1, "en"), (1, "hi")]


def test_two_admins_adding_the_same_translation_at_once_make_one_row(
    db: Database, tenant: Tenant
) -> None:
    publish(db, tenant)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def add(body: str) -> None:
        start.wait()
        try:
            translate(db, tenant, body=body)
            outcomes.append("added")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=add, args=(HI + suffix,)) for suffix in ("", " ")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["added", "conflict"]
    with clinic_session(db, tenant.id) as session:
        assert [r.language for r in service.in_force_of(session, "whatsapp")] == ["en", "hi"]


def test_a_new_version_starts_in_the_language_given_and_ends_the_old_translations(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: dict[str, str]
) -> None:
    publish(db, tenant)
    translate(db, tenant)
    second = client.post(
        "/api/v1/consent-templates",
        json={"type": "whatsapp", "title": HI_TITLE, "body": HI + " नया।", "language": "hi"},
        headers=admin,
    )
    assert (second.json()["version"], second.json()["language"]) == (2, "hi")
    with clinic_session(db, tenant.id) as session:
        assert [(r.version, r.language) for r in service.in_force_of(session, "whatsapp")] == [
            (2, "hi")
        ]
    third = client.post(
        "/api/v1/consent-templates",
        json={"type": "whatsapp", "title": EN_TITLE, "body": EN2},
        headers=admin,
    )
    assert (third.json()["version"], third.json()["language"]) == (3, "en")
    patient = make_patient(db, ident, tenant, preferredLanguage="hi")
    (text,) = client.get(
        "/api/v1/me/consent-texts", headers=portal_login(db, ident, tenant, patient)
    ).json()
    assert (text["version"], text["language"], text["languages"]) == (3, "en", ["en"])
    assert text["note"] is not None and "हिन्दी" in text["note"]


def test_the_admin_page_shows_the_languages_and_adds_a_translation(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant)
    admin = make_user(db, ident, tenant, "admin")
    with browser_for(app, open_session(db, ident, admin)) as browser:
        page = browser.get("/admin/consents")
        whatsapp = section(page.text, "whatsapp")
        assert "Written in:" in whatsapp and "English" in whatsapp
        assert "हिन्दी" not in whatsapp
        link = 'href="/admin/consents?type=whatsapp&amp;translate=1#publish"'
        assert link in whatsapp
        assert 'aria-label="Add a translation of version 1 of WhatsApp messages"' in whatsapp
        form = browser.get("/admin/consents?type=whatsapp&translate=1")
        assert "Translation of version 1 of WhatsApp messages" in form.text
        assert 'action="/admin/consents/translations"' in form.text
        assert hidden(form.text, "version") == "1"
        select = form.text.split('<select id="f-language"')[1].split("</select>")[0]
        assert 'value="hi"' in select and 'value="en"' not in select, "only missing languages"
        assert "registered mobile number" in form.text, "the text to translate is shown"
        data = {
            "type": "whatsapp",
            "version": "1",
            "language": "hi",
            "title": HI_TITLE,
            "body": HI,
            "csrf_token": csrf_of(form.text),
        }
        unchosen = browser.post("/admin/consents/translations", data={**data, "language": ""})
        assert unchosen.status_code == 422
        assert "Language" in unchosen.text and "choose one of the options" in unchosen.text
        done = browser.post("/admin/consents/translations", data=data)
        assert done.status_code == 200
        assert "Added हिन्दी to version 1 of WhatsApp messages." in done.text
        whatsapp = section(done.text, "whatsapp")
        assert "Version 1 in force since" in whatsapp
        assert 'Read version 1 (in force) · <span lang="hi">हिन्दी (Hindi)</span>' in whatsapp
        assert "पंजीकृत मोबाइल नंबर" in whatsapp
        twice = browser.post("/admin/consents/translations", data=data)
        assert twice.status_code == 409
        assert "already written in हिन्दी" in twice.text
    with clinic_session(db, tenant.id) as session:
        assert [r.language for r in service.in_force_of(session, "whatsapp")] == ["en", "hi"]


def test_the_admin_page_publishes_a_version_in_a_chosen_language_and_says_what_it_replaces(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant)
    translate(db, tenant)
    admin = make_user(db, ident, tenant, "admin")
    with browser_for(app, open_session(db, ident, admin)) as browser:
        draft = browser.get("/admin/consents?type=whatsapp&language=hi")
        assert "New version of WhatsApp messages" in draft.text
        textarea = draft.text.split('<textarea id="f-body"')[1].split("</textarea>")[0]
        assert "पंजीकृत मोबाइल नंबर" in textarea, "starts from the Hindi text"
        assert '<option value="hi" selected>' in draft.text
        assert "version 2 replaces version 1 in every language it is written in" in draft.text
        assert "(English, हिन्दी (Hindi))" in draft.text
        done = browser.post(
            "/admin/consents",
            data={
                "type": "whatsapp",
                "language": "hi",
                "title": HI_TITLE,
                "body": HI + " नया पाठ।",
                "csrf_token": csrf_of(draft.text),
            },
        )
        assert "Published version 2 of WhatsApp messages in हिन्दी." in done.text
        english = browser.get("/admin/consents?type=whatsapp")
        assert '<option value="en" selected>' in english.text
    with clinic_session(db, tenant.id) as session:
        assert [(r.version, r.language) for r in service.in_force_of(session, "whatsapp")] == [
            (2, "hi")
        ]


# ------------------------------------------------------------------ the patient reads


def test_the_portal_shows_the_text_in_the_patients_language_with_a_switch(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant)
    hindi = translate(db, tenant)
    patient = make_patient(db, ident, tenant, preferredLanguage="hi")
    url = f"/me/patients/{patient.id}/consents/new?type=whatsapp"
    with portal_browser(app, db, ident, tenant, patient) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        text = page.text.split("consent-text")[1].split("</article>")[0]
        assert 'lang="hi"' in page.text.split("consent-text")[1][:20]
        assert "पंजीकृत मोबाइल नंबर" in text and "registered mobile" not in text
        assert (hidden(page.text, "language"), hidden(page.text, "text_hash")) == (
            "hi",
            hindi.text_hash,
        )
        assert "Not yet available" not in page.text
        assert f'href="{url}&amp;language=en"' in page.text, "a switch to English"
        english = browser.get(f"{url}&language=en")
        assert "registered mobile number" in english.text
        assert (hidden(english.text, "language"), hidden(english.text, "text_hash")) == (
            "en",
            sha(EN),
        )
        assert "Not yet available" not in english.text, "chosen, not a fallback"
        unknown = browser.get(f"{url}&language=ta")
        assert hidden(unknown.text, "language") == "hi", "a language it lacks: the patient's"


def test_the_portal_falls_back_to_english_with_a_note_in_the_patients_language(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant)
    hindi = make_patient(db, ident, tenant, preferredLanguage="hi")
    with portal_browser(app, db, ident, tenant, hindi) as browser:
        page = browser.get(f"/me/patients/{hindi.id}/consents/new?type=whatsapp")
    assert "registered mobile number" in page.text
    assert "यह पाठ अभी हिन्दी में उपलब्ध नहीं है, इसलिए अंग्रेज़ी में दिखाया गया है।" in page.text
    assert "Not yet available in हिन्दी, shown in English." in page.text
    assert hidden(page.text, "language") == "en"
    assert 'aria-label="Language of the text"' not in page.text, "one language: no switch"
    telugu = make_patient(db, ident, tenant, preferredLanguage="te")
    with portal_browser(app, db, ident, tenant, telugu) as browser:
        page = browser.get(f"/me/patients/{telugu.id}/consents/new?type=whatsapp")
    assert "Not yet available in తెలుగు, shown in English." in page.text
    english = make_patient(db, ident, tenant)
    with portal_browser(app, db, ident, tenant, english) as browser:
        page = browser.get(f"/me/patients/{english.id}/consents/new?type=whatsapp")
    assert "Not yet available" not in page.text


def test_the_api_gives_each_text_in_the_patients_language_else_english_with_a_note(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant)
    translate(db, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        service.add_template(
            session, ctx, type_="sms", title="SMS", body="I agree to reminders by SMS text."
        )
    patient = make_patient(db, ident, tenant, preferredLanguage="hi")
    me = portal_login(db, ident, tenant, patient)
    texts = {t["type"]: t for t in client.get("/api/v1/me/consent-texts", headers=me).json()}
    whatsapp, sms = texts["whatsapp"], texts["sms"]
    assert (whatsapp["language"], whatsapp["body"], whatsapp["textHash"]) == ("hi", HI, sha(HI))
    assert (whatsapp["languages"], whatsapp["preferredLanguage"]) == (["en", "hi"], "hi")
    assert whatsapp["note"] is None
    assert (sms["language"], sms["languages"]) == ("en", ["en"])
    assert sms["note"] == (
        "यह पाठ अभी हिन्दी में उपलब्ध नहीं है, इसलिए अंग्रेज़ी में दिखाया गया है। "
        "(Not yet available in हिन्दी, shown in English.)"
    )
    switched = client.get("/api/v1/me/consent-texts?language=en", headers=me).json()
    assert {t["type"]: t["language"] for t in switched} == {"whatsapp": "en", "sms": "en"}
    bad = client.get("/api/v1/me/consent-texts?language=klingon", headers=me)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].endswith("language")
    stranger = make_patient(db, ident, tenant)
    theirs = client.get(f"/api/v1/me/consent-texts?patientId={stranger.id}", headers=me)
    assert theirs.status_code == 404
    own = client.get(f"/api/v1/me/consent-texts?patientId={patient.id}", headers=me).json()
    assert {t["type"]: t["language"] for t in own} == {"whatsapp": "hi", "sms": "en"}


# ------------------------------------------------------------------ signing


def test_signing_in_hindi_records_the_hindi_row_and_the_signed_copy_has_its_words(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    publish(db, tenant)
    hindi = translate(db, tenant)
    patient = make_patient(db, ident, tenant)  # prefers English, reads it in Hindi
    signed = client.post(
        "/api/v1/me/consents",
        json={
            "patientId": str(patient.id),
            "type": "whatsapp",
            "version": 1,
            "language": "hi",
            "textHash": sha(HI),
        },
        headers=portal_login(db, ident, tenant, patient),
    )
    assert signed.status_code == 201, signed.text
    assert signed.json()["textHash"] == sha(HI)
    (consent,) = consents_of(db, tenant, patient.id)
    assert (consent.template_id, consent.text_hash) == (hindi.id, hindi.text_hash)
    (event,) = [e for e in events_of(db, tenant.id) if e.entity_collection == "consents"]
    assert event.diff["added"]["language"] == "hi"
    document = client.get(f"/api/v1/documents/{consent.file_id}", headers=desk).json()
    assert document["filename"] == "consent-whatsapp-v1-hi.pdf"
    copy = client.get(f"/api/v1/documents/{consent.file_id}/content", headers=desk).content
    words = pdf_text(copy)
    for hindi_words in ("पंजीकृत मोबाइल नंबर", "अपॉइंटमेंट के रिमाइंडर", "कभी भी बंद"):
        assert hindi_words in words, f"{hindi_words!r} not in the signed copy"
    assert "registered mobile number" not in words
    assert sha(HI) in words.replace("\n", "")


def test_signing_without_a_language_takes_the_patients_language_else_english(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    english = publish(db, tenant)
    hindi = translate(db, tenant)
    url = "/api/v1/patients/{}/consents"
    readers = {
        "hi": make_patient(db, ident, tenant, preferredLanguage="hi"),
        "te": make_patient(db, ident, tenant, preferredLanguage="te"),
    }
    for patient in readers.values():
        made = client.post(
            url.format(patient.id), json={"type": "whatsapp", "version": 1}, headers=desk
        )
        assert made.status_code == 201, made.text
    assert consents_of(db, tenant, readers["hi"].id)[0].template_id == hindi.id
    assert consents_of(db, tenant, readers["te"].id)[0].template_id == english.id
    # A hash without a language: the row of that hash (the text the client showed).
    reader = make_patient(db, ident, tenant, preferredLanguage="hi")
    by_hash = client.post(
        url.format(reader.id),
        json={"type": "whatsapp", "version": 1, "textHash": sha(EN)},
        headers=desk,
    )
    assert by_hash.status_code == 201
    assert consents_of(db, tenant, reader.id)[0].template_id == english.id


def test_signing_names_a_language_the_version_lacks_422_and_an_outdated_one_409(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    publish(db, tenant)
    translate(db, tenant)
    patient = make_patient(db, ident, tenant, preferredLanguage="hi")
    url = f"/api/v1/patients/{patient.id}/consents"
    lacking = client.post(
        url, json={"type": "whatsapp", "version": 1, "language": "ta"}, headers=desk
    )
    assert lacking.status_code == 422
    (error,) = lacking.json()["errors"]
    assert error["field"] == "language"
    assert "not written in தமிழ்" in error["reason"] and "English, हिन्दी" in error["reason"]
    unknown = client.post(
        url, json={"type": "whatsapp", "version": 1, "language": "xx"}, headers=desk
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "language"
    wrong = client.post(
        url,
        json={"type": "whatsapp", "version": 1, "language": "hi", "textHash": sha(EN)},
        headers=desk,
    )
    assert wrong.status_code == 409
    assert (
        "The WhatsApp messages text in हिन्दी is not the one that was shown"
        in (wrong.json()["detail"])
    )
    publish(db, tenant, EN2)  # version 2, English only
    for language in ("hi", "en"):
        stale = client.post(
            url,
            json={"type": "whatsapp", "version": 1, "language": language},
            headers=desk,
        )
        assert stale.status_code == 409, language
        assert "version 2 is now in force, not version 1" in stale.json()["detail"]
    gone = client.post(url, json={"type": "whatsapp", "version": 2, "language": "hi"}, headers=desk)
    assert gone.status_code == 422, "version 2 has no Hindi text (yet)"
    assert consents_of(db, tenant, patient.id) == []


def test_agreeing_on_the_portal_in_hindi_records_the_row_read_and_a_stale_one_is_shown_again(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant)
    hindi = translate(db, tenant)
    patient = make_patient(db, ident, tenant, preferredLanguage="hi")
    url = f"/me/patients/{patient.id}/consents/new"
    with portal_browser(app, db, ident, tenant, patient) as browser:
        page = browser.get(f"{url}?type=whatsapp")
        form = {
            name: hidden(page.text, name) for name in ("type", "version", "text_hash", "language")
        }
        form["csrf_token"] = csrf_of(page.text)
        lacking = browser.post(url, data={**form, "language": "ta"})
        assert lacking.status_code == 422
        assert "Language: version 1 of the WhatsApp messages text is not written in" in (
            lacking.text
        )
        assert hidden(lacking.text, "language") == "hi", "the patient's text is shown again"
        done = browser.post(url, data=form)
        assert "(version 1) is recorded" in done.text
        (consent,) = consents_of(db, tenant, patient.id)
        assert (consent.template_id, consent.text_hash) == (hindi.id, sha(HI))
        assert "consent-whatsapp-v1-hi.pdf" in done.text
        publish(db, tenant, EN2)  # version 2, English only
        stale = browser.post(url, data=form)
        assert stale.status_code == 409
        assert "version 2 is now in force, not version 1" in stale.text
        assert "own number." in stale.text, "version 2 is shown to read"
        assert "Not yet available in हिन्दी, shown in English." in stale.text
        assert (hidden(stale.text, "version"), hidden(stale.text, "language")) == ("2", "en")
    assert len(consents_of(db, tenant, patient.id)) == 1


def test_the_desk_reads_the_patients_language_with_a_switch_and_records_the_row_shown(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    english = publish(db, tenant)
    translate(db, tenant)
    patient = make_patient(db, ident, tenant, preferredLanguage="hi")
    desk = make_user(db, ident, tenant, "frontdesk")
    url = f"/patients/{patient.id}/consents/new"
    with browser_for(app, open_session(db, ident, desk)) as browser:
        shown = browser.get(f"{url}?type=whatsapp")
        assert "पंजीकृत मोबाइल नंबर" in shown.text
        assert hidden(shown.text, "language") == "hi"
        assert f'href="{url}?type=whatsapp&amp;language=en"' in shown.text
        switched = browser.get(f"{url}?type=whatsapp&language=en")
        assert "registered mobile number" in switched.text
        form = {
            name: hidden(switched.text, name)
            for name in ("type", "version", "text_hash", "language")
        }
        form["csrf_token"] = csrf_of(switched.text)
        unknown = browser.post(url, data={**form, "language": "xx"})
        assert unknown.status_code == 422
        assert "Language: choose one of the languages the text is written in" in unknown.text
        lacking = browser.post(url, data={**form, "language": "mr"})
        assert lacking.status_code == 422
        assert "not written in मराठी" in lacking.text
        assert consents_of(db, tenant, patient.id) == []
        done = browser.post(url, data=form)
        assert "Recorded WhatsApp messages consent (version 1)" in done.text
    (consent,) = consents_of(db, tenant, patient.id)
    assert (consent.template_id, consent.text_hash) == (english.id, sha(EN))


def test_the_desk_notes_when_the_patients_language_is_missing(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant)
    patient = make_patient(db, ident, tenant, preferredLanguage="mr")
    desk = make_user(db, ident, tenant, "frontdesk")
    with browser_for(app, open_session(db, ident, desk)) as browser:
        shown = browser.get(f"/patients/{patient.id}/consents/new?type=whatsapp")
    assert "हा मजकूर अजून मराठीत उपलब्ध नाही" in shown.text
    assert "Not yet available in मराठी, shown in English." in shown.text


def test_patients_of_another_clinic_get_neither_language_of_a_text(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    publish(db, tenant)
    translate(db, tenant)
    other = make_tenant(db, "Other Clinic")
    theirs = portal_login(db, ident, other, make_patient(db, ident, other, preferredLanguage="hi"))
    assert client.get("/api/v1/me/consent-texts", headers=theirs).json() == []


# ------------------------------------------------------------------ the demo clinic


def test_the_demo_clinic_has_its_consents_in_hindi_too(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    make_patient(db, ident, tenant, preferredLanguage="hi")
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        refresh_demo_paperwork(session, ctx, ident, LocalStorage(Path(mkdtemp())), Path(mkdtemp()))
    with clinic_session(db, tenant.id) as session:
        in_force = service.in_force(session)
        signed = session.execute(select(Consent)).scalars().all()
        hindi_ids = {r.id for rows in in_force.values() for r in rows if r.language == "hi"}
    assert {t: [r.language for r in rows] for t, rows in in_force.items()} == {
        "treatment": ["en", "hi"],
        "data-processing": ["en", "hi"],
        "whatsapp": ["en", "hi"],
    }
    assert {t for t, _, _, _ in DEMO_TRANSLATIONS} == set(in_force)
    for rows in in_force.values():
        assert all("\u0900" <= c <= "\u097f" for c in rows[1].title if c.isalpha() and ord(c) > 127)
    # the demo patient who prefers Hindi signed the Hindi texts
    assert {c.template_id for c in signed} <= hindi_ids
