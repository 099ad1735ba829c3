"""REST: the public clinic directory."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.security.permissions import PUBLIC
from opdesk.tenancy import queries, service
from opdesk.tenancy.deps import SlugPath
from opdesk.tenancy.schemas import ClinicPublic
from opdesk.web.deps import Allow, DbSession

router = APIRouter(
    prefix="/clinics",
    tags=["clinics"],
    responses=PROBLEM_RESPONSES,
    dependencies=[Depends(Allow(PUBLIC))],
)


@router.get("/{slug}", response_model=ClinicPublic, response_model_by_alias=True)
def get_clinic(slug: SlugPath, session: DbSession) -> ClinicPublic:
    """A clinic's public profile by its code (the slug in its address)."""
    return queries.public_profile(service.get_by_slug(session, slug))
