"""Patient sign-in: a phone number, a one-time code by SMS, then the clinic (when the
phone is known at more than one). Staff sign in on identity's pages.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from opdesk.identity import service
from opdesk.identity.deps import NEXT_COOKIE, Ident, after_sign_in
from opdesk.identity.schemas import OtpRequest
from opdesk.identity.service import Refusal
from opdesk.tenancy import service as tenants
from opdesk.web.deps import DEVICE_COOKIE, Anyone, Ctx, DbSession, services
from opdesk.web.pages import delete_cookie, flash, render, set_cookie
from opdesk.web.templating import NavEntry, form_errors

router = APIRouter(include_in_schema=False)
NAV: tuple[NavEntry, ...] = ()
OTP_COOKIE = "opdesk_otp"
PROOF_COOKIE = "opdesk_phone_proof"


@router.get("/patient/sign-in")
def patient_phone_form(request: Request, _: Anyone, clinic: str = "") -> Response:
    return render(request, "portal/sign_in_phone.html", values={"clinic": clinic})


@router.post("/patient/sign-in")
def patient_phone_submit(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    ident: Ident,
    clinic: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
) -> Response:
    values = {"clinic": clinic, "phone": phone}
    try:
        body = OtpRequest(clinic=clinic.strip().lower(), phone=phone)
    except ValidationError as exc:
        return render(
            request, "portal/sign_in_phone.html", 422, values=values, errors=form_errors(exc)
        )
    if tenants.find_by_slug(session, body.clinic) is None:
        errors = {"clinic": "No clinic uses this code. Check the spelling with your clinic."}
        return render(request, "portal/sign_in_phone.html", 404, values=values, errors=errors)
    result = service.request_otp(
        session,
        ctx,
        ident,
        phone=body.phone,
        clinic=body.clinic,
        device_token=request.cookies.get(DEVICE_COOKIE),
    )
    if isinstance(result, Refusal):
        return render(
            request,
            "portal/sign_in_phone.html",
            result.status,
            values=values,
            errors={"phone": result.detail},
        )
    response = flash(request, "/patient/sign-in/code", "We have sent a 6-digit code by SMS.")
    set_cookie(request, response, OTP_COOKIE, result, 600)
    return response


@router.get("/patient/sign-in/code")
def patient_code_form(request: Request, _: Anyone) -> Response:
    if not request.cookies.get(OTP_COOKIE):
        return RedirectResponse("/patient/sign-in", 303)
    return render(request, "portal/sign_in_code.html")


@router.post("/patient/sign-in/code")
def patient_code_submit(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    ident: Ident,
    code: Annotated[str, Form()] = "",
) -> Response:
    attempt = request.cookies.get(OTP_COOKIE, "")
    result = service.verify_otp(session, ctx, ident, attempt=attempt, code=code)
    if isinstance(result, Refusal):
        return render(
            request, "portal/sign_in_code.html", result.status, errors={"code": result.detail}
        )
    if not result.clinics:
        return render(request, "portal/sign_in_clinics.html", clinics=[])
    if len(result.clinics) == 1:
        return _patient_session(request, session, ctx, result.proof, result.clinics[0][0])
    response = render(request, "portal/sign_in_clinics.html", clinics=result.clinics)
    set_cookie(request, response, PROOF_COOKIE, result.proof, 600)
    delete_cookie(request, response, OTP_COOKIE)
    return response


@router.post("/patient/sign-in/clinic")
def patient_choose_clinic(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    clinic: Annotated[str, Form()] = "",
) -> Response:
    return _patient_session(request, session, ctx, request.cookies.get(PROOF_COOKIE, ""), clinic)


def _patient_session(request: Request, session: Any, ctx: Any, proof: str, clinic: str) -> Response:
    result = service.patient_sign_in(
        session,
        ctx,
        services(request).identity,
        proof=proof,
        clinic=clinic,
        device_token=request.cookies.get(DEVICE_COOKIE),
    )
    if isinstance(result, Refusal):
        return flash(request, "/patient/sign-in", result.detail, "error")
    # A page that sent the patient to sign in (e.g. a held slot) asked to be returned to.
    response = after_sign_in(request, result, request.cookies.get(NEXT_COOKIE))
    for cookie in (PROOF_COOKIE, OTP_COOKIE, NEXT_COOKIE):
        delete_cookie(request, response, cookie)
    return response
