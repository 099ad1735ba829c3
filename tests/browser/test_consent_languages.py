"""Consent texts per language (issue 10, item 16) in a real browser at 1280 and 390 px: a
patient who prefers Hindi reads the Hindi text (rendered in Devanagari) and can switch to
English; the admin sees which languages the version in force is written in.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.consents import service as consents
from opdesk.db import Database
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import ctx_for, make_patient, make_tenant, make_user, portal_login

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

EN = (
    "I agree that the clinic may send me appointment reminders, reports and bills on "
    "WhatsApp at my registered mobile number. I can stop this at any time."
)
HI = (
    "मैं सहमति देता/देती हूँ कि क्लिनिक मेरे पंजीकृत मोबाइल नंबर पर WhatsApp के ज़रिए "
    "मुझे अपॉइंटमेंट के रिमाइंडर, रिपोर्ट और बिल भेज सकता है।\n\n"
    "मैं इसे कभी भी बंद करवा सकता/सकती हूँ।"
)


def clinic_in_two_languages(db: Database, name: str) -> Any:
    tenant = make_tenant(db, name)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        consents.add_template(
            session, ctx, type_="whatsapp", title="Reminders on WhatsApp", body=EN
        )
        consents.add_translation(
            session,
            ctx,
            type_="whatsapp",
            version=1,
            language="hi",
            title="WhatsApp पर रिमाइंडर",
            body=HI,
        )
        consents.add_template(
            session,
            ctx,
            type_="treatment",
            title="Consent for examination and treatment",
            body="I agree to be examined and treated by the doctors of this clinic.",
        )
    return tenant


def glyphs_render(page: Any, selector: str, word: str) -> bool:
    """``word`` (Devanagari) in ``selector`` is drawn with the Noto Devanagari face: as
    wide on the page as measured in that face (as tests/browser/test_fonts.py checks).
    """
    return bool(
        page.evaluate(
            """async ([selector, word]) => {
                await document.fonts.ready;
                const el = document.querySelector(selector);
                const node = [...el.childNodes].find(
                    n => n.nodeType === 3 && n.data.includes(word));
                const range = document.createRange();
                const at = node.data.indexOf(word);
                range.setStart(node, at);
                range.setEnd(node, at + word.length);
                const style = getComputedStyle(el);
                const font = `${style.fontWeight} ${style.fontSize} "Noto Sans Devanagari"`;
                const canvas = document.createElement('canvas').getContext('2d');
                canvas.font = font;
                const onPage = range.getBoundingClientRect().width;
                return document.fonts.check(font, word)
                    && Math.abs(onPage - canvas.measureText(word).width) < 1.5;
            }""",
            [selector, word],
        )
    )


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_hindi_speaking_patient_reads_hindi_and_can_switch(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = clinic_in_two_languages(db, "Narmada Clinic")
    patient = make_patient(
        db, ident, tenant, name={"first": "सुनीता", "last": "वर्मा"}, preferredLanguage="hi"
    )
    token = portal_login(db, ident, tenant, patient)["Authorization"].removeprefix("Bearer ")
    page, problems = open_page(browser, width)
    page.context.add_cookies([{"name": "opdesk_session", "value": token, "url": live_server}])
    page.goto(f"{live_server}/me/patients/{patient.id}/consents/new?type=whatsapp")
    text = page.locator(".consent-text")
    assert text.get_attribute("lang") == "hi"
    assert "पंजीकृत मोबाइल नंबर" in text.inner_text()
    assert page.get_by_role("heading", name="WhatsApp पर रिमाइंडर").is_visible()
    switch = page.get_by_role("navigation", name="Language of the text")
    assert switch.get_by_role("button", name="हिन्दी (Hindi)").get_attribute("aria-current")
    shot(page, f"patient-consent-hindi-{width}")
    assert glyphs_render(page, ".consent-text p", "पंजीकृत")
    assert glyphs_render(page, ".consent-text h2", "रिमाइंडर"), "the bold title too"
    switch.get_by_role("button", name="English").click()
    page.wait_for_url("**language=en")
    assert "registered mobile number" in page.locator(".consent-text").inner_text()
    page.get_by_role("button", name="हिन्दी (Hindi)").click()
    page.wait_for_url("**language=hi")
    page.get_by_role("button", name="I agree").click()
    page.wait_for_url("**/me")
    assert page.get_by_role("link", name="consent-whatsapp-v1-hi.pdf").is_visible()
    # a text not yet in Hindi: English, with the note in Hindi and English
    page.goto(f"{live_server}/me/patients/{patient.id}/consents/new?type=treatment")
    note = page.get_by_role("note")
    assert "यह पाठ अभी हिन्दी में उपलब्ध नहीं है" in note.inner_text()
    assert "Not yet available in हिन्दी, shown in English." in note.inner_text()
    shot(page, f"patient-consent-fallback-{width}")
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_admin_sees_the_languages_and_adds_a_translation(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = clinic_in_two_languages(db, "Kaveri Clinic")
    admin = make_user(db, ident, tenant, "admin", name="Meera Rao")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/admin/consents")
    whatsapp = page.locator("#type-whatsapp")
    assert "Written in:" in whatsapp.inner_text()
    assert "हिन्दी (Hindi)" in whatsapp.locator(".consent-languages").inner_text()
    shot(page, f"admin-consent-languages-{width}")
    page.get_by_role("button", name="Add a translation of version 1 of Treatment").click()
    page.wait_for_url("**translate=1*")
    page.locator("#f-language").select_option("hi")
    page.get_by_label("Title").fill("जाँच और उपचार के लिए सहमति")
    page.locator("#f-body").fill(
        "मैं इस क्लिनिक के डॉक्टरों द्वारा अपनी जाँच और उपचार के लिए सहमति देता/देती हूँ।"
    )
    shot(page, f"admin-consent-translate-{width}")
    page.get_by_role("button", name="Add this translation to version 1").click()
    page.wait_for_url("**/admin/consents")
    assert "Added हिन्दी to version 1 of Treatment." in page.get_by_role("status").inner_text()
    treatment = page.locator("#type-treatment .consent-languages").inner_text()
    assert "English" in treatment and "हिन्दी (Hindi)" in treatment
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_desk_shows_the_patients_language_with_a_switch(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = clinic_in_two_languages(db, "Tapti Clinic")
    desk = make_user(db, ident, tenant, "frontdesk", name="Ravi Patil")
    patient = make_patient(db, ident, tenant, name={"first": "Kamla"}, preferredLanguage="hi")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/patients/{patient.id}/consents/new?type=whatsapp")
    assert "पंजीकृत मोबाइल नंबर" in page.locator(".consent-text").inner_text()
    assert page.get_by_role("navigation", name="Language of the text").is_visible()
    shot(page, f"desk-consent-hindi-{width}")
    page.get_by_role("button", name="The patient agreed to version 1: record it").click()
    page.wait_for_url(f"**/patients/{patient.id}")
    assert "consent-whatsapp-v1-hi.pdf" in page.content()
    assert problems == [], problems
    page.context.close()
