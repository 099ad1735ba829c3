"""REST for a clinic's ABDM settings (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.schemas import AbdmSettingsIn, AbdmSettingsOut
from opdesk.errors import FieldError, InvalidInput, NotFound
from opdesk.identity.sessions import Principal
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.web.deps import Cipher, Ctx, DbSession, acting

router = APIRouter(prefix="/abdm", tags=["abdm"], responses=PROBLEM_RESPONSES)

Manager = Annotated[Principal, acting("abdm:manage")]


@router.get("/settings", response_model=AbdmSettingsOut)
def get_settings(session: DbSession, ctx: Ctx, cipher: Cipher, _: Manager) -> AbdmSettingsOut:
    """The clinic's ABDM settings; 404 until they are first saved."""
    assert ctx.tenant_id is not None
    saved = abdm_settings.of(session, cipher, ctx.tenant_id)
    if saved is None:
        raise NotFound("This clinic has no ABDM settings yet")
    return AbdmSettingsOut.of(saved)


@router.put("/settings", response_model=AbdmSettingsOut)
def put_settings(
    body: AbdmSettingsIn, session: DbSession, ctx: Ctx, cipher: Cipher, _: Manager
) -> AbdmSettingsOut:
    """Save the clinic's ABDM settings: 422 naming each bad field, 409 when another clinic
    uses the facility id."""
    assert ctx.tenant_id is not None
    saved = abdm_settings.of(session, cipher, ctx.tenant_id)
    secret = body.client_secret or (saved.client_secret if saved else "")
    if not secret:
        raise InvalidInput([FieldError("clientSecret", "is required the first time")])
    return AbdmSettingsOut.of(abdm_settings.save(session, ctx, cipher, body.settings(secret)))
