"""Request and response bodies of the visits API (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from opdesk.schemas import ApiModel

Part = Annotated[str, Field(max_length=20_000)]


class SoapIn(ApiModel):
    s: Part = ""
    o: Part = ""
    a: Part = ""
    p: Part = ""


class SoapVersionOut(ApiModel):
    v: int
    created_at: datetime
    created_by: uuid.UUID
    s: str
    o: str
    a: str
    p: str


class AddendumIn(ApiModel):
    text: Annotated[str, Field(min_length=1, max_length=10_000)]


class AddendumOut(ApiModel):
    id: uuid.UUID
    text: str
    created_at: datetime
    created_by: uuid.UUID


class DiagnosisIn(ApiModel):
    code: Annotated[str | None, Field(max_length=10)] = None
    text: Annotated[str | None, Field(max_length=500)] = None
    primary: bool = False


class DiagnosisOut(ApiModel):
    id: uuid.UUID
    code: str | None
    description: str | None
    text: str | None
    primary: bool
    position: int


class VitalsIn(ApiModel):
    # type -> value, e.g. {"pulse": 78, "temperature": 98.6}
    readings: dict[str, Decimal | str]
    collected_at: datetime | None = None


class VitalOut(ApiModel):
    id: uuid.UUID
    type: str
    value: Decimal
    unit: str
    collected_at: datetime


class ServiceIn(ApiModel):
    # Checked by catalogue._check (after an update's id is found: a foreign id is 404).
    code: Annotated[str, Field(max_length=20)] = ""
    name: Annotated[str, Field(max_length=200)] = ""
    price: Decimal = Decimal(-1)
    tax_rate: Decimal = Decimal(0)
    sac_hsn: Annotated[str | None, Field(max_length=8)] = None
    active: bool = True


class ServiceOut(ApiModel):
    id: uuid.UUID
    code: str
    name: str
    price: Decimal
    tax_rate: Decimal
    sac_hsn: str | None
    active: bool


class VisitServiceIn(ApiModel):
    service_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=100)] = 1


class VisitServiceOut(ApiModel):
    id: uuid.UUID
    service_id: uuid.UUID | None
    code: str
    description: str
    quantity: int
    unit_price: Decimal
    tax_rate: Decimal
    sac_hsn: str | None


class FollowUpIn(ApiModel):
    recommended_at: date | None = None
    interval_days: int | None = None


class FollowUpOut(ApiModel):
    recommended_at: date | None
    interval_days: int | None
    due_on: date | None


class BookedFollowUp(ApiModel):
    appointment_id: uuid.UUID
    starts_at: datetime | None


class VisitOut(ApiModel):
    id: uuid.UUID
    appointment_id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    status: str
    soap: SoapIn
    soap_draft_saved_at: datetime | None
    signed_version: int | None
    locked_at: datetime | None
    signed_by: uuid.UUID | None
    versions: list[SoapVersionOut]
    addenda: list[AddendumOut]
    diagnoses: list[DiagnosisOut]
    vitals: list[VitalOut]
    services: list[VisitServiceOut]
    follow_up: FollowUpOut
    created_at: datetime


class SavedOut(ApiModel):
    saved_at: datetime
    version: int | None


class Icd10Out(ApiModel):
    code: str
    description: str
    is_leaf: bool
