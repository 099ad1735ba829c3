"""The words of every message a patient receives, per template and language.

One place for all of them. To add a language, add its code to each template's ``texts``
below (a template without it falls back to English, so a half-done translation is safe).
``params`` names the template's variables in the order providers number them: WhatsApp
template parameters ``{{1}}, {{2}}…`` and the DLT template's ``##var1##…`` are registered
with the provider in this order.

The text is a ``str.format`` template over the message's payload; ``link`` is the patient
portal (added when rendering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_LANGUAGE = "en"
# The languages with a full set of texts (tests check every template has each of them).
LANGUAGES = ("en", "hi", "ta")
LANGUAGE_NAMES = {"en": "English", "hi": "हिन्दी", "ta": "தமிழ்"}


@dataclass(frozen=True)
class Template:
    params: tuple[str, ...]
    # language -> (email subject, text)
    texts: dict[str, tuple[str, str]]
    # Sent now, whatever the hour (a patient is waiting for it).
    urgent: bool = False


TEMPLATES: dict[str, Template] = {
    "otp": Template(
        params=("code", "clinic", "minutes"),
        urgent=True,
        texts={
            "en": (
                "Your sign-in code",
                "{code} is your sign-in code for {clinic}. It works for {minutes} minutes. "
                "Do not share it with anyone.",
            ),
            "hi": (
                "आपका साइन-इन कोड",
                "{clinic} के लिए आपका साइन-इन कोड {code} है। यह {minutes} मिनट तक मान्य है। "
                "इसे किसी के साथ साझा न करें।",
            ),
            "ta": (
                "உங்கள் உள்நுழைவுக் குறியீடு",
                "{clinic} உள்நுழைவுக் குறியீடு {code}. இது {minutes} நிமிடங்கள் செல்லும். "
                "யாரிடமும் பகிர வேண்டாம்.",
            ),
        },
    ),
    "abdm-link-otp": Template(
        params=("code", "clinic", "minutes"),
        urgent=True,
        texts={
            "en": (
                "Your code to link your records",
                "{code} is your code to link your visits at {clinic} to your ABHA. It "
                "works for {minutes} minutes. Do not share it with anyone.",
            ),
            "hi": (
                "रिकॉर्ड जोड़ने का आपका कोड",
                "{clinic} की अपनी विज़िट को अपने ABHA से जोड़ने के लिए आपका कोड {code} है। "
                "यह {minutes} मिनट तक मान्य है। इसे किसी के साथ साझा न करें।",
            ),
            "ta": (
                "உங்கள் பதிவுகளை இணைக்கும் குறியீடு",
                "{clinic} வருகைகளை உங்கள் ABHA உடன் இணைக்கும் குறியீடு {code}. இது "
                "{minutes} நிமிடங்கள் செல்லும். யாரிடமும் பகிர வேண்டாம்.",
            ),
        },
    ),
    "waitlist-offer": Template(
        params=("patient", "doctor", "startsAt", "minutes", "link"),
        urgent=True,
        texts={
            "en": (
                "A slot has opened with {doctor}",
                "{patient}, a slot has opened with {doctor} on {startsAt}. It is kept for "
                "you for {minutes} minutes: accept or decline at {link}",
            ),
            "hi": (
                "{doctor} के साथ समय उपलब्ध है",
                "{patient}, {doctor} के साथ {startsAt} का समय खाली हुआ है। यह {minutes} मिनट "
                "तक आपके लिए रखा गया है: {link} पर स्वीकार या अस्वीकार करें",
            ),
            "ta": (
                "{doctor} அவர்களிடம் நேரம் கிடைக்கிறது",
                "{patient}, {doctor} அவர்களிடம் {startsAt} நேரம் காலியாகியுள்ளது. "
                "{minutes} நிமிடங்கள் உங்களுக்காக வைக்கப்படும்: {link} இல் ஏற்கவும் "
                "அல்லது மறுக்கவும்",
            ),
        },
    ),
    "booking-confirmation": Template(
        params=("patient", "doctor", "startsAt", "clinic", "link"),
        texts={
            "en": (
                "Your appointment is booked",
                "{patient}, your appointment with {doctor} at {clinic} is booked for "
                "{startsAt}. To see or change it: {link}",
            ),
            "hi": (
                "आपका अपॉइंटमेंट बुक हो गया है",
                "{patient}, {clinic} में {doctor} के साथ आपका अपॉइंटमेंट {startsAt} के लिए "
                "बुक हो गया है। देखने या बदलने के लिए: {link}",
            ),
            "ta": (
                "உங்கள் சந்திப்பு பதிவு செய்யப்பட்டது",
                "{patient}, {clinic} இல் {doctor} அவர்களுடன் உங்கள் சந்திப்பு {startsAt} "
                "அன்று பதிவு செய்யப்பட்டது. பார்க்க அல்லது மாற்ற: {link}",
            ),
        },
    ),
    "appointment-reminder": Template(
        params=("patient", "doctor", "startsAt", "clinic", "link"),
        texts={
            "en": (
                "Reminder: your appointment with {doctor}",
                "Reminder: {patient}, you have an appointment with {doctor} at {clinic} on "
                "{startsAt}. To change it: {link}",
            ),
            "hi": (
                "याद दिलाना: {doctor} के साथ आपका अपॉइंटमेंट",
                "याद दिलाना: {patient}, {clinic} में {doctor} के साथ आपका अपॉइंटमेंट "
                "{startsAt} को है। बदलने के लिए: {link}",
            ),
            "ta": (
                "நினைவூட்டல்: {doctor} அவர்களுடன் உங்கள் சந்திப்பு",
                "நினைவூட்டல்: {patient}, {clinic} இல் {doctor} அவர்களுடன் உங்கள் சந்திப்பு "
                "{startsAt} அன்று. மாற்ற: {link}",
            ),
        },
    ),
    "doctor-away": Template(
        params=("patient", "doctor", "startsAt", "clinic", "link"),
        texts={
            "en": (
                "Please rebook your appointment with {doctor}",
                "{patient}, {doctor} is not available on {startsAt}, so your appointment at "
                "{clinic} cannot go ahead. Please choose another time: {link}",
            ),
            "hi": (
                "कृपया {doctor} के साथ अपना अपॉइंटमेंट फिर से बुक करें",
                "{patient}, {doctor} {startsAt} को उपलब्ध नहीं हैं, इसलिए {clinic} में आपका "
                "अपॉइंटमेंट नहीं हो पाएगा। कृपया दूसरा समय चुनें: {link}",
            ),
            "ta": (
                "{doctor} அவர்களுடன் உங்கள் சந்திப்பை மாற்றவும்",
                "{patient}, {doctor} அவர்கள் {startsAt} அன்று இல்லை, எனவே {clinic} இல் உங்கள் "
                "சந்திப்பு நடைபெறாது. வேறு நேரத்தைத் தேர்ந்தெடுக்கவும்: {link}",
            ),
        },
    ),
    # The rules of automation/later_rules.py (follow-ups, refills, lab results, balances,
    # diet plans): sent by the clinic's clock, never in quiet hours.
    "follow-up": Template(
        params=("patient", "doctor", "dueOn", "clinic", "link"),
        texts={
            "en": (
                "Your follow-up visit with {doctor} is due",
                "{patient}, your follow-up visit with {doctor} at {clinic} is due on {dueOn}. "
                "To book a time: {link}",
            ),
            "hi": (
                "{doctor} के साथ आपकी फ़ॉलो-अप जाँच का समय",
                "{patient}, {clinic} में {doctor} के साथ आपकी फ़ॉलो-अप जाँच {dueOn} को होनी है। "
                "समय बुक करने के लिए: {link}",
            ),
            "ta": (
                "{doctor} அவர்களுடன் உங்கள் மறுபரிசோதனை நேரம்",
                "{patient}, {clinic} இல் {doctor} அவர்களுடன் உங்கள் மறுபரிசோதனை {dueOn} "
                "அன்று. நேரம் பதிவு செய்ய: {link}",
            ),
        },
    ),
    "refill": Template(
        params=("patient", "medicine", "dueOn", "clinic", "link"),
        texts={
            "en": (
                "Time to refill {medicine}",
                "{patient}, your {medicine} from {clinic} runs out around {dueOn}. Please "
                "arrange a refill; for a new prescription: {link}",
            ),
            "hi": (
                "{medicine} दोबारा लेने का समय",
                "{patient}, {clinic} से मिली आपकी {medicine} लगभग {dueOn} तक ख़त्म हो जाएगी। "
                "कृपया दवा फिर से लें; नए पर्चे के लिए: {link}",
            ),
            "ta": (
                "{medicine} மீண்டும் வாங்க வேண்டிய நேரம்",
                "{patient}, {clinic} வழங்கிய உங்கள் {medicine} சுமார் {dueOn} அன்று தீர்ந்துவிடும். "
                "மீண்டும் வாங்கவும்; புதிய மருந்துச்சீட்டுக்கு: {link}",
            ),
        },
    ),
    "lab-result": Template(
        params=("patient", "test", "clinic", "link"),
        texts={
            "en": (
                "Your {test} result is ready",
                "{patient}, your {test} result has been reviewed by your doctor at {clinic} "
                "and is ready. To see it: {link}",
            ),
            "hi": (
                "आपकी {test} रिपोर्ट तैयार है",
                "{patient}, {clinic} में आपके डॉक्टर ने आपकी {test} रिपोर्ट देख ली है और वह "
                "तैयार है। देखने के लिए: {link}",
            ),
            "ta": (
                "உங்கள் {test} முடிவு தயார்",
                "{patient}, உங்கள் {test} முடிவை {clinic} இல் உங்கள் மருத்துவர் பார்த்துவிட்டார்; "
                "அது தயாராக உள்ளது. பார்க்க: {link}",
            ),
        },
    ),
    "balance-due": Template(
        params=("patient", "amount", "dueOn", "clinic", "link"),
        texts={
            "en": (
                "{amount} due to {clinic}",
                "{patient}, {amount} is due to {clinic} by {dueOn}. To see the bill: {link}",
            ),
            "hi": (
                "{clinic} को {amount} देय",
                "{patient}, {clinic} को {dueOn} तक {amount} का भुगतान करना है। बिल देखने के लिए: {link}",
            ),
            "ta": (
                "{clinic} க்கு {amount} செலுத்த வேண்டும்",
                "{patient}, {clinic} க்கு {dueOn} க்குள் {amount} செலுத்த வேண்டும். ரசீதைப் பார்க்க: {link}",
            ),
        },
    ),
    # Billing: an issued invoice, and a payment link to pay it online.
    "invoice": Template(
        params=("patient", "number", "amount", "clinic", "link"),
        texts={
            "en": (
                "Your bill {number} from {clinic}",
                "{patient}, your bill {number} from {clinic} is {amount}. To see or "
                "download it: {link}",
            ),
            "hi": (
                "{clinic} से आपका बिल {number}",
                "{patient}, {clinic} से आपका बिल {number} {amount} का है। देखने या डाउनलोड "
                "करने के लिए: {link}",
            ),
            "ta": (
                "{clinic} இலிருந்து உங்கள் ரசீது {number}",
                "{patient}, {clinic} இலிருந்து உங்கள் ரசீது {number}: {amount}. பார்க்க அல்லது "
                "பதிவிறக்க: {link}",
            ),
        },
    ),
    "payment-link": Template(
        params=("patient", "amount", "clinic", "link"),
        urgent=True,
        texts={
            "en": (
                "Pay {amount} to {clinic}",
                "{patient}, to pay {amount} to {clinic} by UPI or card, open: {link}",
            ),
            "hi": (
                "{clinic} को {amount} का भुगतान",
                "{patient}, {clinic} को UPI या कार्ड से {amount} का भुगतान करने के लिए खोलें: {link}",
            ),
            "ta": (
                "{clinic} க்கு {amount} செலுத்துங்கள்",
                "{patient}, {clinic} க்கு UPI அல்லது கார்டு மூலம் {amount} செலுத்த திறக்கவும்: {link}",
            ),
        },
    ),
    "diet-nudge": Template(
        params=("patient", "plan", "clinic", "link"),
        texts={
            "en": (
                "Keeping to your diet plan",
                "{patient}, a reminder from {clinic} to keep to your diet plan ({plan}). "
                "To see it: {link}",
            ),
            "hi": (
                "अपनी डाइट योजना पर बने रहें",
                "{patient}, {clinic} की ओर से याद दिलाना: अपनी डाइट योजना ({plan}) का पालन "
                "करते रहें। देखने के लिए: {link}",
            ),
            "ta": (
                "உங்கள் உணவுத் திட்டத்தைப் பின்பற்றுங்கள்",
                "{patient}, {clinic} நினைவூட்டுகிறது: உங்கள் உணவுத் திட்டத்தைப் ({plan}) "
                "தொடர்ந்து பின்பற்றுங்கள். பார்க்க: {link}",
            ),
        },
    ),
    "test-message": Template(
        params=("clinic",),
        urgent=True,
        texts={
            "en": (
                "Test message from OPDesk",
                "This is a test message from {clinic} on OPDesk. If you can read it, "
                "messages are set up.",
            ),
            "hi": (
                "OPDesk से परीक्षण संदेश",
                "यह OPDesk पर {clinic} का परीक्षण संदेश है। यदि आप इसे पढ़ सकते हैं, तो संदेश सही ढंग से सेट हैं।",
            ),
            "ta": (
                "OPDesk சோதனைச் செய்தி",
                "இது OPDesk இல் {clinic} அனுப்பிய சோதனைச் செய்தி. இதைப் படிக்க முடிந்தால், "
                "செய்திகள் அமைக்கப்பட்டுள்ளன.",
            ),
        },
    ),
}


@dataclass(frozen=True)
class Rendered:
    language: str  # the language actually used (English when the wanted one is missing)
    subject: str
    text: str
    params: tuple[str, ...]  # the variables' values in the template's order


class _Blank(dict[str, Any]):
    """Payload for ``format_map``: a variable the caller did not give reads as empty."""

    def __missing__(self, key: str) -> str:
        return ""


def template_of(name: str) -> Template:
    found = TEMPLATES.get(name)
    if found is None:
        raise KeyError(f"no message template named {name!r}")
    return found


def is_urgent(name: str) -> bool:
    found = TEMPLATES.get(name)
    return found is not None and found.urgent


def render(name: str, channel: str, language: str, payload: dict[str, Any]) -> Rendered:
    """The message in the patient's language, or English when it has no translation.

    An unknown template (a message enqueued by newer code) renders its payload as
    ``key: value`` lines, so nothing is lost.
    """
    values = _Blank({k: "" if v is None else str(v) for k, v in payload.items()})
    template = TEMPLATES.get(name)
    if template is None:
        text = "\n".join(f"{k}: {v}" for k, v in sorted(values.items()))
        return Rendered(DEFAULT_LANGUAGE, name, text, tuple(values.values()))
    used = language if language in template.texts else DEFAULT_LANGUAGE
    subject, text = template.texts[used]
    return Rendered(
        language=used,
        subject=subject.format_map(values),
        text=text.format_map(values),
        params=tuple(values[p] for p in template.params),
    )
