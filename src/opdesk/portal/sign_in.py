"""Patient sign-in: a phone number, a one-time code by SMS, then the clinic (when the
phone is known at more than one). A phone the clinic does not know yet registers there
after the code (name, age or birth date, gender, language) and goes on to book. Staff
sign in on identity's pages.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from opdesk.errors import DomainError, InvalidInput, NotFound
from opdesk.identity import service
from opdesk.identity.deps import NEXT_COOKIE, Ident, after_sign_in
from opdesk.identity.schemas import OtpRequest
from opdesk.identity.service import Refusal
from opdesk.patients import service as patients
from opdesk.patients.schemas import LANGUAGE_NAMES, OnlineSignUp
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.uow import enter_tenant
from opdesk.web.deps import DEVICE_COOKIE, Anyone, Ctx, DbSession, services
from opdesk.web.pages import PostedForm, attempt, delete_cookie, flash, render, set_cookie
from opdesk.web.templating import NavEntry, form_errors

router = APIRouter(include_in_schema=False)
NAV: tuple[NavEntry, ...] = ()
OTP_COOKIE = "opdesk_otp"
PROOF_COOKIE = "opdesk_phone_proof"
# The number the code went to (as the patient typed it): a new patient's record is made
# with it, once the proof shows the code for that very number was entered.
PHONE_COOKIE = "opdesk_otp_phone"
SIGN_UP_SECONDS = 600


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
    set_cookie(request, response, PHONE_COOKIE, body.phone, SIGN_UP_SECONDS)
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
    here = _clinic_of_code(request, session, ctx, result.proof)
    known_here = here is not None and any(slug == here.slug for slug, _ in result.clinics)
    if here is not None and not known_here and request.cookies.get(PHONE_COOKIE):
        # New to the clinic that sent the code: register there, then book.
        response = _sign_up_page(request, here, result.clinics)
        set_cookie(request, response, PROOF_COOKIE, result.proof, SIGN_UP_SECONDS)
        delete_cookie(request, response, OTP_COOKIE)
        return response
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


def _clinic_of_code(request: Request, session: Any, ctx: Any, proof: str) -> Tenant | None:
    """The clinic that sent the code this proof stands for (None once it is used)."""
    proven = service.proven_phone(session, services(request).identity, proof=proof, now=ctx.now())
    if proven is None:
        return None
    try:
        return tenants.get_tenant(session, proven.clinic_id)
    except NotFound:
        return None


# The sign-up form's fields, in their order on the page, as it labels them.
SIGN_UP_LABELS = {
    "name.first": "First name",
    "name.last": "Last name",
    "dob": "Date of birth",
    "age_years": "…or age in years",
    "gender": "Gender",
    "preferred_language": "Language for messages",
}
GENDER_CHOICES = (
    ("female", "Female"),
    ("male", "Male"),
    ("other", "Other"),
    ("undisclosed", "Prefer not to say"),
)


def _sign_up_page(
    request: Request,
    clinic: Tenant,
    elsewhere: list[tuple[str, str]],
    status_code: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "portal/sign_up.html",
        status_code,
        clinic=clinic,
        elsewhere=elsewhere,
        values=values or {"preferred_language": "en"},
        errors=errors or {},
        genders=GENDER_CHOICES,
        languages=list(LANGUAGE_NAMES.items()),
    )


def _sign_up_errors(values: dict[str, str], today: date) -> dict[str, str]:
    """Every problem of the form at once, in the order of the form, in plain words."""
    errors: dict[str, str] = {}
    first, last = values.get("name.first", "").strip(), values.get("name.last", "").strip()
    if not first:
        errors["name.first"] = "enter your first name"
    elif len(first) > 80:
        errors["name.first"] = "use at most 80 letters"
    if len(last) > 80:
        errors["name.last"] = "use at most 80 letters"
    dob_text, age_text = values.get("dob", "").strip(), values.get("age_years", "").strip()
    if not dob_text and not age_text:
        errors["dob"] = "enter your date of birth, or your age in years"
    elif dob_text and age_text:
        errors["age_years"] = "leave this empty when the date of birth is given"
    elif dob_text:
        try:
            born = date.fromisoformat(dob_text)
        except ValueError:
            errors["dob"] = "enter the date as day, month and year"
        else:
            if born > today:
                errors["dob"] = "this date is in the future; check the year"
            elif born < today - timedelta(days=366 * patients.OLDEST_AGE_YEARS):
                errors["dob"] = "this date is too long ago; check the year"
    elif not re.fullmatch(r"\d{1,3}", age_text) or int(age_text) > patients.OLDEST_AGE_YEARS:
        errors["age_years"] = "enter your age as a number of years, e.g. 34"
    if values.get("gender") not in {g for g, _ in GENDER_CHOICES}:
        errors["gender"] = "choose one"
    if (values.get("preferred_language") or "en") not in LANGUAGE_NAMES:
        errors["preferred_language"] = "choose one of the languages listed"
    return errors


@router.get("/patient/sign-up")
def sign_up_form(request: Request, session: DbSession, ctx: Ctx, _: Anyone) -> Response:
    """The new-patient form, while the verified code's proof lasts."""
    clinic = _clinic_of_code(request, session, ctx, request.cookies.get(PROOF_COOKIE, ""))
    if clinic is None or not request.cookies.get(PHONE_COOKIE):
        return flash(request, "/patient/sign-in", patients.PROOF_SPENT, "warning")
    return _sign_up_page(request, clinic, [])


@router.post("/patient/sign-up")
def sign_up_submit(
    request: Request, session: DbSession, ctx: Ctx, _: Anyone, ident: Ident, form: PostedForm
) -> Response:
    """Register the new patient at the clinic that sent the code, sign them in, and go
    on to where they were (the held time to confirm) or their page.
    """
    proof = request.cookies.get(PROOF_COOKIE, "")
    clinic = _clinic_of_code(request, session, ctx, proof)
    phone = request.cookies.get(PHONE_COOKIE, "")
    if clinic is None or not phone:
        return flash(request, "/patient/sign-in", patients.PROOF_SPENT, "warning")
    enter_tenant(session, ctx, clinic.id)
    values = {name: form.get(name, "") for name in SIGN_UP_LABELS}

    def again(status: int, errors: dict[str, str]) -> Response:
        return _sign_up_page(request, clinic, [], status, values, errors)

    errors = _sign_up_errors(values, tenants.today_at_clinic(session, ctx))
    if errors:
        return again(422, errors)
    sign_up = OnlineSignUp(
        proof=proof,
        phone=phone,
        name={"first": values["name.first"].strip(), "last": values["name.last"].strip()},
        dob=values["dob"] or None,
        age_years=values["age_years"] or None,
        gender=values["gender"],
        preferred_language=values["preferred_language"] or "en",
        device_token=request.cookies.get(DEVICE_COOKIE) or None,
    )

    def signed_up(made: patients.OnlineRegistration) -> Response:
        response = after_sign_in(request, made.signed_in, request.cookies.get(NEXT_COOKIE))
        for cookie in (PROOF_COOKIE, OTP_COOKIE, PHONE_COOKIE, NEXT_COOKIE):
            delete_cookie(request, response, cookie)
        return response

    def refused(problem: DomainError) -> Response:
        if isinstance(problem, InvalidInput):
            return again(422, {e.field: e.reason for e in problem.errors})
        return flash(request, "/patient/sign-in", str(problem), "error")

    return attempt(
        request,
        session,
        lambda: patients.register_online(session, ctx, ident, clinic=clinic, sign_up=sign_up),
        done=signed_up,
        failed=refused,
    )


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
    for cookie in (PROOF_COOKIE, OTP_COOKIE, PHONE_COOKIE, NEXT_COOKIE):
        delete_cookie(request, response, cookie)
    return response
