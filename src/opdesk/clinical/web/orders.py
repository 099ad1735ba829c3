"""Orders and diet plans: the REST API (``/api/v1/orders``, ``/api/v1/diet-plans``,
``/api/v1/diet-templates``, the patient's ``/api/v1/me/results`` and
``/api/v1/me/diet-plans``) and the pages: the doctor's order form (reached from a visit)
and review queue, the desk's order list (record collected, attach the report), the
diet plan editor, library and print view, and the patient's results and diet plan with
ticking.

The desk's views of an order carry no result (no abnormal flag, note or report file):
those are ``orders:results``, a doctor's. A patient sees a result after a doctor's review.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy.orm import Session

from opdesk.clinical import diet, orders
from opdesk.clinical.models import (
    ORDER_TYPES,
    DietPlan,
    DietPlanTemplate,
    Order,
    OrderStatus,
    Visit,
)
from opdesk.documents.deps import Store, file_response
from opdesk.documents.models import Document
from opdesk.documents.service import TooLarge
from opdesk.errors import DomainError, FieldError, InvalidInput
from opdesk.identity.sessions import Principal
from opdesk.patients import service as patients
from opdesk.patients.deps import MyFamily
from opdesk.records import by_id
from opdesk.schemas import PROBLEM_RESPONSES, ApiModel
from opdesk.security.permissions import allowed
from opdesk.validation import ascii_digits
from opdesk.web.deps import AppSettings, Cipher, Ctx, DbSession, acting
from opdesk.web.pages import PostedForm, attempt, flash, render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
api = APIRouter(tags=["orders"], responses=PROBLEM_RESPONSES)
NAV: tuple[NavEntry, ...] = (
    NavEntry("Orders", "/orders", "orders:read", "clinical"),
    NavEntry("Results to review", "/orders/review", "orders:results", "clinical"),
    NavEntry("Diet templates", "/diet-templates", "diet-templates:manage", "clinical"),
    NavEntry("My results", "/me/results", "portal:self", "patient"),
    NavEntry("My diet plan", "/me/diet", "portal:self", "patient"),
)

Reader = Annotated[Principal, acting("orders:read")]
Recorder = Annotated[Principal, acting("orders:record")]
Orderer = Annotated[Principal, acting("orders:write")]
ResultReader = Annotated[Principal, acting("orders:results")]
PlanReader = Annotated[Principal, acting("diet-plans:read")]
PlanWriter = Annotated[Principal, acting("diet-plans:write")]
Librarian = Annotated[Principal, acting("diet-templates:manage")]
Patient = Annotated[Principal, acting("portal:self")]


# --------------------------------------------------------------------------- loaders


def order_in_path(order_id: uuid.UUID, session: DbSession) -> Order:
    return orders.get(session, order_id)


def visit_in_path(visit_id: uuid.UUID, session: DbSession) -> Visit:
    return by_id(session, Visit, visit_id)


def plan_in_path(diet_plan_id: uuid.UUID, session: DbSession) -> DietPlan:
    return diet.get(session, diet_plan_id)


def template_in_path(diet_template_id: uuid.UUID, session: DbSession) -> DietPlanTemplate:
    return by_id(session, DietPlanTemplate, diet_template_id)


def my_plan(diet_plan_id: uuid.UUID, session: DbSession, family: MyFamily) -> DietPlan:
    """An issued plan of the signed-in patient's family, else 404."""
    return diet.issued_for_family(session, diet_plan_id, family.ids)


def my_result_file(document_id: uuid.UUID, session: DbSession, family: MyFamily) -> Document:
    """A report file of the family's reviewed order, else 404 (also before review)."""
    return orders.reviewed_document(session, document_id, family.ids)


OrderInPath = Annotated[Order, Depends(order_in_path)]
VisitInPath = Annotated[Visit, Depends(visit_in_path)]
PlanInPath = Annotated[DietPlan, Depends(plan_in_path)]
TemplateInPath = Annotated[DietPlanTemplate, Depends(template_in_path)]
MyPlan = Annotated[DietPlan, Depends(my_plan)]
MyResultFile = Annotated[Document, Depends(my_result_file)]


# --------------------------------------------------------------------------- schemas


class OrderItem(ApiModel):
    name: str = Field(max_length=orders.MAX_NAME)
    code: str | None = Field(default=None, max_length=orders.MAX_CODE)
    panel: str | None = Field(default=None, max_length=orders.MAX_PANEL)


class OrderIn(ApiModel):
    visit_id: uuid.UUID
    type: Literal["lab", "imaging", "procedure"]
    items: list[OrderItem] = Field(min_length=1, max_length=orders.MAX_ITEMS)


class Timeline(ApiModel):
    ordered: datetime
    collected: datetime | None
    reported: datetime | None
    reviewed: datetime | None
    patient_notified: datetime | None
    cancelled: datetime | None


class OrderOut(ApiModel):
    """An order as the desk sees it: no result."""

    id: uuid.UUID
    visit_id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    type: str
    items: list[OrderItem]
    status: str
    status_timeline: Timeline


class ReportFile(ApiModel):
    id: uuid.UUID
    filename: str
    mime: str
    size: int


class OrderResultOut(OrderOut):
    """An order with its result (``orders:results``; the patient's own after review)."""

    abnormal_flag: bool | None
    note: str | None
    reports: list[ReportFile]


class ReviewIn(ApiModel):
    abnormal: bool
    note: str | None = Field(default=None, max_length=orders.MAX_NOTE)


def order_out(order: Order) -> OrderOut:
    view = orders.status_view(order)
    timeline = view.pop("timeline")
    return OrderOut.model_validate({**view, "status_timeline": timeline})


def result_out(result: orders.Result) -> OrderResultOut:
    base = order_out(result.order).model_dump()
    return OrderResultOut.model_validate(
        {
            **base,
            "abnormal_flag": result.order.abnormal_flag,
            "note": result.note,
            "reports": [ReportFile.model_validate(d) for d in result.documents],
        }
    )


Macros = dict[str, float | int | None]


class DietItem(ApiModel):
    name: str = Field(max_length=diet.MAX_TEXT)
    qty: float = Field(gt=0, le=10000)
    unit: str = Field(default="", max_length=20)


class Meal(ApiModel):
    label: str = Field(max_length=diet.MAX_TEXT)
    items: list[DietItem] = Field(max_length=diet.MAX_ITEMS)


class MealOut(Meal):
    done: bool | None = None


class Day(ApiModel):
    day: int = Field(ge=1, le=diet.MAX_DAYS)
    meals: list[Meal] = Field(max_length=diet.MAX_MEALS)


class DayOut(ApiModel):
    day: int
    meals: list[MealOut]


class TemplateIn(ApiModel):
    name: str = Field(max_length=120)
    macros: Macros = Field(default_factory=dict)
    schedule: list[Day] = Field(max_length=diet.MAX_DAYS)


class TemplateOut(ApiModel):
    id: uuid.UUID
    name: str
    macros: dict[str, Any]
    schedule: list[DayOut]


class PlanIn(ApiModel):
    visit_id: uuid.UUID
    template_id: uuid.UUID | None = None
    macros: Macros | None = None
    schedule: list[Day] | None = Field(default=None, max_length=diet.MAX_DAYS)


class PlanUpdate(ApiModel):
    macros: Macros = Field(default_factory=dict)
    schedule: list[Day] = Field(max_length=diet.MAX_DAYS)


class Adherence(ApiModel):
    completed_days: int
    last_updated: datetime | None


class PlanOut(ApiModel):
    id: uuid.UUID
    visit_id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    version: int
    supersedes: uuid.UUID | None
    template_id: uuid.UUID | None
    macros: dict[str, Any]
    schedule: list[DayOut]
    adherence_summary: Adherence
    issued_at: datetime | None


class TickIn(ApiModel):
    day: int = Field(ge=1, le=diet.MAX_DAYS)
    meal: str = Field(min_length=1, max_length=diet.MAX_TEXT)
    done: bool


def plan_out(session: Session, plan: DietPlan) -> PlanOut:
    done = diet.ticks(session, plan.id)
    return PlanOut.model_validate(
        {
            "id": plan.id,
            "visit_id": plan.visit_id,
            "patient_id": plan.patient_id,
            "doctor_id": plan.doctor_id,
            "version": plan.version,
            "supersedes": plan.supersedes,
            "template_id": plan.template_id,
            "macros": plan.macros,
            "schedule": [{"day": d.day, "meals": d.meals} for d in diet.days_of(plan, done)],
            "adherence_summary": {
                "completed_days": plan.adherence_summary_completed_days,
                "last_updated": plan.adherence_summary_last_updated,
            },
            "issued_at": plan.issued_at,
        }
    )


def _dumped(days: list[Day] | None) -> list[dict[str, Any]] | None:
    return None if days is None else [d.model_dump() for d in days]


# --------------------------------------------------------------------------- orders API


@api.post("/orders", response_model=OrderOut, status_code=201)
def place_order(
    _: Orderer, body: OrderIn, session: DbSession, ctx: Ctx, cipher: Cipher
) -> OrderOut:
    """Order lab tests, imaging or a procedure on a visit (404 for another clinic's visit)."""
    order = orders.place(
        session,
        ctx,
        visit_id=body.visit_id,
        type_=body.type,
        items=[i.model_dump() for i in body.items],
    )
    return order_out(order)


@api.get("/orders", response_model=list[OrderOut])
def list_orders(
    _: Reader,
    session: DbSession,
    # An unknown status is 422 naming it, as FastAPI checks the enum.
    status: Annotated[list[OrderStatus] | None, Query()] = None,
    patient_id: Annotated[uuid.UUID | None, Query(alias="patientId")] = None,
    visit_id: Annotated[uuid.UUID | None, Query(alias="visitId")] = None,
) -> list[OrderOut]:
    """Orders and where they stand, newest first (no results: see ``/result``)."""
    found = orders.listing(session, statuses=status, patient_id=patient_id, visit_id=visit_id)
    return [order_out(o) for o in found]


@api.get("/orders/review-queue", response_model=list[OrderResultOut])
def review_queue_api(_: ResultReader, session: DbSession, cipher: Cipher) -> list[OrderResultOut]:
    """Reported and not yet reviewed: abnormal first, then the longest waiting."""
    return [result_out(orders.result_of(session, cipher, o)) for o in orders.review_queue(session)]


@api.get("/orders/{order_id}", response_model=OrderOut)
def get_order(_: Reader, order: OrderInPath) -> OrderOut:
    return order_out(order)


@api.get("/orders/{order_id}/result", response_model=OrderResultOut)
def get_result(
    _: ResultReader, order: OrderInPath, session: DbSession, cipher: Cipher
) -> OrderResultOut:
    """The result: abnormal flag, the doctor's note and the report files (doctors only)."""
    return result_out(orders.result_of(session, cipher, order))


@api.get("/orders/{order_id}/reports/{document_id}")
def get_report_file(
    request: Request,
    _: ResultReader,
    order: OrderInPath,
    document_id: uuid.UUID,
    session: DbSession,
) -> Response:
    """One report file of the order (doctors only)."""
    return file_response(request, orders.attachment_of(session, order, document_id))


@api.post("/orders/{order_id}/collected", response_model=OrderOut)
def record_collected_api(_: Recorder, order: OrderInPath, session: DbSession, ctx: Ctx) -> OrderOut:
    """The sample was collected (409 unless the order is just ordered)."""
    return order_out(orders.record_collected(session, ctx, order_id=order.id))


@api.post("/orders/{order_id}/reports", response_model=OrderOut, status_code=201)
def attach_report_api(
    _: Recorder,
    order: OrderInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    storage: Store,
    settings: AppSettings,
    file: Annotated[UploadFile, File(description="PDF, JPEG, PNG or WebP")],
    abnormal: Annotated[bool | None, Form(description="the lab marked values abnormal")] = None,
) -> OrderOut:
    """Attach the report (filed as the patient's document) and mark the order reported."""
    limit = settings.max_upload_mb * 1024 * 1024
    try:
        orders.attach_report(
            session,
            ctx,
            cipher,
            storage,
            order_id=order.id,
            filename=file.filename,
            data=file.file.read(limit + 1),
            abnormal=abnormal,
            max_bytes=limit,
        )
    except TooLarge as exc:
        raise InvalidInput([FieldError("file", str(exc).removeprefix("file: "))]) from None
    return order_out(orders.get(session, order.id))


@api.post("/orders/{order_id}/review", response_model=OrderResultOut)
def review_api(
    _: Orderer,
    body: ReviewIn,
    order: OrderInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
) -> OrderResultOut:
    """A doctor reviewed the report; the patient is then told (a message, once)."""
    done = orders.review(
        session,
        ctx,
        cipher,
        order_id=order.id,
        abnormal=body.abnormal,
        note=body.note,
        base_url=settings.base_url,
    )
    return result_out(orders.result_of(session, cipher, done))


@api.post("/orders/{order_id}/patient-notified", response_model=OrderOut)
def told_api(_: Recorder, order: OrderInPath, session: DbSession, ctx: Ctx) -> OrderOut:
    """The patient was told another way (409 before review)."""
    return order_out(orders.record_told(session, ctx, order_id=order.id))


@api.post("/orders/{order_id}/cancel", response_model=OrderOut)
def cancel_api(_: Orderer, order: OrderInPath, session: DbSession, ctx: Ctx) -> OrderOut:
    """Cancel an order before its report is in (409 after)."""
    return order_out(orders.cancel(session, ctx, order_id=order.id))


@api.get("/me/results", response_model=list[OrderResultOut])
def my_results_api(
    _: Patient, session: DbSession, cipher: Cipher, family: MyFamily
) -> list[OrderResultOut]:
    """The family's results a doctor has reviewed (nothing before review)."""
    return [result_out(r) for r in orders.reviewed_for_patients(session, cipher, family.ids)]


# --------------------------------------------------------------------------- diet API


@api.get("/diet-templates", response_model=list[TemplateOut], tags=["diet plans"])
def list_templates(_: Librarian, session: DbSession) -> list[TemplateOut]:
    return [TemplateOut.model_validate(t) for t in diet.templates(session)]


@api.post("/diet-templates", response_model=TemplateOut, status_code=201, tags=["diet plans"])
def add_template_api(_: Librarian, body: TemplateIn, session: DbSession, ctx: Ctx) -> TemplateOut:
    row = diet.add_template(
        session, ctx, name=body.name, macros=body.macros, schedule=_dumped(body.schedule) or []
    )
    return TemplateOut.model_validate(row)


@api.post("/diet-templates/standard", response_model=list[TemplateOut], tags=["diet plans"])
def add_standard_api(_: Librarian, session: DbSession, ctx: Ctx) -> list[TemplateOut]:
    """Add the standard Indian templates the library lacks (by name); returns the library."""
    diet.add_standard_templates(session, ctx)
    return [TemplateOut.model_validate(t) for t in diet.templates(session)]


@api.put("/diet-templates/{diet_template_id}", response_model=TemplateOut, tags=["diet plans"])
def update_template_api(
    _: Librarian, body: TemplateIn, template: TemplateInPath, session: DbSession, ctx: Ctx
) -> TemplateOut:
    row = diet.update_template(
        session,
        ctx,
        template_id=template.id,
        name=body.name,
        macros=body.macros,
        schedule=_dumped(body.schedule) or [],
    )
    return TemplateOut.model_validate(row)


@api.delete("/diet-templates/{diet_template_id}", status_code=204, tags=["diet plans"])
def delete_template_api(
    _: Librarian, template: TemplateInPath, session: DbSession, ctx: Ctx
) -> Response:
    diet.delete_template(session, ctx, template_id=template.id)
    return Response(status_code=204)


@api.post("/diet-plans", response_model=PlanOut, status_code=201, tags=["diet plans"])
def create_plan_api(_: PlanWriter, body: PlanIn, session: DbSession, ctx: Ctx) -> PlanOut:
    """A draft plan on a visit, from a template or a schedule of its own."""
    plan = diet.create(
        session,
        ctx,
        visit_id=body.visit_id,
        template_id=body.template_id,
        macros=body.macros,
        schedule=_dumped(body.schedule),
    )
    return plan_out(session, plan)


@api.get("/diet-plans", response_model=list[PlanOut], tags=["diet plans"])
def list_plans_api(
    _: PlanReader, session: DbSession, patient_id: Annotated[uuid.UUID, Query(alias="patientId")]
) -> list[PlanOut]:
    patients.get(session, patient_id)
    return [plan_out(session, p) for p in diet.of_patient(session, patient_id)]


@api.get("/diet-plans/{diet_plan_id}", response_model=PlanOut, tags=["diet plans"])
def get_plan_api(_: PlanReader, plan: PlanInPath, session: DbSession) -> PlanOut:
    return plan_out(session, plan)


@api.put("/diet-plans/{diet_plan_id}", response_model=PlanOut, tags=["diet plans"])
def update_plan_api(
    _: PlanWriter, body: PlanUpdate, plan: PlanInPath, session: DbSession, ctx: Ctx
) -> PlanOut:
    """Change a draft (409 once issued: write a new version)."""
    changed = diet.update(
        session, ctx, plan_id=plan.id, macros=body.macros, schedule=_dumped(body.schedule) or []
    )
    return plan_out(session, changed)


@api.delete("/diet-plans/{diet_plan_id}", status_code=204, tags=["diet plans"])
def delete_plan_api(_: PlanWriter, plan: PlanInPath, session: DbSession, ctx: Ctx) -> Response:
    """Throw away a draft (409 once issued)."""
    diet.delete_draft(session, ctx, plan_id=plan.id)
    return Response(status_code=204)


@api.post("/diet-plans/{diet_plan_id}/issue", response_model=PlanOut, tags=["diet plans"])
def issue_plan_api(_: PlanWriter, plan: PlanInPath, session: DbSession, ctx: Ctx) -> PlanOut:
    """Issue the plan to the patient; from now on it cannot change."""
    return plan_out(session, diet.issue(session, ctx, plan_id=plan.id))


@api.post(
    "/diet-plans/{diet_plan_id}/versions",
    response_model=PlanOut,
    status_code=201,
    tags=["diet plans"],
)
def revise_plan_api(_: PlanWriter, plan: PlanInPath, session: DbSession, ctx: Ctx) -> PlanOut:
    """A new draft version superseding this issued plan (409 if one exists)."""
    return plan_out(session, diet.revise(session, ctx, plan_id=plan.id))


@api.get("/me/diet-plans", response_model=list[PlanOut], tags=["diet plans"])
def my_plans_api(_: Patient, session: DbSession, family: MyFamily) -> list[PlanOut]:
    """The family's current issued diet plans, with what has been ticked."""
    return [plan_out(session, p) for p in diet.current_for(session, family.ids)]


@api.put("/me/diet-plans/{diet_plan_id}/ticks", response_model=PlanOut, tags=["diet plans"])
def tick_api(_: Patient, body: TickIn, plan: MyPlan, session: DbSession, ctx: Ctx) -> PlanOut:
    """Tick (or untick) a meal of a day; the adherence summary follows."""
    done = diet.tick(session, ctx, plan=plan, day=body.day, meal=body.meal, done=body.done)
    return plan_out(session, done)


# --------------------------------------------------------------------------- order pages

FILTERS = (
    ("open", "Open", ("ordered", "collected", "reported")),
    ("to-collect", "To collect", ("ordered",)),
    ("awaiting-report", "Awaiting report", ("collected",)),
    ("done", "Reviewed and told", ("reviewed", "patient-notified")),
    ("all", "All", ()),
)


def _names(session: Session, rows: list[Order]) -> dict[uuid.UUID, str]:
    """Patient names for a list (one read per patient)."""
    names: dict[uuid.UUID, str] = {}
    for row in rows:
        if row.patient_id not in names:
            names[row.patient_id] = patients.get(session, row.patient_id).full_name
    return names


@router.get("/orders")
def orders_page(request: Request, who: Reader, session: DbSession, show: str = "open") -> Response:
    """The desk's list: what was ordered and where it stands (no results)."""
    chosen = next((f for f in FILTERS if f[0] == show), FILTERS[0])
    rows = orders.listing(session, statuses=chosen[2] or None)
    return render(
        request,
        "clinical/orders.html",
        rows=rows,
        names=_names(session, rows),
        filters=FILTERS,
        show=chosen[0],
        labels=orders.STATUS_LABELS,
        types=orders.TYPE_LABELS,
        may_record=allowed(who.role, "orders:record"),
        may_review=allowed(who.role, "orders:results"),
    )


@router.post("/orders/{order_id}/collected")
def record_collected_page(
    request: Request, _: Recorder, order: OrderInPath, session: DbSession, ctx: Ctx
) -> Response:
    return attempt(
        request,
        session,
        lambda: orders.record_collected(session, ctx, order_id=order.id),
        done="/orders",
        message="Recorded: sample collected.",
    )


@router.post("/orders/{order_id}/patient-notified")
def told_page(
    request: Request, _: Recorder, order: OrderInPath, session: DbSession, ctx: Ctx
) -> Response:
    return attempt(
        request,
        session,
        lambda: orders.record_told(session, ctx, order_id=order.id),
        done="/orders?show=done",
        message="Recorded: the patient was told.",
    )


def _report_page(
    request: Request,
    session: Session,
    order: Order,
    status: int = 200,
    problem: str | None = None,
) -> Response:
    return render(
        request,
        "clinical/order_report.html",
        status,
        order=order,
        patient=patients.get(session, order.patient_id),
        labels=orders.STATUS_LABELS,
        types=orders.TYPE_LABELS,
        problem=problem,
    )


@router.get("/orders/{order_id}/report")
def report_form(request: Request, _: Recorder, order: OrderInPath, session: DbSession) -> Response:
    """Attach the report that came back from the lab."""
    return _report_page(request, session, order)


@router.post("/orders/{order_id}/report")
def attach_report_page(
    request: Request,
    _: Recorder,
    order: OrderInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    storage: Store,
    settings: AppSettings,
    file: Annotated[UploadFile, File()],
    abnormal: Annotated[str, Form()] = "",
) -> Response:
    limit = settings.max_upload_mb * 1024 * 1024

    def attach() -> object:
        try:
            return orders.attach_report(
                session,
                ctx,
                cipher,
                storage,
                order_id=order.id,
                filename=file.filename,
                data=file.file.read(limit + 1),
                abnormal=True if abnormal == "yes" else None,
                max_bytes=limit,
            )
        except TooLarge as exc:
            raise InvalidInput([FieldError("file", str(exc).removeprefix("file: "))]) from None

    def refused(error: DomainError) -> Response:
        return _report_page(
            request, session, order, 422 if error.status == 422 else 409, str(error.detail)
        )

    return attempt(
        request,
        session,
        attach,
        done=lambda _doc: flash(request, "/orders", "Report attached; the doctor will review it."),
        failed=refused,
    )


@router.get("/visits/{visit_id}/orders/new")
def order_form(request: Request, _: Orderer, visit: VisitInPath, session: DbSession) -> Response:
    """The doctor's order form for this visit."""
    return _order_form(request, session, visit)


def _order_form(
    request: Request,
    session: Session,
    visit: Visit,
    status: int = 200,
    *,
    values: dict[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> Response:
    return render(
        request,
        "clinical/order_form.html",
        status,
        visit=visit,
        patient=patients.get(session, visit.patient_id),
        existing=orders.listing(session, visit_id=visit.id),
        labels=orders.STATUS_LABELS,
        types=orders.TYPE_LABELS,
        order_types=ORDER_TYPES,
        values=values or {"type": "lab"},
        problems=errors or [],
        rows=range(1, 7),
    )


def items_from_form(form: dict[str, str]) -> list[dict[str, str]]:
    """The filled rows of the form (``name1``, ``code1``, ``panel1``…)."""
    items = []
    for n in range(1, orders.MAX_ITEMS + 1):
        name = form.get(f"name{n}", "").strip()
        code = form.get(f"code{n}", "").strip()
        panel = form.get(f"panel{n}", "").strip()
        if name or code or panel:
            items.append({"name": name, "code": code, "panel": panel})
    return items


@router.post("/visits/{visit_id}/orders")
def place_order_page(
    request: Request,
    _: Orderer,
    visit: VisitInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    def refused(error: DomainError) -> Response:
        errors = error.errors if isinstance(error, InvalidInput) else [FieldError("", error.detail)]
        return _order_form(request, session, visit, 422, values=form, errors=errors)

    return attempt(
        request,
        session,
        lambda: orders.place(
            session,
            ctx,
            visit_id=visit.id,
            type_=form.get("type", ""),
            items=items_from_form(form),
        ),
        done=lambda _o: flash(request, f"/visits/{visit.id}/orders/new", "Order placed."),
        failed=refused,
    )


@router.post("/orders/{order_id}/cancel")
def cancel_page(
    request: Request, _: Orderer, order: OrderInPath, session: DbSession, ctx: Ctx
) -> Response:
    return attempt(
        request,
        session,
        lambda: orders.cancel(session, ctx, order_id=order.id),
        done=f"/visits/{order.visit_id}/orders/new",
        message="Order cancelled.",
    )


@router.get("/orders/review")
def review_queue_page(request: Request, _: ResultReader, session: DbSession, ctx: Ctx) -> Response:
    """Reported results waiting for a doctor: abnormal first, then the longest waiting."""
    rows = orders.review_queue(session)
    now = ctx.now()
    return render(
        request,
        "clinical/order_review_queue.html",
        rows=rows,
        names=_names(session, rows),
        waited={o.id: orders.waited(o, now) for o in rows},
        types=orders.TYPE_LABELS,
    )


@router.get("/orders/{order_id}/review")
def review_page(
    request: Request, _: ResultReader, order: OrderInPath, session: DbSession, cipher: Cipher
) -> Response:
    """One result: the report files, the flag, and the review form."""
    return render(
        request,
        "clinical/order_review.html",
        result=orders.result_of(session, cipher, order),
        patient=patients.get(session, order.patient_id),
        labels=orders.STATUS_LABELS,
        types=orders.TYPE_LABELS,
    )


@router.get("/orders/{order_id}/reports/{document_id}")
def report_file_page(
    request: Request,
    _: ResultReader,
    order: OrderInPath,
    document_id: uuid.UUID,
    session: DbSession,
) -> Response:
    return file_response(request, orders.attachment_of(session, order, document_id))


@router.post("/orders/{order_id}/review")
def review_submit(
    request: Request,
    _: Orderer,
    order: OrderInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
    form: PostedForm,
) -> Response:
    return attempt(
        request,
        session,
        lambda: orders.review(
            session,
            ctx,
            cipher,
            order_id=order.id,
            abnormal=form.get("abnormal") == "yes",
            note=form.get("note"),
            base_url=settings.base_url,
        ),
        done="/orders/review",
        message="Reviewed. The patient is told the result is ready.",
        failed=f"/orders/{order.id}/review",
    )


# --------------------------------------------------------------------------- portal pages


@router.get("/me/results")
def my_results_page(
    request: Request, _: Patient, session: DbSession, cipher: Cipher, family: MyFamily
) -> Response:
    """Results a doctor has reviewed; nothing before."""
    results = orders.reviewed_for_patients(session, cipher, family.ids)
    names = {pid: patients.get(session, pid).full_name for pid in family.ids}
    return render(
        request,
        "clinical/order_my_results.html",
        results=results,
        names=names,
        types=orders.TYPE_LABELS,
    )


@router.get("/me/results/{document_id}")
def my_result_file_page(request: Request, _: Patient, doc: MyResultFile) -> Response:
    """A report file of a reviewed result of the family (404 before review)."""
    return file_response(request, doc)


@router.get("/me/diet")
def my_diet_page(request: Request, _: Patient, session: DbSession, family: MyFamily) -> Response:
    """The family's current diet plans, each meal with a tick."""
    plans = diet.current_for(session, family.ids)
    names = {pid: patients.get(session, pid).full_name for pid in family.ids}
    return render(
        request,
        "clinical/diet_mine.html",
        plans=[(p, diet.days_of(p, diet.ticks(session, p.id))) for p in plans],
        names=names,
        macro_labels=diet.MACRO_LABELS,
    )


@router.post("/me/diet-plans/{diet_plan_id}/ticks")
def tick_page(
    request: Request, _: Patient, plan: MyPlan, session: DbSession, ctx: Ctx, form: PostedForm
) -> Response:
    def tick() -> object:
        try:
            day = int(form.get("day", ""))
        except ValueError:
            raise InvalidInput([FieldError("day", "is not a day of this plan")]) from None
        return diet.tick(
            session,
            ctx,
            plan=plan,
            day=day,
            meal=form.get("meal", ""),
            done=form.get("done") == "yes",
        )

    message = "Ticked." if form.get("done") == "yes" else "Tick removed."
    return attempt(request, session, tick, done=f"/me/diet#plan-{plan.id}", message=message)


# --------------------------------------------------------------------------- diet pages


def schedule_text(schedule: list[dict[str, Any]]) -> str:
    """The schedule as the editor shows it: ``Day | Meal | Food | Qty | Unit`` a line."""
    lines = []
    for day in schedule:
        for meal in day["meals"]:
            for item in meal["items"]:
                lines.append(
                    f"{day['day']} | {meal['label']} | {item['name']} | {item['qty']} | "
                    f"{item.get('unit', '')}".rstrip(" |")
                )
    return "\n".join(lines)


def schedule_from_text(text: str) -> list[dict[str, Any]]:
    """The editor's lines back into days and meals; 422 naming the bad line."""
    days: dict[int, dict[str, list[dict[str, Any]]]] = {}
    errors: list[FieldError] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 4 or not ascii_digits(parts[0]):
            errors.append(FieldError("schedule", f"line {n}: write Day | Meal | Food | Qty | Unit"))
            continue
        unit = parts[4] if len(parts) > 4 else ""
        days.setdefault(int(parts[0]), {}).setdefault(parts[1], []).append(
            {"name": parts[2], "qty": parts[3], "unit": unit}
        )
    if errors:
        raise InvalidInput(errors)
    return [
        {"day": d, "meals": [{"label": label, "items": items} for label, items in meals.items()]}
        for d, meals in sorted(days.items())
    ]


def macros_from_form(form: dict[str, str]) -> dict[str, str]:
    return {k: form.get(f"macros.{k}", "").strip() for k in diet.MACRO_LIMITS}


@router.get("/diet-templates")
def templates_page(request: Request, _: Librarian, session: DbSession) -> Response:
    return render(
        request,
        "clinical/diet_templates.html",
        templates=diet.templates(session),
        macro_labels=diet.MACRO_LABELS,
    )


@router.post("/diet-templates/standard")
def add_standard_page(request: Request, _: Librarian, session: DbSession, ctx: Ctx) -> Response:
    return attempt(
        request,
        session,
        lambda: diet.add_standard_templates(session, ctx),
        done=lambda n: flash(request, "/diet-templates", f"Added {n} standard templates."),
        failed="/diet-templates",
    )


@router.get("/visits/{visit_id}/diet/new")
def new_plan_page(
    request: Request, _: PlanWriter, visit: VisitInPath, session: DbSession
) -> Response:
    return render(
        request,
        "clinical/diet_new.html",
        visit=visit,
        patient=patients.get(session, visit.patient_id),
        templates=diet.templates(session),
        plans=diet.of_patient(session, visit.patient_id),
    )


@router.post("/visits/{visit_id}/diet")
def create_plan_page(
    request: Request,
    _: PlanWriter,
    visit: VisitInPath,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    def create() -> DietPlan:
        raw = form.get("template_id", "")
        try:
            template_id = uuid.UUID(raw) if raw else None
        except ValueError:
            raise InvalidInput([FieldError("templateId", "is not in the library")]) from None
        schedule = None if template_id else [{"day": 1, "meals": []}]
        return diet.create(
            session, ctx, visit_id=visit.id, template_id=template_id, schedule=schedule
        )

    return attempt(
        request,
        session,
        create,
        done=lambda plan: flash(request, f"/diet-plans/{plan.id}", "Draft diet plan started."),
        failed=f"/visits/{visit.id}/diet/new",
    )


def _plan_page(
    request: Request,
    session: Session,
    plan: DietPlan,
    who: Principal,
    status: int = 200,
    *,
    values: dict[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> Response:
    return render(
        request,
        "clinical/diet_plan.html",
        status,
        plan=plan,
        patient=patients.get(session, plan.patient_id),
        days=diet.days_of(plan, diet.ticks(session, plan.id)),
        text=values.get("schedule", "") if values is not None else schedule_text(plan.schedule),
        macros=values_macros(values, plan),
        macro_labels=diet.MACRO_LABELS,
        problems=errors or [],
        may_write=allowed(who.role, "diet-plans:write"),
    )


def values_macros(values: dict[str, str] | None, plan: DietPlan) -> dict[str, Any]:
    if values:
        return macros_from_form(values)
    return {k: plan.macros.get(k, "") for k in diet.MACRO_LIMITS}


@router.get("/diet-plans/{diet_plan_id}")
def plan_page(request: Request, who: PlanReader, plan: PlanInPath, session: DbSession) -> Response:
    return _plan_page(request, session, plan, who)


@router.post("/diet-plans/{diet_plan_id}")
def save_plan_page(
    request: Request,
    who: PlanWriter,
    plan: PlanInPath,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    def refused(error: DomainError) -> Response:
        errors = error.errors if isinstance(error, InvalidInput) else [FieldError("", error.detail)]
        return _plan_page(request, session, plan, who, error.status, values=form, errors=errors)

    return attempt(
        request,
        session,
        lambda: diet.update(
            session,
            ctx,
            plan_id=plan.id,
            macros=macros_from_form(form),
            schedule=schedule_from_text(form.get("schedule", "")),
        ),
        done=lambda _p: flash(request, f"/diet-plans/{plan.id}", "Diet plan saved."),
        failed=refused,
    )


@router.post("/diet-plans/{diet_plan_id}/issue")
def issue_plan_page(
    request: Request, _: PlanWriter, plan: PlanInPath, session: DbSession, ctx: Ctx
) -> Response:
    return attempt(
        request,
        session,
        lambda: diet.issue(session, ctx, plan_id=plan.id),
        done=f"/diet-plans/{plan.id}",
        message="Diet plan issued: the patient can see it and tick their meals.",
    )


@router.post("/diet-plans/{diet_plan_id}/versions")
def revise_plan_page(
    request: Request, _: PlanWriter, plan: PlanInPath, session: DbSession, ctx: Ctx
) -> Response:
    return attempt(
        request,
        session,
        lambda: diet.revise(session, ctx, plan_id=plan.id),
        done=lambda new: flash(request, f"/diet-plans/{new.id}", "New version started."),
        failed=f"/diet-plans/{plan.id}",
    )


@router.get("/diet-plans/{diet_plan_id}/print")
def print_plan_page(
    request: Request, _: PlanReader, plan: PlanInPath, session: DbSession
) -> Response:
    """The plan as it prints: A4, no navigation."""
    return render(
        request,
        "clinical/diet_print.html",
        plan=plan,
        patient=patients.get(session, plan.patient_id),
        days=diet.days_of(plan, {}),
        macro_labels=diet.MACRO_LABELS,
    )
