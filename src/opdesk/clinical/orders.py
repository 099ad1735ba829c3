"""Lab, imaging and procedure orders: placed by a doctor on a visit, followed by the desk
(sample collected, report attached), reviewed by a doctor, and only then told to the patient.

The status moves along :data:`ORDER` (ordered → collected → reported → reviewed →
patient-notified, or cancelled before a report): each move stamps its
``status_timeline_*`` column and is audited by :func:`opdesk.states.transition`.

What the desk may see of an order is :func:`status_view` (what was ordered and where it
stands); the result (abnormal flag, the doctor's note, the report files) is
:func:`result_view`, for ``orders:results`` only. A patient sees an order's result once a
doctor has reviewed it (:func:`reviewed_for_patients`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.clinical.models import (
    ORDER_TYPES,
    Order,
    OrderAttachment,
    OrderStatus,
    Visit,
)
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.documents import service as documents
from opdesk.documents.models import Document
from opdesk.documents.storage import Storage
from opdesk.errors import Conflict, FieldError, InvalidInput, NotFound
from opdesk.notifications import service as outbox
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy import service as tenants

ORDER = states.Machine(
    Order,
    OrderStatus,
    {
        OrderStatus.ORDERED: {OrderStatus.COLLECTED, OrderStatus.CANCELLED},
        OrderStatus.COLLECTED: {OrderStatus.REPORTED, OrderStatus.CANCELLED},
        OrderStatus.REPORTED: {OrderStatus.REVIEWED},
        OrderStatus.REVIEWED: {OrderStatus.NOTIFIED},
        OrderStatus.NOTIFIED: set(),
        OrderStatus.CANCELLED: set(),
    },
    noun="an order",
    timeline={
        OrderStatus.ORDERED: "status_timeline_ordered_at",
        OrderStatus.COLLECTED: "status_timeline_collected_at",
        OrderStatus.REPORTED: "status_timeline_reported_at",
        OrderStatus.REVIEWED: "status_timeline_reviewed_at",
        OrderStatus.NOTIFIED: "status_timeline_patient_notified_at",
        OrderStatus.CANCELLED: "status_timeline_cancelled_at",
    },
    touch="updated_at",
    refusal="{noun} cannot go from {from_} to {to}",
)

STATUS_LABELS = {
    "ordered": "Ordered",
    "collected": "Sample collected",
    "reported": "Report in",
    "reviewed": "Reviewed",
    "patient-notified": "Patient told",
    "cancelled": "Cancelled",
}
TYPE_LABELS = {"lab": "Lab test", "imaging": "Imaging", "procedure": "Procedure"}
# The document category a result file of each order type is filed under.
REPORT_CATEGORY = {"lab": "lab-report", "imaging": "imaging", "procedure": "other"}
# A patient sees the result from here on.
SEEN_BY_PATIENT = (OrderStatus.REVIEWED, OrderStatus.NOTIFIED)

MAX_ITEMS = 30
MAX_NAME = 200
MAX_CODE = 40
MAX_PANEL = 100
MAX_NOTE = 2000


# --------------------------------------------------------------------------- input


def clean_items(items: Sequence[dict[str, Any]]) -> list[dict[str, str | None]]:
    """The items as stored ({name, code, panel}); 422 naming each bad one ("Test 2")."""
    errors: list[FieldError] = []
    cleaned: list[dict[str, str | None]] = []
    if not items:
        errors.append(FieldError("items", "add at least one test"))
    if len(items) > MAX_ITEMS:
        errors.append(FieldError("items", f"at most {MAX_ITEMS} in one order"))
    for n, item in enumerate(items[:MAX_ITEMS], start=1):
        name = str(item.get("name") or "").strip()
        code = str(item.get("code") or "").strip() or None
        panel = str(item.get("panel") or "").strip() or None
        if not name:
            errors.append(FieldError(f"items[{n}].name", f"Test {n}: enter the test's name"))
        elif len(name) > MAX_NAME:
            errors.append(
                FieldError(f"items[{n}].name", f"Test {n}: at most {MAX_NAME} characters")
            )
        if code is not None and len(code) > MAX_CODE:
            errors.append(
                FieldError(f"items[{n}].code", f"Test {n}: code at most {MAX_CODE} characters")
            )
        if panel is not None and len(panel) > MAX_PANEL:
            errors.append(
                FieldError(f"items[{n}].panel", f"Test {n}: panel at most {MAX_PANEL} characters")
            )
        cleaned.append({"name": name, "code": code, "panel": panel})
    if errors:
        raise InvalidInput(errors)
    return cleaned


def _where(order: Order) -> dict[str, Any]:
    return {
        "tenant_id": order.tenant_id,
        "table": "orders",
        "column": "notes_encrypted",
        "row_id": order.id,
    }


def _note(text: str | None) -> str | None:
    note = (text or "").strip()
    if len(note) > MAX_NOTE:
        raise InvalidInput([FieldError("note", f"at most {MAX_NOTE} characters")])
    return note or None


# --------------------------------------------------------------------------- writes


def get(session: Session, order_id: uuid.UUID, *, lock: bool = False) -> Order:
    return records.by_id(session, Order, order_id, lock=lock)


def place(
    session: Session,
    ctx: RequestContext,
    *,
    visit_id: uuid.UUID,
    type_: str,
    items: Sequence[dict[str, Any]],
) -> Order:
    """A new order on the visit (404 for an unknown or another clinic's visit)."""
    assert ctx.tenant_id is not None
    visit = records.by_id(session, Visit, visit_id)
    errors: list[FieldError] = []
    if type_ not in ORDER_TYPES:
        errors.append(FieldError("type", "choose lab test, imaging or procedure"))
    try:
        cleaned = clean_items(items)
    except InvalidInput as bad:
        errors.extend(bad.errors)
        cleaned = []
    if errors:
        raise InvalidInput(errors)
    now = ctx.now()
    order = Order(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        visit_id=visit.id,
        patient_id=visit.patient_id,
        doctor_id=visit.doctor_id,
        type=type_,
        items=cleaned,
        status=OrderStatus.ORDERED,
        status_timeline_ordered_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    audit.record(
        ctx,
        entity="orders",
        entity_id=order.id,
        action="create",
        diff=audit.diff_of(
            {},
            {"visitId": visit.id, "type": type_, "items": len(cleaned), "status": "ordered"},
        ),
    )
    return order


def record_collected(session: Session, ctx: RequestContext, *, order_id: uuid.UUID) -> Order:
    """The sample was taken (or the patient went for the scan): 409 unless just ordered."""
    order = get(session, order_id, lock=True)
    states.transition(session, ctx, order, OrderStatus.COLLECTED, ORDER)
    return order


def cancel(session: Session, ctx: RequestContext, *, order_id: uuid.UUID) -> Order:
    """Cancel before a report is in (409 after)."""
    order = get(session, order_id, lock=True)
    states.transition(session, ctx, order, OrderStatus.CANCELLED, ORDER)
    return order


def attach_report(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    storage: Storage,
    *,
    order_id: uuid.UUID,
    filename: str | None,
    data: bytes,
    abnormal: bool | None,
    max_bytes: int,
) -> Document:
    """File the report as a document of the patient and link it to the order.

    The first report moves a collected order to ``reported`` (an ordered one is refused:
    record the collection first); another file may follow until a doctor has reviewed it.
    ``abnormal``: the lab marked values out of range (the doctor's review queue shows
    these first); ``None`` leaves it as it was.
    """
    order = get(session, order_id, lock=True)
    if order.status not in (OrderStatus.COLLECTED, OrderStatus.REPORTED):
        state = STATUS_LABELS[order.status].lower()
        raise Conflict(
            f"a report can be attached only after collection and before review; "
            f"this order is {state}"
        )
    doc = documents.upload(
        session,
        ctx,
        cipher,
        storage,
        patient_id=order.patient_id,
        category=REPORT_CATEGORY[order.type],
        filename=filename,
        data=data,
        tags=["order", order.type],
        max_bytes=max_bytes,
    )
    session.add(
        OrderAttachment(
            tenant_id=order.tenant_id, order_id=order.id, document_id=doc.id, created_at=ctx.now()
        )
    )
    flagged = order.abnormal_flag if abnormal is None else abnormal
    if order.status == OrderStatus.COLLECTED:
        order.abnormal_flag = flagged
        states.transition(
            session,
            ctx,
            order,
            OrderStatus.REPORTED,
            ORDER,
            diff=audit.diff_of({}, {"documentId": doc.id, "abnormalFlag": flagged}),
        )
    else:
        before = order.abnormal_flag
        order.abnormal_flag = flagged
        order.updated_at = ctx.now()
        session.flush()
        audit.record(
            ctx,
            entity="orders",
            entity_id=order.id,
            action="update",
            diff=audit.diff_of(
                {"abnormalFlag": before}, {"documentId": doc.id, "abnormalFlag": flagged}
            ),
        )
    return doc


def review(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    order_id: uuid.UUID,
    abnormal: bool,
    note: str | None,
    base_url: str,
) -> Order:
    """A doctor has read the report: stamp it reviewed, then tell the patient.

    The message (an outbox row, in the patient's language, on the channel they allow)
    is written only here, after review; once it is queued the order is
    ``patient-notified``. A patient who allows no channel still sees the result in the
    portal, and the order stays ``reviewed``.
    """
    order = get(session, order_id, lock=True)
    if not ORDER.allows(order.status, OrderStatus.REVIEWED):
        raise ORDER.refuse(order.status, OrderStatus.REVIEWED)
    text = _note(note)
    before = {"abnormalFlag": order.abnormal_flag}
    order.abnormal_flag = abnormal
    order.reviewed_by = ctx.actor_id
    if text is not None:
        order.notes_encrypted = cipher.encrypt(text, **_where(order))
    states.transition(
        session,
        ctx,
        order,
        OrderStatus.REVIEWED,
        ORDER,
        diff=audit.diff_of(before, {"abnormalFlag": abnormal, "noted": bool(text)}),
    )
    assert ctx.tenant_id is not None
    clinic = tenants.get_tenant(session, ctx.tenant_id)
    message = outbox.send_to_patient(
        session,
        ctx,
        cipher,
        patient_id=order.patient_id,
        template="lab-result",
        payload={
            "patient": _patient_name(session, order.patient_id),
            "test": ", ".join(str(i["name"]) for i in order.items)[:120],
            "clinic": clinic.name,
            "link": f"{base_url.rstrip('/')}/me/results",
        },
        dedupe_key=f"lab-result:orders:{order.id}",
    )
    if message is not None:
        states.transition(session, ctx, order, OrderStatus.NOTIFIED, ORDER)
    return order


def record_told(session: Session, ctx: RequestContext, *, order_id: uuid.UUID) -> Order:
    """The patient was told another way (a call from the desk): only after review."""
    order = get(session, order_id, lock=True)
    states.transition(session, ctx, order, OrderStatus.NOTIFIED, ORDER)
    return order


def _patient_name(session: Session, patient_id: uuid.UUID) -> str:
    from opdesk.patients.models import Patient

    return str(records.by_id(session, Patient, patient_id).full_name)


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class Result:
    """What a doctor (``orders:results``) and, once reviewed, the patient may read."""

    order: Order
    note: str | None
    documents: list[Document]


def status_view(order: Order) -> dict[str, Any]:
    """What anyone with ``orders:read`` may see: what was ordered and where it stands."""
    return {
        "id": order.id,
        "visit_id": order.visit_id,
        "patient_id": order.patient_id,
        "doctor_id": order.doctor_id,
        "type": order.type,
        "items": order.items,
        "status": str(order.status),
        "timeline": {
            "ordered": order.status_timeline_ordered_at,
            "collected": order.status_timeline_collected_at,
            "reported": order.status_timeline_reported_at,
            "reviewed": order.status_timeline_reviewed_at,
            "patient_notified": order.status_timeline_patient_notified_at,
            "cancelled": order.status_timeline_cancelled_at,
        },
    }


def attachments(session: Session, order_id: uuid.UUID) -> list[Document]:
    return list(
        session.execute(
            select(Document)
            .join(OrderAttachment, OrderAttachment.document_id == Document.id)
            .where(OrderAttachment.order_id == order_id)
            .order_by(OrderAttachment.created_at, Document.id)
        ).scalars()
    )


def result_of(session: Session, cipher: FieldCipher, order: Order) -> Result:
    note = (
        cipher.decrypt_str(order.notes_encrypted, **_where(order))
        if order.notes_encrypted is not None
        else None
    )
    return Result(order, note, attachments(session, order.id))


def attachment_of(session: Session, order: Order, document_id: uuid.UUID) -> Document:
    """One report file of the order (404 for any other document)."""
    for doc in attachments(session, order.id):
        if doc.id == document_id:
            return doc
    raise NotFound(f"no report {document_id} on this order")


def listing(
    session: Session,
    *,
    statuses: Sequence[str] | None = None,
    patient_id: uuid.UUID | None = None,
    visit_id: uuid.UUID | None = None,
    limit: int = 200,
) -> list[Order]:
    """Orders, the newest first (the desk's list)."""
    stmt = select(Order)
    if statuses:
        stmt = stmt.where(Order.status.in_(list(statuses)))
    if patient_id is not None:
        stmt = stmt.where(Order.patient_id == patient_id)
    if visit_id is not None:
        stmt = stmt.where(Order.visit_id == visit_id)
    return list(
        session.execute(
            stmt.order_by(Order.status_timeline_ordered_at.desc(), Order.id).limit(limit)
        ).scalars()
    )


def review_queue(session: Session, *, doctor_id: uuid.UUID | None = None) -> list[Order]:
    """Reported, not yet reviewed: abnormal first, then the longest waiting."""
    stmt = select(Order).where(Order.status == OrderStatus.REPORTED)
    if doctor_id is not None:
        stmt = stmt.where(Order.doctor_id == doctor_id)
    abnormal_first = case((Order.abnormal_flag.is_(True), 0), else_=1)
    return list(
        session.execute(
            stmt.order_by(abnormal_first, Order.status_timeline_reported_at, Order.id)
        ).scalars()
    )


def reviewed_for_patients(
    session: Session, cipher: FieldCipher, patient_ids: Sequence[uuid.UUID]
) -> list[Result]:
    """The family's results a doctor has reviewed, the newest first; nothing before."""
    if not patient_ids:
        return []
    found = session.execute(
        select(Order)
        .where(Order.patient_id.in_(list(patient_ids)), Order.status.in_(SEEN_BY_PATIENT))
        .order_by(Order.status_timeline_reviewed_at.desc(), Order.id)
    ).scalars()
    return [result_of(session, cipher, o) for o in found]


def reviewed_document(
    session: Session, document_id: uuid.UUID, patient_ids: Sequence[uuid.UUID]
) -> Document:
    """A report file of a reviewed order of the family (404 before review)."""
    row = session.execute(
        select(Document)
        .join(OrderAttachment, OrderAttachment.document_id == Document.id)
        .join(Order, Order.id == OrderAttachment.order_id)
        .where(
            Document.id == document_id,
            Order.patient_id.in_(list(patient_ids)),
            Order.status.in_(SEEN_BY_PATIENT),
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no result with id {document_id}")
    return row


def waited(order: Order, now: datetime) -> str:
    """How long a report has waited for review ("3 h", "2 d")."""
    since = order.status_timeline_reported_at or order.status_timeline_ordered_at
    hours = int((now - since).total_seconds() // 3600)
    return f"{hours // 24} d" if hours >= 48 else f"{max(hours, 0)} h"
