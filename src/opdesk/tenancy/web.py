"""Pages: the front door (find your clinic) and each clinic's landing page."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from opdesk.schemas import ApiModel, Slug
from opdesk.security.permissions import PUBLIC
from opdesk.tenancy import queries, service
from opdesk.web.deps import Allow, DbSession, services
from opdesk.web.pages import flash, render
from opdesk.web.templating import NavEntry, form_errors

router = APIRouter(include_in_schema=False, dependencies=[Depends(Allow(PUBLIC))])
NAV: tuple[NavEntry, ...] = ()


class FindClinic(ApiModel):
    code: Slug


@router.get("/")
def home(request: Request, session: DbSession) -> Response:
    demo = service.find_by_slug(session, services(request).demo_slug)
    return render(request, "tenancy/home.html", demo=demo)


@router.get("/find")
def find_clinic(request: Request, session: DbSession, code: str = "") -> Response:
    """Look a clinic up by its code; errors come back on the same form."""
    values = {"code": code}
    try:
        wanted = FindClinic(code=code.strip().lower())
    except ValidationError as exc:
        errors = form_errors(exc)
        return render(request, "tenancy/home.html", 422, errors=errors, values=values, demo=None)
    tenant = service.find_by_slug(session, wanted.code)
    if tenant is None:
        errors = {"code": "No clinic uses this code. Check the spelling with your clinic."}
        return render(request, "tenancy/home.html", 404, errors=errors, values=values, demo=None)
    return flash(request, f"/c/{tenant.slug}", f"Welcome to {tenant.name}.")


@router.get("/c/{slug}")
def clinic_landing(request: Request, slug: str, session: DbSession) -> Response:
    tenant = service.get_by_slug(session, slug)
    profile = queries.public_profile(tenant)
    return render(request, "tenancy/clinic.html", clinic=profile)
