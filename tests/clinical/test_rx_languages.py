"""How to take a medicine in the patient's language: the PDF and the patient's own
prescriptions page say frequency, timing, route and days in Hindi, Marathi or Tamil
below the English line; drug names and the doctor's own words stay as written.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from opdesk.clinical import prescriptions
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from tests.factories.clinical_rx import doctor_headers, make_prescription, pdf_text
from tests.factories.web import portal_login

ITEMS = [
    {
        "name": "Paracetamol 650 mg",
        "dose": "1 tablet",
        "frequency": "1-0-1",
        "durationDays": 5,
        "timing": "after-food",
        "route": "oral",
        "instructions": "Drink water <b>",
    },
]
# What the patient reads, per language, for ITEMS.
SAID = {
    "hi": ("सुबह 1, रात को 1", "खाने के बाद", "मुँह से", "5 दिन तक"),
    "mr": ("सकाळी 1, रात्री 1", "जेवणानंतर", "तोंडाने", "5 दिवस"),
    "ta": ("காலை 1, இரவு 1", "சாப்பாட்டுக்குப் பின்", "வாய் வழியாக", "5 நாட்களுக்கு"),
}
ENGLISH = "1 in the morning, 1 at night"


def flat(text: str) -> str:
    return " ".join(text.split())


def test_every_phrase_has_english_and_the_three_patient_languages() -> None:
    table = prescriptions.phrases()
    for key, words in table.items():
        assert {"en", *prescriptions.PATIENT_LANGUAGES} <= set(words), key
        for language, text in words.items():
            assert ("{n}" in text) == ("{n}" in words["en"]) or key.startswith("every."), (
                key,
                language,
            )
    frequencies = {"freq." + w for w in prescriptions.WORDS.values()}
    routes = {"route." + r for r in prescriptions.ROUTES if r != "other"}
    timings = {"timing." + t for t in prescriptions.TIMINGS}
    assert frequencies | routes | timings <= set(table)


def test_frequency_timing_route_and_days_are_said_in_the_patients_language() -> None:
    line = prescriptions.patient_line(
        "hi", frequency="1-0-1", timing="after-food", route="oral", duration_days=5
    )
    assert line == "सुबह 1, रात को 1 · खाने के बाद · मुँह से · 5 दिन तक"
    assert prescriptions.frequency_words("BD", "mr") == "दिवसातून दोन वेळा"
    assert prescriptions.frequency_words("0-0-½", "ta") == "இரவு ½"
    assert prescriptions.frequency_words("every 8 hours", "hi") == "हर 8 घंटे में"
    assert prescriptions.duration_words(1, "hi") == "1 दिन"
    # English (the pharmacist's line) is unchanged by the table.
    assert prescriptions.frequency_words("1-0-1") == ENGLISH
    assert prescriptions.duration_words(5) == "for 5 days"
    assert prescriptions.timing_words("empty-stomach") == "on an empty stomach"


def test_no_line_for_english_or_a_language_without_translations() -> None:
    kwargs: dict[str, Any] = {
        "frequency": "1-0-1",
        "timing": "after-food",
        "route": "oral",
        "duration_days": 5,
    }
    assert prescriptions.patient_line("en", **kwargs) is None
    assert prescriptions.patient_line("gu", **kwargs) is None
    assert prescriptions.patient_line(None, **kwargs) is None


def test_free_text_parts_are_left_to_the_english_line() -> None:
    # A timing typed as free text and the route "other" have no translation; an unknown
    # frequency is refused when saved, so only the known parts are said.
    line = prescriptions.patient_line(
        "ta", frequency="1-0-1", timing="with warm milk", route="other", duration_days=1
    )
    assert line == "காலை 1, இரவு 1 · 1 நாளுக்கு"
    assert (
        prescriptions.patient_line(
            "hi", frequency=None, timing="with warm milk", route=None, duration_days=None
        )
        is None
    )


@pytest.mark.parametrize("language", ["hi", "mr", "ta"])
def test_the_pdf_says_how_to_take_it_in_the_patients_language_below_the_english(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, language: str
) -> None:
    setting, issued = make_prescription(db, ident, tenant, items=ITEMS, preferredLanguage=language)
    headers = doctor_headers(db, ident, setting.doctor)
    answer = client.get(f"/api/v1/prescriptions/{issued.id}/pdf", headers=headers)
    assert answer.status_code == 200
    words = flat(pdf_text(answer.content))
    english = words.index(ENGLISH)
    for phrase in SAID[language]:
        assert phrase in words, phrase
        assert words.index(phrase) > english, f"{phrase} is not below the English line"
    # The drug's name and the doctor's words stay as written, once.
    assert words.count("Paracetamol 650 mg") == 1
    assert "Drink water <b>" in words


def test_an_english_speaking_patients_pdf_has_no_translation(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    setting, issued = make_prescription(db, ident, tenant, items=ITEMS, preferredLanguage="en")
    headers = doctor_headers(db, ident, setting.doctor)
    answer = client.get(f"/prescriptions/{issued.id}/pdf", headers=headers)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers["content-type"] == "application/pdf"
    words = flat(pdf_text(answer.content))
    assert ENGLISH in words and "after food" in words
    for said in SAID.values():
        for phrase in said:
            assert phrase not in words, phrase


def test_the_patients_prescriptions_page_says_it_in_their_language(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    hindi, _p = make_prescription(db, ident, tenant, items=ITEMS, preferredLanguage="hi")
    english, _q = make_prescription(db, ident, tenant, items=ITEMS, preferredLanguage="en")
    page = client.get("/me/prescriptions", headers=portal_login(db, ident, tenant, hindi.patient))
    assert page.status_code == 200
    assert '<span lang="hi" class="rx-said">सुबह 1, रात को 1 · खाने के बाद' in page.text
    assert ENGLISH in page.text and "Drink water &lt;b&gt;" in page.text
    theirs = client.get(
        "/me/prescriptions", headers=portal_login(db, ident, tenant, english.patient)
    )
    assert theirs.status_code == 200 and ENGLISH in theirs.text
    assert "सुबह" not in theirs.text and 'class="rx-said"' not in theirs.text
