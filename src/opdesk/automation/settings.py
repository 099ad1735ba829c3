"""A clinic's automation settings: the reminders before a visit, the no-show grace period
and the quiet hours, kept in ``tenants.automation_settings`` (jsonb)::

    {
      "reminders": {"24h": {"on": true, "hours": 24}, "2h": {"on": true, "hours": 2}},
      "visitTypes": {"procedure": {"reminders": {"2h": {"on": false}}}},
      "noShowGraceMinutes": 15,
      "quietHours": {"start": "21:00", "end": "08:00"}
    }

A visit type's reminder overrides the clinic's for appointments of that type; what it
leaves out (``on`` or ``hours``) is the clinic's.

:func:`read` never refuses what is stored: a value it cannot use (written by hand, or
by older code) reads as its default, as the rules that use it have always treated it.
:func:`parse` and :func:`save` refuse bad input naming each field (``reminders.24h.hours``)
with what to do, so the admin page and the API say the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput
from opdesk.scheduling.models import DoctorProfile
from opdesk.schemas import ApiModel
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant

# The defaults are the ones the rules used before a clinic could change them.
DEFAULT_HOURS = {"24h": 24, "2h": 2}
DEFAULT_GRACE_MINUTES = 15
DEFAULT_QUIET_START = "21:00"
DEFAULT_QUIET_END = "08:00"
REMINDER_KEYS = ("24h", "2h")

MIN_HOURS, MAX_HOURS = 1, 72
MIN_GRACE, MAX_GRACE = 0, 120

HOURS_REASON = f"enter a whole number of hours from {MIN_HOURS} to {MAX_HOURS}"
GRACE_REASON = f"enter a whole number of minutes from {MIN_GRACE} to {MAX_GRACE}"
TIME_REASON = "enter a time as HH:MM, e.g. 21:00"
ON_OFF_REASON = "choose on or off"
CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])(:[0-5][0-9])?$")


def _whole(value: Any, low: int, high: int, reason: str) -> int:
    """A whole number in ``low..high`` (24 or 24.0), else refused with ``reason``."""
    if isinstance(value, bool):
        raise ValueError(reason)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(reason)
    return value


def _hours(value: Any) -> int:
    return _whole(value, MIN_HOURS, MAX_HOURS, HOURS_REASON)


def _grace(value: Any) -> int:
    return _whole(value, MIN_GRACE, MAX_GRACE, GRACE_REASON)


def _on_off(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(ON_OFF_REASON)
    return value


def _clock(value: Any) -> str:
    """ "9:05", "09:05" or "09:05:00" -> "09:05"."""
    found = CLOCK.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(TIME_REASON)
    return f"{int(found[1]):02d}:{found[2]}"


# The bounds are for the API's document; the validators (run first) refuse in words.
Hours = Annotated[int, Field(ge=MIN_HOURS, le=MAX_HOURS), BeforeValidator(_hours)]
GraceMinutes = Annotated[int, Field(ge=MIN_GRACE, le=MAX_GRACE), BeforeValidator(_grace)]
OnOff = Annotated[bool, BeforeValidator(_on_off)]
ClockTime = Annotated[str, Field(pattern=CLOCK.pattern), BeforeValidator(_clock)]


class ReminderSetting(ApiModel):
    """One reminder for the whole clinic: on or off, and how many hours before the visit."""

    on: OnOff = True
    hours: Hours


class ClinicReminders(ApiModel):
    day_before: ReminderSetting = Field(
        default_factory=lambda: ReminderSetting(on=True, hours=DEFAULT_HOURS["24h"]),
        alias="24h",
    )
    same_day: ReminderSetting = Field(
        default_factory=lambda: ReminderSetting(on=True, hours=DEFAULT_HOURS["2h"]),
        alias="2h",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_hours(cls, data: Any) -> Any:
        """A reminder given without its hours keeps the default hours."""
        if not isinstance(data, dict):
            return data
        return {
            key: {"hours": DEFAULT_HOURS[key], **value}
            if key in DEFAULT_HOURS and isinstance(value, dict)
            else value
            for key, value in data.items()
        }

    def of(self, key: str) -> ReminderSetting:
        return self.day_before if key == "24h" else self.same_day


class ReminderOverride(ApiModel):
    """A visit type's own reminder: what it leaves out (None) is the clinic's."""

    on: OnOff | None = None
    hours: Hours | None = None

    @property
    def empty(self) -> bool:
        return self.on is None and self.hours is None

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class OverrideReminders(ApiModel):
    day_before: ReminderOverride = Field(default_factory=ReminderOverride, alias="24h")
    same_day: ReminderOverride = Field(default_factory=ReminderOverride, alias="2h")

    def of(self, key: str) -> ReminderOverride:
        return self.day_before if key == "24h" else self.same_day

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v}


class VisitTypeSettings(ApiModel):
    reminders: OverrideReminders = Field(default_factory=OverrideReminders)

    @property
    def empty(self) -> bool:
        return self.reminders.day_before.empty and self.reminders.same_day.empty


class QuietHours(ApiModel):
    """No routine message goes out from ``start`` to ``end`` (clinic time, may cross
    midnight); it waits until ``end``.
    """

    start: ClockTime = DEFAULT_QUIET_START
    end: ClockTime = DEFAULT_QUIET_END

    @field_validator("end", mode="after")
    @classmethod
    def _not_empty(cls, end: str, info: ValidationInfo) -> str:
        if info.data.get("start") == end:
            raise ValueError("choose a time other than the start of quiet hours")
        return end

    @property
    def times(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class AutomationSettings(ApiModel):
    """A clinic's reminder, no-show and quiet-hour settings (defaults: as before)."""

    reminders: ClinicReminders = Field(default_factory=ClinicReminders)
    visit_types: dict[str, VisitTypeSettings] = Field(default_factory=dict)
    no_show_grace_minutes: GraceMinutes = DEFAULT_GRACE_MINUTES
    quiet_hours: QuietHours = Field(default_factory=QuietHours)

    def reminder(self, key: str, visit_type: str | None = None) -> Reminder:
        """Whether the ``key`` ("24h", "2h") reminder is on for an appointment of
        ``visit_type``, and how many hours before its start.
        """
        clinic = self.reminders.of(key)
        own = self.visit_types.get(visit_type or "")
        override = own.reminders.of(key) if own is not None else ReminderOverride()
        return Reminder(
            on=clinic.on if override.on is None else override.on,
            hours=clinic.hours if override.hours is None else override.hours,
        )

    @property
    def grace(self) -> timedelta:
        """How long after a slot's end an absent patient is marked no-show."""
        return timedelta(minutes=self.no_show_grace_minutes)

    @field_validator("visit_types", mode="after")
    @classmethod
    def _drop_empty(cls, value: dict[str, VisitTypeSettings]) -> dict[str, VisitTypeSettings]:
        """An override that changes nothing is no override."""
        return {code: own for code, own in sorted(value.items()) if not own.empty}

    def stored(self) -> dict[str, Any]:
        """The jsonb kept on the clinic (and the API's answer)."""
        return self.model_dump(by_alias=True, mode="json")


@dataclass(frozen=True)
class Reminder:
    on: bool
    hours: int


@dataclass(frozen=True)
class VisitTypeChoice:
    code: str
    label: str


# --------------------------------------------------------------------------- reading


def _lenient(model: type[ApiModel], value: Any, default: Any) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError:
        return default


def _stored_reminder(value: Any, key: str) -> ReminderSetting:
    """A stored reminder: ``true``/``false`` or ``{"on", "hours"}``; what is unusable is
    the default.
    """
    default = ReminderSetting(on=True, hours=DEFAULT_HOURS[key])
    if isinstance(value, bool):
        return ReminderSetting(on=value, hours=default.hours)
    if not isinstance(value, dict):
        return default
    on = value.get("on", True)
    return ReminderSetting(
        on=on if isinstance(on, bool) else True,
        hours=_or_default(_hours, value.get("hours"), default.hours),
    )


def _stored_override(value: Any) -> ReminderOverride:
    if isinstance(value, bool):
        return ReminderOverride(on=value)
    if not isinstance(value, dict):
        return ReminderOverride()
    on = value.get("on")
    return ReminderOverride(
        on=on if isinstance(on, bool) else None,
        hours=_or_default(_hours, value.get("hours"), None),
    )


def _or_default(check: Any, value: Any, default: Any) -> Any:
    try:
        return check(value)
    except ValueError:
        return default


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def from_stored(raw: Any) -> AutomationSettings:
    """The settings as stored on a clinic, each unusable part read as its default."""
    raw = _dict(raw)
    reminders = _dict(raw.get("reminders"))
    visit_types: dict[str, VisitTypeSettings] = {}
    for code, own in _dict(raw.get("visitTypes")).items():
        given = _dict(_dict(own).get("reminders"))
        visit_types[str(code)] = VisitTypeSettings(
            reminders=OverrideReminders.model_validate(
                {key: _stored_override(given.get(key)) for key in REMINDER_KEYS}
            )
        )
    quiet = _dict(raw.get("quietHours"))
    return AutomationSettings(
        reminders=ClinicReminders.model_validate(
            {key: _stored_reminder(reminders.get(key), key) for key in REMINDER_KEYS}
        ),
        visit_types=visit_types,
        no_show_grace_minutes=_or_default(
            _grace, raw.get("noShowGraceMinutes", DEFAULT_GRACE_MINUTES), DEFAULT_GRACE_MINUTES
        ),
        quiet_hours=_lenient(
            QuietHours,
            {
                "start": _or_default(_clock, quiet.get("start"), DEFAULT_QUIET_START),
                "end": _or_default(_clock, quiet.get("end"), DEFAULT_QUIET_END),
            },
            QuietHours(),
        ),
    )


def of_tenant(tenant: Tenant) -> AutomationSettings:
    return from_stored(tenant.automation_settings)


def read(session: Session, ctx: RequestContext) -> AutomationSettings:
    """The settings of the clinic the context acts for."""
    assert ctx.tenant_id is not None
    return of_tenant(tenants.get_tenant(session, ctx.tenant_id))


def visit_types(session: Session) -> list[VisitTypeChoice]:
    """The visit types the clinic's doctors offer (the first label seen for each code),
    active doctors first.
    """
    rows = session.execute(
        select(DoctorProfile.visit_types).order_by(
            DoctorProfile.active.desc(), DoctorProfile.created_at, DoctorProfile.id
        )
    ).scalars()
    found: dict[str, str] = {}
    for kinds in rows:
        for kind in kinds or []:
            code = str(kind.get("code", ""))
            if code and code not in found:
                found[code] = str(kind.get("label") or code)
    return [VisitTypeChoice(code, label) for code, label in found.items()]


# --------------------------------------------------------------------------- changing


def field_of(loc: tuple[int | str, ...]) -> str:
    """A pydantic error's place as the field's name: ``reminders.24h.hours``."""
    return ".".join(str(part) for part in loc) or "settings"


def reason_of(error: Any) -> str:
    """What to do, in words: our validators' own messages, else a plain one."""
    kind = error.get("type", "")
    message = str(error.get("msg", ""))
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "missing":
        return "fill this in"
    if kind == "extra_forbidden":
        return "is not a setting: leave it out"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be an object of settings"
    return message


def parse(data: Any) -> AutomationSettings:
    """Settings from input (JSON, or a form turned into the same shape); bad values are
    refused with ``InvalidInput`` naming each field.
    """
    try:
        return AutomationSettings.model_validate(data)
    except ValidationError as exc:
        errors: list[FieldError] = []
        for error in exc.errors():
            errors.append(FieldError(field_of(tuple(error["loc"])), reason_of(error)))
        raise InvalidInput(errors) from None


def save(session: Session, ctx: RequestContext, settings: AutomationSettings) -> AutomationSettings:
    """Replace the clinic's settings; audited with the settings before and after.

    Overrides are for the clinic's visit types only (an override already stored for a
    visit type no doctor offers any more may stay).
    """
    assert ctx.tenant_id is not None
    tenant = tenants.get_tenant(session, ctx.tenant_id)
    session.refresh(tenant, with_for_update=True)  # two admins saving: one after the other
    known = {v.code for v in visit_types(session)} | set(
        _dict(_dict(tenant.automation_settings).get("visitTypes"))
    )
    unknown = sorted(set(settings.visit_types) - known)
    if unknown:
        offered = ", ".join(sorted(known)) or "none yet"
        raise InvalidInput(
            [
                FieldError(
                    f"visitTypes.{code}",
                    f"is not one of the clinic's visit types (they are: {offered})",
                )
                for code in unknown
            ]
        )
    before = dict(tenant.automation_settings or {})
    after = settings.stored()
    if after == before:
        return settings
    tenant.automation_settings = after
    tenant.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity=tenants.ENTITY,
        entity_id=tenant.id,
        action="update",
        diff=audit.diff_of({"automationSettings": before}, {"automationSettings": after}),
    )
    return settings
