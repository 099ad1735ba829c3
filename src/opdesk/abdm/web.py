"""ABDM pages: the clinic's ABDM settings (admins) and each Scan & Share counter's QR code
to print (desk and admins)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

import segno
from fastapi import APIRouter, Request
from fastapi.responses import Response

from opdesk import records
from opdesk.abdm import abha_check, linking, share, sharing
from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.settings import Abdm, Counter
from opdesk.errors import DomainError, FieldError, InvalidInput, NotFound
from opdesk.identity.sessions import Principal
from opdesk.patients import service as patients
from opdesk.patients.deps import PatientInPath
from opdesk.patients.models import Patient
from opdesk.security.permissions import allowed
from opdesk.tenancy.service import today_at_clinic, zone_of
from opdesk.web.deps import AppSettings, Cipher, Ctx, DbSession, acting
from opdesk.web.pages import PostedForm, attempt, flash, render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
SETTINGS_PAGE = "/admin/abdm"
NAV = (NavEntry("ABDM", SETTINGS_PAGE, "abdm:manage", "admin"),)
Manager = Annotated[Principal, acting("abdm:manage")]
Reader = Annotated[Principal, acting("abdm:read")]

# Where a facility's Scan & Share QR code points: the PHR app opens it, or a phone's camera
# offers the PHR apps that do (ABDM's "Scan and Share" guide gives the sandbox form,
# https://phrsbx.abdm.gov.in/share-profile?hip-id=IN3410000260&counter-id=12345).
SHARE_PROFILE_URL = {
    "sandbox": "https://phrsbx.abdm.gov.in/share-profile",
    "production": "https://phr.abdm.gov.in/share-profile",
}
ENVIRONMENT_LABELS = [("sandbox", "Sandbox (testing)"), ("production", "Production (live)")]


def share_url(saved: Abdm, counter: Counter) -> str:
    query = urlencode({"hip-id": saved.facility_id, "counter-id": counter.id})
    return f"{SHARE_PROFILE_URL[saved.environment]}?{query}"


def _qr_svg(text: str) -> str:
    # No fixed size: the viewBox lets the page draw it as large as the sheet allows.
    return str(segno.make(text, error="m").svg_inline(scale=6, dark="#1b2b34", omitsize=True))


def _values(saved: Abdm | None) -> dict[str, str]:
    if saved is None:
        return {"environment": "sandbox", "counters": "desk-1: Front desk"}
    return {
        "facilityId": saved.facility_id,
        "facilityName": saved.facility_name,
        "clientId": saved.client_id,
        "environment": saved.environment,
        "enabled": "on" if saved.enabled else "",
        "counters": "\n".join(f"{c.id}: {c.label}" for c in saved.counters),
    }


def _counters(text: str) -> tuple[Counter, ...]:
    """``desk-1: Front desk`` lines; blank lines are skipped."""
    counters = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        code, colon, label = line.partition(":")
        if not colon:
            raise InvalidInput(
                [FieldError("counters", f"line {n}: write the code, a colon, then the name")]
            )
        counters.append(Counter(code.strip().lower(), label.strip()))
    return tuple(counters)


def _from_form(form: dict[str, str], saved: Abdm | None) -> Abdm:
    secret = form.get("clientSecret", "").strip() or (saved.client_secret if saved else "")
    if not secret:
        raise InvalidInput([FieldError("clientSecret", "is required the first time")])
    return Abdm(
        facility_id=form.get("facilityId", ""),
        facility_name=form.get("facilityName", ""),
        client_id=form.get("clientId", ""),
        client_secret=secret,
        environment=form.get("environment", "sandbox"),
        enabled=form.get("enabled") == "on",
        counters=_counters(form.get("counters", "")),
    )


def _errors(error: DomainError) -> dict[str, str]:
    """A refusal by the form's fields (every counter's problem goes to the one box)."""
    if isinstance(error, InvalidInput):
        errors: dict[str, str] = {}
        for problem in error.errors:
            name = "counters" if problem.field.startswith("counters") else problem.field
            errors.setdefault(name, problem.reason)
        return errors
    field = error.extra.get("field")
    if isinstance(field, str):
        return {field: error.detail.partition(": ")[2] or error.detail}
    return {"facilityId": error.detail}


def _page(
    request: Request,
    saved: Abdm | None,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    codes = [(c, share_url(saved, c)) for c in saved.counters] if saved else []
    return render(
        request,
        "abdm/settings.html",
        status_code,
        saved=saved,
        codes=codes,
        environments=ENVIRONMENT_LABELS,
        errors=errors or {},
        values=values if values is not None else _values(saved),
    )


@router.get(SETTINGS_PAGE)
def settings_page(
    request: Request, _: Manager, session: DbSession, ctx: Ctx, cipher: Cipher
) -> Response:
    """The clinic's ABDM registration and its Scan & Share counters."""
    assert ctx.tenant_id is not None
    return _page(request, abdm_settings.of(session, cipher, ctx.tenant_id))


@router.post(SETTINGS_PAGE)
def save_settings(
    request: Request, _: Manager, session: DbSession, ctx: Ctx, cipher: Cipher, form: PostedForm
) -> Response:
    """Save the settings; a bad value shows by its field and nothing is saved."""
    assert ctx.tenant_id is not None
    saved = abdm_settings.of(session, cipher, ctx.tenant_id)

    def refused(error: DomainError) -> Response:
        shown = {k: v for k, v in form.items() if k not in ("csrf_token", "clientSecret")}
        return _page(request, saved, status_code=error.status, errors=_errors(error), values=shown)

    return attempt(
        request,
        session,
        lambda: abdm_settings.save(session, ctx, cipher, _from_form(form, saved)),
        done=lambda _saved: flash(request, SETTINGS_PAGE, "ABDM settings saved."),
        failed=refused,
    )


@router.get("/queue/scan-share/{counter_id}/qr")
def counter_qr(
    request: Request, counter_id: str, who: Reader, session: DbSession, ctx: Ctx, cipher: Cipher
) -> Response:
    """One counter's Scan & Share QR code, on a page to print and put up at the desk."""
    assert ctx.tenant_id is not None
    saved = abdm_settings.of(session, cipher, ctx.tenant_id)
    counter = saved.counter(counter_id) if saved else None
    if saved is None or counter is None:
        raise NotFound("No such counter")
    url = share_url(saved, counter)
    back = SETTINGS_PAGE if allowed(who.role, "abdm:manage") else "/queue/scan-share"
    return render(
        request,
        "abdm/counter_qr.html",
        saved=saved,
        counter=counter,
        url=url,
        svg=_qr_svg(url),
        back=back,
    )


@router.get("/queue/scan-share")
def scan_share_list(
    request: Request, who: Reader, session: DbSession, ctx: Ctx, cipher: Cipher
) -> Response:
    """Today's Scan & Share tokens, newest first: who scanned at which counter, and the
    token the ABHA app shows them."""
    assert ctx.tenant_id is not None
    saved = abdm_settings.of(session, cipher, ctx.tenant_id)
    labels = {c.id: c.label for c in saved.counters} if saved else {}
    day = today_at_clinic(session, ctx)
    return render(
        request,
        "abdm/scan_share.html",
        saved=saved,
        day=day,
        now=ctx.now(),
        labels=labels,
        tokens=share.tokens_of_day(session, day),
        zone=who.timezone,
    )


# --------------------------------------------------------------------------- ABHA check

Writer = Annotated[Principal, acting("patients:write")]


def _abha_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    patient_id: uuid.UUID,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    started: abha_check.Started | None = None,
    number: str = "",
) -> Response:
    assert ctx.tenant_id is not None
    patient = records.by_id(session, Patient, patient_id)
    shown = patients.read(cipher, patient, today_at_clinic(session, ctx))
    return render(
        request,
        "abdm/abha_check.html",
        status_code,
        patient=shown,
        started=started,
        errors=errors or {},
        values={"abhaNumber": number or shown.abha_number or ""},
        zone=str(zone_of(session, ctx.tenant_id)),
    )


@router.get("/patients/{patient_id}/abha")
def abha_page(
    request: Request, patient_id: uuid.UUID, _: Writer, session: DbSession, ctx: Ctx, cipher: Cipher
) -> Response:
    """Verify the patient's ABHA number with the code ABDM sends to their mobile."""
    return _abha_page(request, session, ctx, cipher, patient_id)


@router.post("/patients/{patient_id}/abha/send")
def abha_send(
    request: Request,
    _: Writer,
    patient: PatientInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
    form: PostedForm,
) -> Response:
    patient_id = patient.id
    number = form.get("abhaNumber", "").strip()
    try:
        started = abha_check.start(
            session, ctx, cipher, settings, patient_id=patient_id, abha_number=number or None
        )
    except DomainError as error:
        return _abha_page(
            request,
            session,
            ctx,
            cipher,
            patient_id,
            status_code=error.status,
            errors=_errors(error),
            number=number,
        )
    return _abha_page(request, session, ctx, cipher, patient_id, started=started)


@router.post("/patients/{patient_id}/abha/verify")
def abha_verify(
    request: Request,
    _: Writer,
    patient: PatientInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
    form: PostedForm,
) -> Response:
    patient_id = patient.id
    check = form.get("check", "")

    def again(error: DomainError) -> Response:
        kept = abha_check.Started(check, form.get("shown", ""), ctx.now())
        return _abha_page(
            request,
            session,
            ctx,
            cipher,
            patient_id,
            status_code=error.status,
            errors=_errors(error),
            started=kept,
        )

    return attempt(
        request,
        session,
        lambda: abha_check.finish(
            session,
            ctx,
            cipher,
            settings,
            patient_id=patient_id,
            check=check,
            otp=form.get("otp", ""),
        ),
        done=lambda _p: flash(request, f"/patients/{patient_id}", "ABHA number verified."),
        failed=again,
    )


@router.get("/patients/{patient_id}/abdm")
def patient_abdm(
    request: Request,
    who: Reader,
    patient: PatientInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> Response:
    """The patient's visits as ABDM knows them, the consents naming them, and what was
    sent under each: dates and kinds, never the records' content."""
    shown = patients.read(cipher, patient, today_at_clinic(session, ctx))
    return render(
        request,
        "abdm/patient.html",
        patient=shown,
        found=sharing.of_patient(session, patient.id),
        token=linking.token_of_patient(session, patient.id),
        zone=who.timezone,
        now=ctx.now(),
    )
