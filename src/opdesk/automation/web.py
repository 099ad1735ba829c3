"""The clinic's reminder, no-show and quiet-hour settings: the admin page "Reminders and
messages" and the API ``/api/v1/automation/settings``, both through
:mod:`opdesk.automation.settings` (the same checks, the same words).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk.automation import settings as automation_settings
from opdesk.automation.settings import REMINDER_KEYS, AutomationSettings, VisitTypeChoice
from opdesk.context import RequestContext
from opdesk.errors import DomainError, InvalidInput
from opdesk.identity.sessions import Principal
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.web.deps import Ctx, DbSession, acting
from opdesk.web.pages import PostedForm, attempt, flash, render
from opdesk.web.templating import NavEntry

PAGE = "/admin/reminders"
router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/automation", tags=["automation"], responses=PROBLEM_RESPONSES)
NAV = (NavEntry("Reminders and messages", PAGE, "automation:configure", "admin"),)
Configurer = Annotated[Principal, acting("automation:configure")]

REMINDER_NAMES = {"24h": "24 h reminder", "2h": "2 h reminder"}
OVERRIDE_CHOICES = (("", "As the clinic"), ("on", "On"), ("off", "Off"))


# --------------------------------------------------------------------------- API


@api.get("/settings", response_model=AutomationSettings, response_model_by_alias=True)
def get_settings(session: DbSession, ctx: Ctx, _: Configurer) -> AutomationSettings:
    """The clinic's reminder, no-show grace and quiet-hour settings (defaults if unset)."""
    return automation_settings.read(session, ctx)


@api.put("/settings", response_model=AutomationSettings, response_model_by_alias=True)
def put_settings(
    body: AutomationSettings, session: DbSession, ctx: Ctx, _: Configurer
) -> AutomationSettings:
    """Replace the settings; what the body leaves out takes its default. Overrides name
    the clinic's visit types by code (422 for any other).
    """
    return automation_settings.save(session, ctx, body)


# --------------------------------------------------------------------------- page


def _number(text: str) -> Any:
    """A form's number as a number; anything else as typed, for the check to refuse."""
    text = text.strip()
    return int(text) if re.fullmatch(r"[0-9]{1,6}", text) else text


def from_form(form: dict[str, str], kinds: list[VisitTypeChoice]) -> dict[str, Any]:
    """The posted form in the settings' shape (the fields are named as in the API)."""
    overrides: dict[str, Any] = {}
    for kind in kinds:
        own: dict[str, Any] = {}
        for key in REMINDER_KEYS:
            name = f"visitTypes.{kind.code}.reminders.{key}"
            choice = form.get(f"{name}.on", "")
            hours = form.get(f"{name}.hours", "").strip()
            own[key] = {
                "on": {"on": True, "off": False}.get(choice),
                "hours": _number(hours) if hours else None,
            }
        overrides[kind.code] = {"reminders": own}
    return {
        "reminders": {
            key: {
                "on": form.get(f"reminders.{key}.on") == "on",
                "hours": _number(form.get(f"reminders.{key}.hours", "")),
            }
            for key in REMINDER_KEYS
        },
        "visitTypes": overrides,
        "noShowGraceMinutes": _number(form.get("noShowGraceMinutes", "")),
        "quietHours": {
            "start": form.get("quietHours.start", "").strip(),
            "end": form.get("quietHours.end", "").strip(),
        },
    }


def form_values(settings: AutomationSettings, kinds: list[VisitTypeChoice]) -> dict[str, str]:
    """The saved settings as the form shows them."""
    values: dict[str, str] = {
        "noShowGraceMinutes": str(settings.no_show_grace_minutes),
        "quietHours.start": settings.quiet_hours.start,
        "quietHours.end": settings.quiet_hours.end,
    }
    for key in REMINDER_KEYS:
        clinic = settings.reminders.of(key)
        values[f"reminders.{key}.on"] = "on" if clinic.on else ""
        values[f"reminders.{key}.hours"] = str(clinic.hours)
        for kind in kinds:
            own = settings.visit_types.get(kind.code)
            override = own.reminders.of(key) if own is not None else None
            name = f"visitTypes.{kind.code}.reminders.{key}"
            on = None if override is None else override.on
            values[f"{name}.on"] = "" if on is None else ("on" if on else "off")
            hours = None if override is None else override.hours
            values[f"{name}.hours"] = "" if hours is None else str(hours)
    return values


def _page(
    request: Request,
    session: Session,
    ctx: RequestContext,
    status: int = 200,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    saved = automation_settings.read(session, ctx)
    kinds = automation_settings.visit_types(session)
    return render(
        request,
        "automation/settings.html",
        status,
        saved=saved,
        kinds=kinds,
        names=REMINDER_NAMES,
        keys=REMINDER_KEYS,
        choices=OVERRIDE_CHOICES,
        values=values if values is not None else form_values(saved, kinds),
        errors=errors or {},
    )


@router.get(PAGE)
def settings_page(request: Request, session: DbSession, ctx: Ctx, _: Configurer) -> Response:
    """The reminders before a visit, the no-show grace period and the quiet hours."""
    return _page(request, session, ctx)


@router.post(PAGE)
def save_settings(
    request: Request, session: DbSession, ctx: Ctx, form: PostedForm, _: Configurer
) -> Response:
    """Save the whole form; a bad value shows beside its field and nothing is saved."""
    kinds = automation_settings.visit_types(session)

    def refused(error: DomainError) -> Response:
        errors = (
            {e.field: e.reason for e in error.errors} if isinstance(error, InvalidInput) else {}
        )
        if not errors:
            return flash(request, PAGE, str(error), "error")
        values = {k: v for k, v in form.items() if k != "csrf_token"}
        return _page(request, session, ctx, 422, values=values, errors=errors)

    return attempt(
        request,
        session,
        lambda: automation_settings.save(
            session, ctx, automation_settings.parse(from_form(form, kinds))
        ),
        done=lambda _saved: flash(request, PAGE, "Reminder and message settings saved."),
        failed=refused,
    )
