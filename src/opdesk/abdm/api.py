"""REST for a clinic's ABDM settings (admins)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from opdesk.abdm import bridge, hub, messages
from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.schemas import AbdmSettingsIn, AbdmSettingsOut
from opdesk.errors import FieldError, InvalidInput, NotFound
from opdesk.identity.sessions import Principal
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.uow import enter_tenant
from opdesk.web.deps import Anyone, AppSettings, Cipher, Ctx, DbSession, acting

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


# --------------------------------------------------------------------------- the bridge

# The gateway calls ``<bridge URL><path>``; the bridge URL registered with ABDM is
# ``https://<this OPDesk>/api/v1/abdm/bridge`` for every clinic on it.
bridge_router = APIRouter(prefix="/bridge", include_in_schema=False)


async def _raw_body(request: Request) -> bytes:
    """The body as sent, read once (stored as received)."""
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]


def _facility(request: Request, raw: bytes) -> str:
    """The facility the call is for: ``X-HIP-ID``, else the body's ``metaData.hipId``."""
    named = request.headers.get("x-hip-id", "").strip()
    if named:
        return named.upper()
    try:
        meta = json.loads(raw).get("metaData", {})
        found = meta.get("hipId") if isinstance(meta, dict) else None
    except (ValueError, AttributeError):
        found = None
    if not isinstance(found, str) or not found.strip():
        raise InvalidInput([FieldError("X-HIP-ID", "names no facility")])
    return found.strip().upper()


@bridge_router.post("/api/v3/hip/patient/share", status_code=202)
def patient_share(
    request: Request,
    raw: RawBody,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
    _: Anyone,
) -> Response:
    """Scan & Share: a patient's profile from a counter's QR code. 202 once it is kept;
    the token goes back to the gateway by ``on-share`` from the worker."""
    facility = _facility(request, raw)
    enter_tenant(session, ctx, bridge.clinic_of_facility(session, facility))
    assert ctx.tenant_id is not None
    clinic = abdm_settings.of(session, cipher, ctx.tenant_id)
    assert clinic is not None  # the routing function finds enabled settings only
    meta = bridge.checked(
        request.headers.items(), hub.link_for(settings, clinic), ctx.now(), facility
    )
    profile = bridge.parsed(raw, messages.parse_share_profile)
    if profile.hip_id.upper() != facility:
        raise InvalidInput([FieldError("metaData.hipId", f"is not {facility}")])
    bridge.receive(session, ctx, cipher, kind="patient-share", meta=meta, raw=raw)
    return Response(status_code=202)


router.include_router(bridge_router)
