"""Request and response bodies for ABDM settings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from opdesk.abdm.settings import Abdm, Counter
from opdesk.schemas import ApiModel

Environment = Literal["sandbox", "production"]


class CounterBody(ApiModel):
    id: Annotated[str, Field(max_length=40, examples=["desk-1"])]
    label: Annotated[str, Field(max_length=80, examples=["Front desk"])]


class AbdmSettingsOut(ApiModel):
    """The clinic's ABDM settings; the client secret only as its last four characters."""

    facility_id: str
    facility_name: str
    client_id: str
    client_secret_last4: str
    environment: Environment
    enabled: bool
    counters: list[CounterBody]

    @classmethod
    def of(cls, saved: Abdm) -> AbdmSettingsOut:
        return cls(
            facility_id=saved.facility_id,
            facility_name=saved.facility_name,
            client_id=saved.client_id,
            client_secret_last4=saved.client_secret[-4:],
            environment=saved.environment,
            enabled=saved.enabled,
            counters=[CounterBody(id=c.id, label=c.label) for c in saved.counters],
        )


class AbdmSettingsIn(ApiModel):
    """The clinic's ABDM settings. ``clientSecret`` left out keeps the one saved (it is
    required the first time)."""

    facility_id: Annotated[str, Field(max_length=60, examples=["IN2710004770"])]
    facility_name: Annotated[str, Field(max_length=300)]
    client_id: Annotated[str, Field(max_length=100, examples=["SBX_001234"])]
    client_secret: Annotated[str, Field(max_length=300)] | None = None
    environment: Environment = "sandbox"
    enabled: bool = False
    counters: Annotated[list[CounterBody], Field(max_length=40)] = Field(default_factory=list)

    def settings(self, secret: str) -> Abdm:
        return Abdm(
            facility_id=self.facility_id,
            facility_name=self.facility_name,
            client_id=self.client_id,
            client_secret=secret,
            environment=self.environment,
            enabled=self.enabled,
            counters=tuple(Counter(c.id, c.label) for c in self.counters),
        )


class AbhaOtpIn(ApiModel):
    """Which ABHA number to verify; left out, the patient's own."""

    abha_number: Annotated[str, Field(max_length=20)] | None = None


class AbhaOtpOut(ApiModel):
    """ABDM sent a code to the mobile linked with the ABHA. Send ``check`` back with it."""

    check: str
    abha_number: str
    expires_at: datetime


class AbhaVerifyIn(ApiModel):
    check: Annotated[str, Field(max_length=2000)]
    otp: Annotated[str, Field(max_length=12)]


class AbhaVerified(ApiModel):
    patient_id: uuid.UUID
    abha_number: str | None
    abha_address: str | None
    abha_verified_at: datetime | None
