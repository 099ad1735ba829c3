"""Request and response bodies for patients."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from opdesk.schemas import ApiModel, Email, MobileE164, PhoneE164, ShortText

Gender = Literal["female", "male", "other", "undisclosed"]
Severity = Literal["mild", "moderate", "severe", "unknown"]
NamePart = Annotated[str, Field(max_length=80)]
Note = Annotated[str, Field(max_length=200)]


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
