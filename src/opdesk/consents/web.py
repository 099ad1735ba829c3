"""Admin page: the clinic's consent texts, one new version at a time."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from opdesk.consents import service
from opdesk.consents.models import CONSENT_TYPES, LABELS, Consent
from opdesk.consents.schemas import TemplateCreate
from opdesk.context import RequestContext
from opdesk.security.sessions import Principal
from opdesk.web.deps import Ctx, DbSession, acting
from opdesk.web.templating import Pages, form_errors

router = APIRouter(include_in_schema=False)


def sign_here(
    request: Request,
    session: Session,
    ctx: RequestContext,
    *,
    patient_id: uuid.UUID,
    type_: str,
    method: str,
) -> Consent:
    """Sign with this app's cipher, document storage and font cache (desk, portal, API)."""
    return service.sign(
        session,
        ctx,
        request.app.state.cipher,
        request.app.state.storage,
        patient_id=patient_id,
        type_=type_,
        method=method,
        fonts=request.app.state.settings.data_dir / "fonts",
    )


Manager = Annotated[Principal, acting("clinic:manage")]


def _render(request: Request, session: DbSession, status: int = 200, **context: object) -> Response:
    pages: Pages = request.app.state.pages
    context.setdefault("values", {})
    context.setdefault("errors", {})
    options = [(t, LABELS[t]) for t in CONSENT_TYPES]
    return pages.render(
        request,
        "consents/admin.html",
        {"templates": service.templates(session), "types": options, **context},
        status_code=status,
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
    pages: Pages = request.app.state.pages
    message = f"Published version {template.version} of {LABELS[template.type]}."
    return pages.redirect_with_flash("/admin/consents", message)
