"""Admin page: the clinic's consent texts, one new version at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from opdesk.consents import service
from opdesk.consents.models import CONSENT_TYPES, LABELS
from opdesk.consents.schemas import TemplateCreate
from opdesk.identity.sessions import Principal
from opdesk.web.deps import Ctx, DbSession, acting
from opdesk.web.pages import flash, render
from opdesk.web.templating import NavEntry, form_errors

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("Consent texts", "/admin/consents", "clinic:manage", "admin"),)
Manager = Annotated[Principal, acting("clinic:manage")]


def _render(request: Request, session: DbSession, status: int = 200, **context: object) -> Response:
    options = [(t, LABELS[t]) for t in CONSENT_TYPES]
    templates = service.templates(session)
    return render(
        request, "consents/admin.html", status, templates=templates, types=options, **context
    )


@router.get("/admin/consents")
def consent_texts(request: Request, session: DbSession, _: Manager) -> Response:
    return _render(request, session)


@router.post("/admin/consents")
def add_consent_text(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
    type: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    """Publish a new version; patients sign the newest version from now on."""
    values = {"type": type, "title": title, "body": body}
    try:
        data = TemplateCreate.model_validate(values)
    except ValidationError as exc:
        return _render(request, session, 422, values=values, errors=form_errors(exc))
    template = service.add_template(session, ctx, type_=data.type, title=data.title, body=data.body)
    message = f"Published version {template.version} of {LABELS[template.type]}."
    return flash(request, "/admin/consents", message)
