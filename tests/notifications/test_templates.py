"""Message texts: every template in every language, placeholders filled, English fallback."""

from __future__ import annotations

import re

import pytest

from opdesk.notifications import messages
from opdesk.notifications.messages import LANGUAGES, TEMPLATES, render

OFFER = {
    "patient": "Asha Verma",
    "doctor": "Dr Meera Rao",
    "startsAt": "Mon 07 Dec, 10:00 AM",
    "minutes": 15,
    "link": "https://clinic.example/me",
    "offerId": "3f1c",
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_template_has_every_language_and_fills_every_placeholder(
    name: str, language: str
) -> None:
    template = TEMPLATES[name]
    assert language in template.texts, f"{name} has no {language} text"
    payload = {p: f"<{p}>" for p in template.params}
    done = render(name, "sms", language, payload)
    assert done.language == language
    assert "{" not in done.text and "}" not in done.text, done.text
    # Each text names every parameter (a provider template numbers them all).
    for param in template.params:
        assert f"<{param}>" in done.text, f"{name}/{language} leaves out {param}"
    assert done.params == tuple(f"<{p}>" for p in template.params)


def test_the_waitlist_offer_says_who_which_doctor_when_and_carries_the_link() -> None:
    text = render("waitlist-offer", "sms", "en", OFFER).text
    assert text == (
        "Asha Verma, a slot has opened with Dr Meera Rao on Mon 07 Dec, 10:00 AM. It is kept "
        "for you for 15 minutes: accept or decline at https://clinic.example/me"
    )


def test_hindi_and_tamil_offers_are_in_their_own_script() -> None:
    hindi = render("waitlist-offer", "whatsapp", "hi", OFFER)
    tamil = render("waitlist-offer", "whatsapp", "ta", OFFER)
    assert re.search(r"[\u0900-\u097F]", hindi.text)  # Devanagari
    assert re.search(r"[\u0B80-\u0BFF]", tamil.text)  # Tamil
    for done in (hindi, tamil):
        assert "Dr Meera Rao" in done.text and "https://clinic.example/me" in done.text


@pytest.mark.parametrize("language", ["mr", "bn", "xx", ""])
def test_a_language_without_a_translation_falls_back_to_english(language: str) -> None:
    done = render("otp", "sms", language, {"code": "482913", "clinic": "Sunrise", "minutes": 10})
    assert done.language == "en"
    assert done.text.startswith("482913 is your sign-in code for Sunrise.")


def test_a_template_missing_one_translation_falls_back_for_that_one_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    partial = messages.Template(
        params=("patient",),
        texts={"en": ("Hello", "Hello {patient}"), "hi": ("नमस्ते", "नमस्ते {patient}")},
    )
    monkeypatch.setitem(TEMPLATES, "greeting", partial)
    assert render("greeting", "sms", "hi", {"patient": "Asha"}).text == "नमस्ते Asha"
    tamil = render("greeting", "sms", "ta", {"patient": "Asha"})
    assert (tamil.language, tamil.text) == ("en", "Hello Asha")


def test_an_unknown_template_still_shows_what_it_carries() -> None:
    done = render("lab-result-ready", "sms", "hi", {"test": "HbA1c", "patient": "Asha"})
    assert done.text == "patient: Asha\ntest: HbA1c"


def test_a_missing_value_reads_as_empty_not_as_an_error() -> None:
    text = render("booking-confirmation", "sms", "en", {"patient": "Asha"}).text
    assert text.startswith("Asha, your appointment with  at  is booked for")


def test_only_codes_offers_payment_links_and_test_messages_are_urgent() -> None:
    # A payment link is sent while the patient waits to pay (at the desk, or to confirm an
    # online booking): quiet hours must not hold it until morning. Nor may a code the
    # patient is about to type (signing in; linking visits to their ABHA).
    urgent = {name for name, t in TEMPLATES.items() if t.urgent}
    assert urgent == {"otp", "abdm-link-otp", "waitlist-offer", "payment-link", "test-message"}
