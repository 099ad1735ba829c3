"""Pages: staff sign-in with MFA and device approval, the account page, and the admin
pages for users, devices, the sign-in log and clinic security. (Patients sign in on the
portal's pages, opdesk/portal/sign_in.py.)
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from opdesk.errors import Conflict, DomainError, FieldError, InvalidInput
from opdesk.identity import queries, service
from opdesk.identity.deps import Ident, after_sign_in
from opdesk.identity.models import STAFF_ROLES
from opdesk.identity.schemas import StaffSignIn, UserCreate
from opdesk.identity.service import Refusal
from opdesk.identity.sessions import Principal
from opdesk.scheduling import desk_home
from opdesk.security.permissions import SIGNING_IN, allowed
from opdesk.tenancy import service as tenants
from opdesk.web.deps import (
    DEVICE_COOKIE,
    SESSION_COOKIE,
    Allow,
    Anyone,
    Ctx,
    DbSession,
    acting,
    signed_in,
)
from opdesk.web.pages import attempt, delete_cookie, flash, render, set_cookie
from opdesk.web.problems import STAGE_PAGES
from opdesk.web.templating import NavEntry, form_errors

router = APIRouter(include_in_schema=False)
NAV = (
    NavEntry("Desk", "/app", "clinic:read", "desk"),
    NavEntry("Users", "/admin/users", "users:read", "admin"),
    NavEntry("Devices", "/admin/devices", "devices:manage", "admin"),
    NavEntry("Sign-ins", "/admin/sign-ins", "audit:read", "admin"),
    NavEntry("Security", "/admin/security", "clinic:manage", "admin"),
    NavEntry("Account", "/account", "account:self", "account"),
)

SigningIn = Annotated[Principal | None, Depends(Allow(SIGNING_IN))]
ROLE_LABELS = {
    "frontdesk": "Front desk",
    "doctor": "Doctor",
    "pharmacy": "Pharmacy",
    "accounts": "Accounts",
    "admin": "Admin",
    "patient": "Patient",
}


# ------------------------------------------------------------------ staff sign-in


@router.get("/sign-in")
def sign_in_form(request: Request, _: Anyone, clinic: str = "", next: str = "") -> Response:
    values = {"clinic": clinic, "next": next}
    return render(request, "identity/sign_in.html", values=values)


@router.post("/sign-in")
def sign_in(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    ident: Ident,
    clinic: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    values = {"clinic": clinic, "email": email, "next": next}
    try:
        body = StaffSignIn(clinic=clinic.strip().lower(), email=email, password=password)
    except ValidationError as exc:
        return render(request, "identity/sign_in.html", 422, values=values, errors=form_errors(exc))
    result = service.staff_sign_in(
        session,
        ctx,
        ident,
        clinic=body.clinic,
        email=body.email,
        password=body.password,
        device_token=request.cookies.get(DEVICE_COOKIE),
        device_label=ctx.user_agent,
    )
    if isinstance(result, Refusal):
        errors = {"password": result.detail}
        return render(request, "identity/sign_in.html", result.status, values=values, errors=errors)
    return after_sign_in(request, result, next)


@router.get("/sign-in/mfa")
def mfa_form(request: Request, who: SigningIn) -> Response:
    if signed_in(who).stage != "mfa":
        return RedirectResponse(STAGE_PAGES.get(signed_in(who).stage, "/app"), 303)
    return render(request, "identity/mfa.html")


@router.post("/sign-in/mfa")
def mfa_submit(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: SigningIn,
    ident: Ident,
    code: Annotated[str, Form()] = "",
    recovery_code: Annotated[str, Form()] = "",
) -> Response:
    principal = signed_in(who)
    result = service.verify_mfa(
        session,
        ctx,
        ident,
        principal,
        code=code or None,
        recovery_code=recovery_code.strip() or None,
    )
    if isinstance(result, Refusal):
        return render(request, "identity/mfa.html", result.status, errors={"code": result.detail})
    stage = service.stage_of(session, principal)
    response = RedirectResponse(STAGE_PAGES.get(stage, "/app"), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, result, None)
    return response


@router.get("/sign-in/device")
def device_wait(request: Request, who: SigningIn) -> Response:
    if signed_in(who).active:
        return RedirectResponse("/app", 303)
    return render(request, "identity/device_wait.html")


@router.get("/sign-in/device/status")
def device_status(request: Request, who: SigningIn) -> Response:
    """Polled by the waiting page; tells htmx to move on once an admin approves."""
    if signed_in(who).active:
        return Response(status_code=204, headers={"HX-Redirect": "/app"})
    return Response("Still waiting for approval…", media_type="text/plain")


@router.post("/sign-out")
def sign_out(request: Request, session: DbSession, ctx: Ctx, who: SigningIn) -> Response:
    principal = signed_in(who)
    service.sign_out(session, ctx, principal)
    target = "/patient/sign-in" if principal.role == "patient" else "/sign-in"
    response = flash(request, target, "You have signed out.")
    delete_cookie(request, response, SESSION_COOKIE)
    return response


# ------------------------------------------------------------------ MFA set-up and account


@router.get("/account/mfa")
def mfa_setup_page(request: Request, session: DbSession, who: SigningIn) -> Response:
    principal = service.may_enrol(signed_in(who))
    user = service.get_user(session, principal.user_id)
    return render(request, "identity/mfa_setup.html", user=user, enrolment=None)


@router.post("/account/mfa/start")
def mfa_setup_start(
    request: Request, session: DbSession, ctx: Ctx, who: SigningIn, ident: Ident
) -> Response:
    principal = service.may_enrol(signed_in(who))
    enrolment = service.begin_mfa_enrolment(session, ctx, ident, principal)
    user = service.get_user(session, principal.user_id)
    return render(request, "identity/mfa_setup.html", user=user, enrolment=enrolment)


@router.post("/account/mfa/confirm")
def mfa_setup_confirm(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: SigningIn,
    ident: Ident,
    code: Annotated[str, Form()] = "",
) -> Response:
    principal = service.may_enrol(signed_in(who))
    result = service.confirm_mfa_enrolment(session, ctx, ident, principal, code)
    if isinstance(result, Refusal):
        user = service.get_user(session, principal.user_id)
        return render(
            request,
            "identity/mfa_setup.html",
            result.status,
            user=user,
            enrolment=None,
            errors={"code": result.detail},
        )
    codes, token = result
    response = render(request, "identity/mfa_codes.html", codes=codes)
    if token:
        set_cookie(request, response, SESSION_COOKIE, token, None)
    return response


@router.get("/app")
def staff_home(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    ident: Ident,
    who: Annotated[Principal, acting("account:self")],
) -> Response:
    if who.role == "patient":
        return RedirectResponse("/me", 303)
    tenant = tenants.get_tenant(session, who.tenant_id)
    # Staff who follow appointments see how today is going; the others their links.
    desk = allowed(who.role, "appointments:read")
    return render(
        request,
        "identity/app_home.html",
        clinic=tenant,
        role_label=ROLE_LABELS[who.role],
        sms_budget=_sms_budget(session, ctx, ident, who),
        desk=desk,
        today=desk_home.desk_today(session, ctx, role=who.role, user_id=who.user_id)
        if desk
        else None,
        may_write=allowed(who.role, "appointments:write"),
    )


def _sms_budget(session: Any, ctx: Any, ident: Any, who: Principal) -> queries.SmsBudget | None:
    """The banner admins see when the clinic's sign-in code budget runs low."""
    if who.role != "admin":
        return None
    return queries.sms_budget(session, ident, who.tenant_id, ctx.now())


@router.get("/account")
def account(
    request: Request, session: DbSession, who: Annotated[Principal, acting("account:self")]
) -> Response:
    user = service.get_user(session, who.user_id)
    return render(request, "identity/account.html", user=user, role_label=ROLE_LABELS[user.role])


@router.post("/account/password")
def account_password(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Annotated[Principal, acting("account:self")],
    ident: Ident,
    current: Annotated[str, Form()] = "",
    new: Annotated[str, Form()] = "",
) -> Response:
    user = service.get_user(session, who.user_id)

    def again(errors: dict[str, str]) -> Response:
        return render(
            request,
            "identity/account.html",
            422,
            user=user,
            errors=errors,
            role_label=ROLE_LABELS[user.role],
        )

    def changed(refusal: Refusal | None) -> Response:
        if refusal is None:
            return flash(request, "/account", "Password changed. Your other sessions have ended.")
        # Returned, not raised: the failed attempt and its count stay on record.
        if refusal.status == 429:
            response = again({"current": refusal.detail})
            response.status_code = 429
            if refusal.retry_after is not None:
                response.headers["Retry-After"] = str(int(refusal.retry_after.total_seconds()) + 1)
            return response
        return again({"current": "That is not your current password."})

    return attempt(
        request,
        session,
        lambda: service.change_password(session, ctx, ident, who, current=current, new=new),
        done=changed,
        failed=lambda problem: again(_field_reasons(problem)),
    )


def _field_reasons(problem: DomainError) -> dict[str, str]:
    """The reasons of refused input beside their fields; any other refusal is an error page."""
    if isinstance(problem, InvalidInput):
        return {e.field: e.reason for e in problem.errors}
    raise problem


# ------------------------------------------------------------------ admin: users


def _role_options(include_patient: bool = False) -> list[tuple[str, str]]:
    roles = [*STAFF_ROLES, "patient"] if include_patient else list(STAFF_ROLES)
    return [(r, ROLE_LABELS[r]) for r in roles]


@router.get("/admin/users")
def admin_users(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    ident: Ident,
    who: Annotated[Principal, acting("users:read")],
) -> Response:
    return render(
        request,
        "identity/admin_users.html",
        users=queries.users(session),
        roles=_role_options(),
        role_labels=ROLE_LABELS,
        values={"role": "frontdesk"},
        sms_budget=_sms_budget(session, ctx, ident, who),
    )


@router.post("/admin/users")
def admin_create_user(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("users:manage")],
    ident: Ident,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    device_approval_required: Annotated[str, Form()] = "",
) -> Response:
    values = {
        "name": name,
        "role": role,
        "email": email,
        "device_approval_required": device_approval_required,
    }

    def again(errors: dict[str, str]) -> Response:
        return render(
            request,
            "identity/admin_users.html",
            409 if "already" in errors.get("email", "") else 422,
            users=queries.users(session),
            roles=_role_options(),
            role_labels=ROLE_LABELS,
            values=values,
            errors=errors,
        )

    def refused(problem: DomainError) -> Response:
        if isinstance(problem, Conflict):
            return again({"email": problem.detail})
        return again(_field_reasons(problem))

    try:
        body = UserCreate(
            name=name,
            role=role,
            email=email or None,
            password=password or None,
            device_approval_required=bool(device_approval_required),
        )
    except ValidationError as exc:
        return again(form_errors(exc))
    if body.role == "patient":
        return again({"role": "patients get their sign-in when they are registered"})
    return attempt(
        request,
        session,
        lambda: service.create_user(session, ctx, ident, **body.model_dump()),
        done=lambda user: flash(
            request, f"/admin/users/{user.id}", f"{user.name} can now sign in."
        ),
        failed=refused,
    )


@router.get("/admin/users/{user_id}")
def admin_user(
    request: Request,
    user_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    ident: Ident,
    who: Annotated[Principal, acting("users:read")],
) -> Response:
    user = service.get_user(session, user_id)
    rows = queries.devices(session, user_id=user.id)
    return render(
        request,
        "identity/admin_user.html",
        user=user,
        rows=rows,
        roles=_role_options(include_patient=user.role == "patient"),
        role_labels=ROLE_LABELS,
        sms_budget=_sms_budget(session, ctx, ident, who),
    )


@router.post("/admin/users/{user_id}")
def admin_update_user(
    request: Request,
    user_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("users:manage")],
    role: Annotated[str, Form()] = "",
    device_approval_required: Annotated[str, Form()] = "",
) -> Response:
    """Role and device approval. Deactivating is its own action (below): a form posted
    without some box never takes anyone's access away.
    """
    if role and role not in ROLE_LABELS:
        raise InvalidInput([FieldError("role", "Choose a role from the list.")])
    user = service.update_user(
        session,
        ctx,
        user_id=user_id,
        role=role or None,
        device_approval_required=bool(device_approval_required),
    )
    return flash(request, f"/admin/users/{user.id}", f"Saved changes to {user.name}.")


@router.get("/admin/users/{user_id}/deactivate")
def admin_deactivate_confirm(
    request: Request,
    user_id: uuid.UUID,
    session: DbSession,
    _: Annotated[Principal, acting("users:manage")],
) -> Response:
    user = service.get_user(session, user_id)
    if not user.active:
        return flash(request, f"/admin/users/{user.id}", f"{user.name} is already deactivated.")
    return render(request, "identity/admin_deactivate.html", user=user, role_labels=ROLE_LABELS)


@router.post("/admin/users/{user_id}/deactivate")
def admin_deactivate(
    request: Request,
    user_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("users:manage")],
) -> Response:
    """Deactivate: every session of the user ends at once and they cannot sign in."""
    return attempt(
        request,
        session,
        lambda: service.update_user(session, ctx, user_id=user_id, active=False),
        done=lambda user: flash(
            request,
            f"/admin/users/{user.id}",
            f"{user.name} is deactivated: signed out everywhere and can no longer sign in.",
        ),
        failed=lambda problem: _refused_here(request, f"/admin/users/{user_id}", problem),
    )


def _refused_here(request: Request, url: str, problem: DomainError) -> Response:
    """A conflict is told on the page it came from; anything else (404) answers as such."""
    if isinstance(problem, Conflict):
        return flash(request, url, problem.detail, "error")
    raise problem


@router.post("/admin/users/{user_id}/activate")
def admin_activate(
    request: Request,
    user_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("users:manage")],
) -> Response:
    user = service.update_user(session, ctx, user_id=user_id, active=True)
    return flash(request, f"/admin/users/{user.id}", f"{user.name} can sign in again.")


@router.post("/admin/users/{user_id}/mfa-reset")
def admin_reset_mfa(
    request: Request,
    user_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("users:manage")],
) -> Response:
    user = service.reset_mfa(session, ctx, user_id=user_id)
    return flash(request, f"/admin/users/{user.id}", f"Two-step sign-in reset for {user.name}.")


# ------------------------------------------------------------------ admin: devices, log, security


@router.get("/admin/devices")
def admin_devices(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    ident: Ident,
    who: Annotated[Principal, acting("devices:manage")],
    status: str = "",
) -> Response:
    rows = queries.devices(session, status=status or None)
    return render(
        request,
        "identity/admin_devices.html",
        rows=rows,
        status=status,
        sms_budget=_sms_budget(session, ctx, ident, who),
    )


DEVICE_ACTIONS = {
    "approve": (service.approve_device, "Device approved."),
    "revoke": (service.revoke_device, "Device revoked; its sessions have ended."),
}


def _device_action(
    request: Request, session: Any, ctx: Any, device_id: uuid.UUID, act: str
) -> Response:
    action, message = DEVICE_ACTIONS[act]
    action(session, ctx, device_id=device_id)
    return flash(request, "/admin/devices", message)


@router.post("/admin/devices/{device_id}/approve")
def admin_approve_device(
    request: Request,
    device_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("devices:manage")],
) -> Response:
    return _device_action(request, session, ctx, device_id, "approve")


@router.post("/admin/devices/{device_id}/revoke")
def admin_revoke_device(
    request: Request,
    device_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("devices:manage")],
) -> Response:
    """Revoking a device ends its sessions at once."""
    return _device_action(request, session, ctx, device_id, "revoke")


@router.get("/admin/sign-ins")
def admin_sign_ins(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    ident: Ident,
    who: Annotated[Principal, acting("audit:read")],
) -> Response:
    return render(
        request,
        "identity/admin_sign_ins.html",
        entries=queries.sign_in_log(session),
        sms_budget=_sms_budget(session, ctx, ident, who),
    )


@router.get("/admin/security")
def admin_security(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    ident: Ident,
    who: Annotated[Principal, acting("clinic:manage")],
) -> Response:
    tenant = tenants.get_tenant(session, who.tenant_id)
    return render(
        request,
        "identity/admin_security.html",
        required=set(tenant.mfa_required_roles or []),
        roles=_role_options(),
        sms_budget=_sms_budget(session, ctx, ident, who),
    )


@router.post("/admin/security")
def admin_security_save(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("clinic:manage")],
    mfa_roles: Annotated[list[str] | None, Form()] = None,
) -> Response:
    service.set_mfa_required_roles(session, ctx, roles=mfa_roles or [])
    return flash(request, "/admin/security", "Security settings saved.")


# ------------------------------------------------------------------ one-time password link


@router.get("/set-password")
def set_password_form(
    request: Request, session: DbSession, ctx: Ctx, _: Anyone, token: str = ""
) -> Response:
    """The page a one-time link opens (a new clinic's first admin): choose a password."""
    holder = service.password_link_holder(session, ctx, token)
    if holder is None:
        return render(request, "identity/set_password.html", 404, holder=None, token="")
    return render(request, "identity/set_password.html", holder=holder, token=token)


@router.post("/set-password")
def set_password_submit(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    ident: Ident,
    token: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    repeat: Annotated[str, Form()] = "",
) -> Response:
    holder = service.password_link_holder(session, ctx, token)
    if holder is None:
        return render(request, "identity/set_password.html", 404, holder=None, token="")

    def again(errors: dict[str, str]) -> Response:
        page = "identity/set_password.html"
        return render(request, page, 422, holder=holder, token=token, errors=errors)

    if password != repeat:
        return again({"repeat": "The two passwords differ. Type the same password twice."})

    def done(result: service.LinkHolder | None) -> Response:
        if result is None:
            return render(request, "identity/set_password.html", 404, holder=None, token="")
        message = f"Password set. Sign in with {result.user.email} and your new password."
        return flash(request, f"/sign-in?clinic={result.clinic.slug}", message)

    return attempt(
        request,
        session,
        lambda: service.set_password_with_link(session, ctx, ident, token=token, password=password),
        done=done,
        failed=lambda problem: again(_field_reasons(problem)),
    )
