"""Request and response bodies for patients."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from opdesk.schemas import ApiModel, Email, MobileE164, PhoneE164, ShortText

Gender = Literal["female", "male", "other", "undisclosed"]
Severity = Literal["mild", "moderate", "severe", "unknown"]
# As patients/models.py lists them (BLOOD_GROUPS, LANGUAGES); tests check they agree.
BloodGroup = Literal["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"]
Language = Literal["en", "hi", "mr", "gu", "bn", "ta", "te", "kn", "ml", "pa", "or", "ur"]
NamePart = Annotated[str, Field(max_length=80)]
Note = Annotated[str, Field(max_length=200)]

# Each language as its speakers write it, with its English name for the desk.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "hi": "हिन्दी (Hindi)",
    "mr": "मराठी (Marathi)",
    "gu": "ગુજરાતી (Gujarati)",
    "bn": "বাংলা (Bengali)",
    "ta": "தமிழ் (Tamil)",
    "te": "తెలుగు (Telugu)",
    "kn": "ಕನ್ನಡ (Kannada)",
    "ml": "മലയാളം (Malayalam)",
    "pa": "ਪੰਜਾਬੀ (Punjabi)",
    "or": "ଓଡ଼ିଆ (Odia)",
    "ur": "اردو (Urdu)",
}

ABHA_DIGITS = 14


def luhn_valid(digits: str) -> bool:
    """Whether the last digit is the Luhn (mod 10) check digit of the others.

    The ABHA number's 14th digit is a check digit. No NHA specification we could find
    names its algorithm; every ABHA number in ABDM's own developer documentation and
    sandbox responses we checked (43-4221-5105-6749, 25-8180-3683-5375,
    25-7840-4131-2620, 31-1737-5235-7135, 91-7561-4088-8857, 91-5101-6530-5101)
    satisfies Luhn and none satisfies Verhoeff (the Aadhaar check), so Luhn it is.
    """
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def abha_digits(text: str) -> str:
    """An ABHA number as typed (``12-3456-7890-1234``, spaces or none) as its 14 digits."""
    digits = "".join(c for c in text if c not in " -")
    if not digits.isascii() or not digits.isdigit() or len(digits) != ABHA_DIGITS:
        raise ValueError("enter the 14 digits of the ABHA number, e.g. 91-1234-5678-9012")
    if not luhn_valid(digits):
        raise ValueError(
            "this is not a valid ABHA number (its last digit does not match); check it"
        )
    return digits


# An ABHA address: a handle of 8-18 letters and digits with at most one dot or underscore
# inside it, "@", and the domain ABDM issued it under (abdm; sbx in the sandbox; ndhm for
# the older ones). ABDM compares them without case.
_ABHA_ADDRESS = re.compile(r"^(?=[a-z0-9._]{8,18}@)[a-z0-9]+(?:[._][a-z0-9]+)?@(abdm|sbx|ndhm)$")


def abha_address(text: str) -> str:
    """An ABHA address as typed (``Amit.Sharma@abdm``), lower-cased."""
    address = text.strip().lower()
    if not _ABHA_ADDRESS.match(address):
        raise ValueError(
            "enter the ABHA address as it appears in the ABHA app, e.g. amit.sharma@abdm "
            "(8 to 18 letters or digits, at most one dot or underscore, then @abdm)"
        )
    return address


def pin_code(text: str) -> str:
    """A PIN code: six digits, the first not 0 (a space after the third is accepted)."""
    digits = text.replace(" ", "")
    if not (len(digits) == 6 and digits.isascii() and digits.isdigit() and digits[0] != "0"):
        raise ValueError("enter the 6-digit PIN code; it does not start with 0")
    return digits


AbhaNumber = Annotated[str, Field(max_length=20), AfterValidator(abha_digits)]
AbhaAddress = Annotated[str, Field(max_length=40), AfterValidator(abha_address)]
PinCode = Annotated[str, Field(max_length=10), AfterValidator(pin_code)]
Address = Annotated[str, Field(min_length=1, max_length=300)]


class PatientName(ApiModel):
    first: Annotated[str, Field(min_length=1, max_length=80)]
    last: NamePart = ""


class Allergy(ApiModel):
    substance: ShortText
    reaction: Note | None = None
    severity: Severity = "unknown"


class Medication(ApiModel):
    name: ShortText
    dose: Note | None = None
    freq: Note | None = None


class EmergencyContact(ApiModel):
    name: ShortText
    phone: PhoneE164


class Flags(ApiModel):
    vip: bool = False
    blocked: bool = False


class PatientFields(ApiModel):
    """Fields shared by registration and edits (all optional here)."""

    phone: MobileE164 | None = None
    email: Email | None = None
    dob: date | None = None
    age_years: Annotated[int, Field(ge=0, le=125)] | None = None
    gender: Gender | None = None
    city: ShortText | None = None
    address: Address | None = None
    pin_code: PinCode | None = None
    blood_group: BloodGroup | None = None
    preferred_language: Language | None = None
    abha_number: AbhaNumber | None = None
    abha_address: AbhaAddress | None = None
    allergies: Annotated[list[Allergy], Field(max_length=50)] | None = None
    chronic_conditions: Annotated[list[ShortText], Field(max_length=50)] | None = None
    ongoing_medications: Annotated[list[Medication], Field(max_length=50)] | None = None
    emergency_contact: EmergencyContact | None = None
    flags: Flags | None = None
    guardian_id: uuid.UUID | None = None
    guardian_relation: Annotated[str, Field(max_length=40)] | None = None

    @model_validator(mode="after")
    def _not_both_dob_and_age(self) -> PatientFields:
        if self.dob is not None and self.age_years is not None:
            raise ValueError("give the date of birth or the age in years, not both")
        return self


class PatientCreate(PatientFields):
    name: PatientName
    gender: Gender

    @model_validator(mode="after")
    def _required_together(self) -> PatientCreate:
        if self.dob is None and self.age_years is None:
            raise ValueError("give the date of birth, or the age in years if the date is unknown")
        if self.phone is None and self.guardian_id is None:
            raise ValueError("give a mobile number, or the family member whose phone they share")
        return self


class PatientUpdate(PatientFields):
    name: PatientName | None = None
    registered_online: Literal[False] | None = Field(
        default=None,
        description="false: the desk has completed a record the patient made online",
    )


class PatientOut(ApiModel):
    id: uuid.UUID
    number: str
    name: PatientName
    phone: str | None
    email: str | None
    dob: date | None
    age_years: int
    age_is_estimate: bool
    gender: Gender
    city: str | None
    address: str | None = None
    pin_code: str | None = None
    blood_group: BloodGroup | None = None
    preferred_language: Language = "en"
    abha_number: str | None = Field(
        default=None, description="14 digits shown as 12-3456-7890-1234"
    )
    abha_address: str | None = Field(default=None, description="e.g. amit.sharma@abdm")
    abha_verified_at: datetime | None = Field(
        default=None,
        description="when the patient proved the ABHA number theirs with the ABHA login OTP",
    )
    registered_online: bool = False
    allergies: list[Allergy]
    chronic_conditions: list[str]
    ongoing_medications: list[Medication]
    emergency_contact: EmergencyContact | None
    flags: Flags
    consents: list[dict[str, object]]
    guardian_id: uuid.UUID | None
    guardian_relation: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


class PatientSummary(ApiModel):
    id: uuid.UUID
    number: str
    name: PatientName
    age_years: int
    gender: Gender
    city: str | None
    phone_last4: str | None
    flags: Flags
    guardian_id: uuid.UUID | None
    registered_online: bool = False


class OnlineSignUp(ApiModel):
    """A new patient registering themselves while booking online. ``proof`` is the phone
    proof a verified code gave (``POST /auth/otp/verify``): the record is made only for
    the phone the code went to, at the clinic that sent it, once.
    """

    proof: Annotated[str, Field(min_length=1, max_length=1000)]
    phone: MobileE164
    name: PatientName
    dob: date | None = None
    age_years: Annotated[int, Field(ge=0, le=125)] | None = None
    gender: Gender
    preferred_language: Language = "en"
    device_token: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _dob_or_age(self) -> OnlineSignUp:
        if (self.dob is None) == (self.age_years is None):
            raise ValueError("give the date of birth or the age in years (one of them)")
        return self


class OnlineSignedUp(ApiModel):
    """The new (or already registered) patient and their signed-in session."""

    patient_id: uuid.UUID
    created: bool
    token: str
    stage: str
    device_token: str | None = None
