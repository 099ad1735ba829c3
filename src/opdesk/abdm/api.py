"""REST for a clinic's ABDM settings (admins)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from opdesk.abdm import abha_check, bridge, hub, messages
from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.messages import V3_PATHS
from opdesk.abdm.schemas import (
    AbdmSettingsIn,
    AbdmSettingsOut,
    AbhaOtpIn,
    AbhaOtpOut,
    AbhaVerified,
    AbhaVerifyIn,
)
from opdesk.errors import FieldError, InvalidInput, NotFound
from opdesk.identity.sessions import Principal
from opdesk.patients import service as patients
from opdesk.patients.deps import PatientInPath
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.tenancy.service import today_at_clinic
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


# --------------------------------------------------------------------------- ABHA check

Writer = Annotated[Principal, acting("patients:write")]


@router.post("/patients/{patient_id}/abha-otp", response_model=AbhaOtpOut)
def send_abha_code(
    _: Writer,
    patient: PatientInPath,
    body: AbhaOtpIn,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
) -> AbhaOtpOut:
    """Ask ABDM to send the ABHA login code to the mobile linked with the patient's ABHA
    number (or ``abhaNumber``). 409 when the clinic is not on ABDM, 503 when ABDM is down."""
    started = abha_check.start(
        session, ctx, cipher, settings, patient_id=patient.id, abha_number=body.abha_number
    )
    return AbhaOtpOut(
        check=started.check, abha_number=started.abha_number, expires_at=started.expires_at
    )


@router.post("/patients/{patient_id}/abha-verify", response_model=AbhaVerified)
def verify_abha(
    _: Writer,
    patient: PatientInPath,
    body: AbhaVerifyIn,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
) -> AbhaVerified:
    """The code the patient read out: right, and the ABHA number is stored verified;
    wrong or lapsed, 422 on ``otp``."""
    verified = abha_check.finish(
        session, ctx, cipher, settings, patient_id=patient.id, check=body.check, otp=body.otp
    )
    shown = patients.read(cipher, verified, today_at_clinic(session, ctx))
    return AbhaVerified(
        patient_id=verified.id,
        abha_number=shown.abha_number,
        abha_address=shown.abha_address,
        abha_verified_at=shown.abha_verified_at,
    )


# --------------------------------------------------------------------------- the bridge

# The gateway calls ``<bridge URL><path>``; the bridge URL registered with ABDM is
# ``https://<this OPDesk>/api/v1/abdm/bridge`` for every clinic on it.
bridge_router = APIRouter(prefix="/bridge", include_in_schema=False)


async def _raw_body(request: Request) -> bytes:
    """The body as sent, read once (stored as received)."""
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]


def _named_in_body(raw: bytes) -> str | None:
    """The facility a body names: ``metaData.hipId`` (Scan & Share) or the consent's
    ``notification.consentDetail.hip.id``. Only for routing: the token is checked after."""
    try:
        data = json.loads(raw)
        found = data.get("metaData", {}).get("hipId") or (
            data.get("notification", {}).get("consentDetail", {}).get("hip", {}).get("id")
        )
    except (ValueError, AttributeError):
        return None
    return found.strip().upper() if isinstance(found, str) and found.strip() else None


def _facility(request: Request, raw: bytes) -> str:
    """The facility the call is for: ``X-HIP-ID``, else what the body names."""
    named = request.headers.get("x-hip-id", "").strip().upper() or _named_in_body(raw)
    if not named:
        raise InvalidInput([FieldError("X-HIP-ID", "names no facility")])
    return named


class Bridge:
    """One inbound call of the gateway: routed, checked, parsed, kept (202), or refused
    with nothing kept."""

    def __init__(self, kind: str, parse: Callable[[Any], Any]) -> None:
        self.kind = kind
        self.parse = parse

    def __call__(
        self,
        request: Request,
        raw: RawBody,
        session: DbSession,
        ctx: Ctx,
        cipher: Cipher,
        settings: AppSettings,
        _: Anyone,
    ) -> Response:
        facility = _facility(request, raw)
        enter_tenant(session, ctx, bridge.clinic_of_facility(session, facility))
        assert ctx.tenant_id is not None
        clinic = abdm_settings.of(session, cipher, ctx.tenant_id)
        if clinic is None or not clinic.enabled:
            raise bridge.not_here(facility)
        link = hub.link_for(settings, clinic)
        meta = bridge.checked(request.headers.items(), link, ctx.now(), facility)
        parsed = bridge.parsed(raw, self.parse)
        named = getattr(parsed, "hip_id", None)
        if named is not None and named.upper() != facility:
            raise InvalidInput([FieldError("hipId", f"is not {facility}, the facility called")])
        bridge.receive(session, ctx, cipher, kind=self.kind, meta=meta, raw=raw)
        return Response(status_code=202)


# Each call the gateway makes, and what reads its body (messages.V3_PATHS names them).
CALLS = (
    (V3_PATHS.share, "patient-share", messages.parse_share_profile),
    (V3_PATHS.discover, "discover", messages.parse_discover),
    (V3_PATHS.consent_notify, "consent-notify", messages.parse_consent_notify),
    (
        V3_PATHS.health_information_request,
        "hi-request",
        messages.parse_health_information_request,
    ),
    (V3_PATHS.link_init, "link-init", messages.parse_link_init),
    (V3_PATHS.link_confirm, "link-confirm", messages.parse_link_confirm),
    (V3_PATHS.on_generate_token, "on-generate-token", messages.parse_on_generate_token),
    (V3_PATHS.on_link_carecontext, "on-link-carecontext", messages.parse_on_link_carecontext),
)
for path, kind, parse in CALLS:
    if path is None:
        continue
    bridge_router.add_api_route(
        path,
        Bridge(kind, parse),
        methods=["POST"],
        status_code=202,
        name=f"abdm_{kind.replace('-', '_')}",
        description=f"The gateway's {kind} call: 202 once kept; answered by the worker.",
    )


router.include_router(bridge_router)
