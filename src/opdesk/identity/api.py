"""REST: sign-in (staff and patients), the caller's account, users, devices, sign-in log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from opdesk.errors import FieldError
from opdesk.identity import queries, service
from opdesk.identity.deps import Ident
from opdesk.identity.schemas import (
    ClinicChoice,
    ClinicSecurity,
    DeviceOut,
    Me,
    MfaConfirm,
    MfaConfirmed,
    MfaEnrolment,
    MfaVerify,
    OtpAttempt,
    OtpRequest,
    OtpVerify,
    PasswordChange,
    PatientSignIn,
    PhoneVerified,
    SessionOut,
    SignInLogEntry,
    StaffSignIn,
    UserCreate,
    UserOut,
    UserUpdate,
)
from opdesk.identity.service import Refusal
from opdesk.identity.sessions import Principal
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.security.permissions import SIGNING_IN
from opdesk.tenancy import service as tenants
from opdesk.web.deps import Allow, Anyone, Ctx, DbSession, acting, signed_in
from opdesk.web.problems import problem

RESPONSES = {
    **PROBLEM_RESPONSES,
    429: {**PROBLEM_RESPONSES[409], "description": "Too many attempts"},
}
router = APIRouter(tags=["identity"], responses=RESPONSES)

SigningIn = Annotated[Principal | None, Depends(Allow(SIGNING_IN))]


# ------------------------------------------------------------------ sign-in


def refusal_response(request: Request, refusal: Refusal) -> Response:
    """A refused sign-in step, answered without raising so its counters still commit."""
    errors = [FieldError(refusal.field, refusal.detail)] if refusal.field else None
    response = problem(request, refusal.status, refusal.title, refusal.detail, errors)
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(int(refusal.retry_after.total_seconds()) + 1)
    return response


@router.post("/auth/sign-in", response_model=SessionOut)
def staff_sign_in(
    body: StaffSignIn, request: Request, session: DbSession, ctx: Ctx, _: Anyone, ident: Ident
) -> SessionOut | Response:
    """Staff: clinic code, email and password. The answer's `stage` says what is next."""
    result = service.staff_sign_in(
        session,
        ctx,
        ident,
        clinic=body.clinic,
        email=body.email,
        password=body.password,
        device_token=body.device_token,
        device_label=ctx.user_agent,
    )
    if isinstance(result, Refusal):
        return refusal_response(request, result)
    return SessionOut(token=result.token, stage=result.stage, device_token=result.device_token)


@router.post("/auth/mfa/verify", response_model=SessionOut)
def mfa_verify(
    body: MfaVerify, request: Request, session: DbSession, ctx: Ctx, who: SigningIn, ident: Ident
) -> SessionOut | Response:
    """Second step: a TOTP code, or one of the recovery codes."""
    principal = signed_in(who)
    result = service.verify_mfa(
        session, ctx, ident, principal, code=body.code, recovery_code=body.recovery_code
    )
    if isinstance(result, Refusal):
        return refusal_response(request, result)
    stage = service.stage_of(session, principal)
    return SessionOut(token=result, stage=stage)


@router.post("/auth/mfa/enrolment", response_model=MfaEnrolment)
def mfa_enrol(
    request: Request, session: DbSession, ctx: Ctx, who: SigningIn, ident: Ident
) -> MfaEnrolment:
    """Start TOTP set-up: scan the QR code, then confirm with a code."""
    principal = service.may_enrol(signed_in(who))
    started = service.begin_mfa_enrolment(session, ctx, ident, principal)
    return MfaEnrolment(secret=started.secret, otpauth_uri=started.uri, qr_svg=started.qr_svg)


@router.post("/auth/mfa/enrolment/confirm", response_model=MfaConfirmed)
def mfa_confirm(
    body: MfaConfirm, request: Request, session: DbSession, ctx: Ctx, who: SigningIn, ident: Ident
) -> MfaConfirmed | Response:
    """Finish TOTP set-up; the ten recovery codes are shown this once."""
    principal = service.may_enrol(signed_in(who))
    result = service.confirm_mfa_enrolment(session, ctx, ident, principal, body.code)
    if isinstance(result, Refusal):
        return refusal_response(request, result)
    codes, token = result
    return MfaConfirmed(recovery_codes=codes, token=token)


@router.post("/auth/otp", response_model=OtpAttempt)
def otp_request(
    body: OtpRequest, request: Request, session: DbSession, ctx: Ctx, _: Anyone, ident: Ident
) -> OtpAttempt | Response:
    """Patients: send a six-digit code to a mobile number (valid 5 minutes).

    Send the `deviceToken` an earlier patient sign-in gave this client: a recognised
    client keeps getting codes while the number is locked for everyone else."""
    result = service.request_otp(
        session, ctx, ident, phone=body.phone, clinic=body.clinic, device_token=body.device_token
    )
    if isinstance(result, Refusal):
        return refusal_response(request, result)
    return OtpAttempt(attempt=result, expires_in_seconds=int(service.OTP_TTL.total_seconds()))


@router.post("/auth/otp/verify", response_model=PhoneVerified)
def otp_verify(
    body: OtpVerify, request: Request, session: DbSession, ctx: Ctx, _: Anyone, ident: Ident
) -> PhoneVerified | Response:
    """Check the code; the answer lists the clinics that know this phone."""
    result = service.verify_otp(session, ctx, ident, attempt=body.attempt, code=body.code)
    if isinstance(result, Refusal):
        return refusal_response(request, result)
    clinics = [ClinicChoice(slug=s, name=n) for s, n in result.clinics]
    return PhoneVerified(proof=result.proof, clinics=clinics)


@router.post("/auth/patient-sign-in", response_model=SessionOut)
def patient_sign_in(
    body: PatientSignIn, request: Request, session: DbSession, ctx: Ctx, _: Anyone, ident: Ident
) -> SessionOut | Response:
    """Open a patient session at one of the clinics from the verified phone. The proof
    works once."""
    result = service.patient_sign_in(
        session, ctx, ident, proof=body.proof, clinic=body.clinic, device_token=body.device_token
    )
    if isinstance(result, Refusal):
        return refusal_response(request, result)
    return SessionOut(token=result.token, stage=result.stage, device_token=result.device_token)


@router.post("/auth/sign-out", status_code=204)
def sign_out(session: DbSession, ctx: Ctx, who: SigningIn) -> Response:
    service.sign_out(session, ctx, signed_in(who))
    return Response(status_code=204)


@router.get("/auth/me", response_model=Me)
def me(session: DbSession, who: SigningIn) -> Me:
    principal = signed_in(who)
    return Me(
        user_id=principal.user_id,
        clinic_id=principal.tenant_id,
        name=principal.name,
        role=principal.role,
        stage=principal.stage,
    )


@router.post("/auth/password", status_code=204)
def change_password(
    body: PasswordChange,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Annotated[Principal, acting("account:self")],
    ident: Ident,
) -> Response:
    """Change your password; your other sessions end."""
    refusal = service.change_password(session, ctx, ident, who, current=body.current, new=body.new)
    if refusal is not None:
        return refusal_response(request, refusal)
    return Response(status_code=204)


# ------------------------------------------------------------------ users


@router.get("/users", response_model=list[UserOut])
def list_users(session: DbSession, _: Annotated[Principal, acting("users:read")]) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in queries.users(session)]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(
    body: UserCreate,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("users:manage")],
    ident: Ident,
) -> UserOut:
    user = service.create_user(session, ctx, ident, **body.model_dump())
    return UserOut.model_validate(user)


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(
    user_id: uuid.UUID, session: DbSession, _: Annotated[Principal, acting("users:read")]
) -> UserOut:
    return UserOut.model_validate(service.get_user(session, user_id))


@router.patch("/users/{user_id}", response_model=UserOut)
def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("users:manage")],
) -> UserOut:
    """Rename, change role, (de)activate: `active: false` ends the user's sessions at once
    and stops their sign-in; a body without `active` leaves it as it is."""
    user = service.update_user(session, ctx, user_id=user_id, **body.model_dump(exclude_unset=True))
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/mfa-reset", response_model=UserOut)
def reset_mfa(
    user_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("users:manage")],
) -> UserOut:
    return UserOut.model_validate(service.reset_mfa(session, ctx, user_id=user_id))


# ------------------------------------------------------------------ devices


@router.get("/devices", response_model=list[DeviceOut])
def list_devices(
    session: DbSession,
    _: Annotated[Principal, acting("devices:manage")],
    status: str | None = None,
) -> list[DeviceOut]:
    return [DeviceOut.model_validate(d) for d, _u in queries.devices(session, status=status)]


@router.post("/devices/{device_id}/approve", response_model=DeviceOut)
def approve_device(
    device_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("devices:manage")],
) -> DeviceOut:
    return DeviceOut.model_validate(service.approve_device(session, ctx, device_id=device_id))


@router.post("/devices/{device_id}/revoke", response_model=DeviceOut)
def revoke_device(
    device_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("devices:manage")],
) -> DeviceOut:
    """Revoke a device; its sessions end at once."""
    return DeviceOut.model_validate(service.revoke_device(session, ctx, device_id=device_id))


# ------------------------------------------------------------------ log and clinic security


@router.get("/sign-in-log", response_model=list[SignInLogEntry])
def sign_in_log(
    session: DbSession, _: Annotated[Principal, acting("audit:read")]
) -> list[SignInLogEntry]:
    return queries.sign_in_log(session)


@router.get("/clinic/security", response_model=ClinicSecurity)
def get_security(
    session: DbSession, ctx: Ctx, _: Annotated[Principal, acting("clinic:read")]
) -> ClinicSecurity:
    assert ctx.tenant_id is not None
    tenant = tenants.get_tenant(session, ctx.tenant_id)
    return ClinicSecurity(mfa_required_roles=tenant.mfa_required_roles or [])


@router.put("/clinic/security", response_model=ClinicSecurity)
def put_security(
    body: ClinicSecurity,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("clinic:manage")],
) -> ClinicSecurity:
    """Which staff roles must use two-step sign-in."""
    tenant = service.set_mfa_required_roles(session, ctx, roles=list(body.mfa_required_roles))
    return ClinicSecurity(mfa_required_roles=tenant.mfa_required_roles)
