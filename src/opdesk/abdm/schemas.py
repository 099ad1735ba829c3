"""Request and response bodies for ABDM settings."""

from __future__ import annotations

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
