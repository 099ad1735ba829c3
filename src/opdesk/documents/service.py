"""Uploading documents (checked by content, encrypted at rest, versioned) and sharing them."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.documents.models import (
    CATEGORIES,
    SHARE_LINK,
    Document,
    ShareLink,
    ShareLinkStatus,
)
from opdesk.documents.storage import Storage
from opdesk.errors import FieldError, InvalidInput, NotFound
from opdesk.patients import service as patients
from opdesk.security.crypto import FieldCipher
from opdesk.security.permissions import allowed, may_read_document
from opdesk.security.tokens import session_token, tenant_of, token_hash
from opdesk.uow import enter_tenant

DEFAULT_SHARE_DAYS = 7
MAX_SHARE_DAYS = 30
MIME_NAMES = {
    "application/pdf": "PDF",
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WebP",
}


class TooLarge(Exception):
    """The upload is over the size limit (answered 413)."""


def sniff(data: bytes) -> str | None:
    """The file's type from its first bytes; the name and the browser's claim are ignored."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def clean_filename(name: str | None) -> str:
    """Only the last path part, printable, at most 120 characters: shown, never used as a path."""
    base = re.split(r"[\\\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip(" .")
    return base[:120] or "document"


def _where(doc: Document) -> dict[str, object]:
    return {"tenant_id": doc.tenant_id, "table": "documents", "column": "content", "row_id": doc.id}


def upload(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    storage: Storage,
    *,
    patient_id: uuid.UUID,
    category: str,
    filename: str | None,
    data: bytes,
    tags: list[str],
    replaces: uuid.UUID | None = None,
    max_bytes: int,
) -> Document:
    """Store a new document, or a new version of ``replaces`` (its series gets version + 1)."""
    assert ctx.tenant_id is not None
    patients.get(session, patient_id)  # 404 for an unknown or foreign patient
    errors = []
    if category not in CATEGORIES:
        errors.append(FieldError("category", f"must be one of {', '.join(CATEGORIES)}"))
    if len(data) > max_bytes:
        raise TooLarge(f"file: larger than the {max_bytes // (1024 * 1024)} MB limit")
    mime = sniff(data)
    if not data:
        errors.append(FieldError("file", "is empty"))
    elif mime is None:
        errors.append(FieldError("file", "must be a PDF, JPEG, PNG or WebP file"))
    if errors:
        raise InvalidInput(errors)
    assert mime is not None
    series_id, version = _next_version(session, replaces, patient_id)
    doc = Document(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        series_id=series_id,
        owner_type="patient",
        owner_id=patient_id,
        category=category,
        version=version,
        mime=mime,
        size=len(data),
        checksum=hashlib.sha256(data).hexdigest(),
        filename=clean_filename(filename),
        created_by=ctx.actor_id,
        created_at=ctx.now(),
        tags=sorted({t.strip()[:40] for t in tags if t.strip()})[:20],
    )
    doc.storage_key = f"{doc.tenant_id}/{doc.id}"
    storage.put(doc.storage_key, cipher.encrypt(data, **_where(doc)))  # type: ignore[arg-type]
    _unstore_on_rollback(session, storage, doc.storage_key)
    session.add(doc)
    session.flush()
    audit.record(
        ctx,
        entity="documents",
        entity_id=doc.id,
        action="create",
        diff=audit.diff_of(
            {},
            {
                "ownerId": patient_id,
                "category": category,
                "version": version,
                "checksum": doc.checksum,
            },
        ),
    )
    return doc


def _unstore_on_rollback(session: Session, storage: Storage, key: str) -> None:
    """Remove the stored file if this transaction rolls back before its COMMIT is sent:
    then no row can name it. Once the COMMIT is on its way the row may exist whatever the
    client hears back, so the file stays; a file no row names is harmless, a row whose
    file is gone is not.
    """
    settled = False

    def commit_sent(*_: object) -> None:
        nonlocal settled
        settled = True

    def rolled_back(_session: Session) -> None:
        if not settled:
            storage.delete(key)

    event.listen(session.connection(), "commit", commit_sent, once=True)
    event.listen(session, "after_commit", commit_sent, once=True)
    event.listen(session, "after_rollback", rolled_back, once=True)


def _next_version(
    session: Session, replaces: uuid.UUID | None, patient_id: uuid.UUID
) -> tuple[uuid.UUID, int]:
    if replaces is None:
        return new_id(), 1
    previous = records.by_id(session, Document, replaces, lock=True)
    if previous.owner_id != patient_id:
        raise InvalidInput([FieldError("replaces", "belongs to another patient")])
    # Lock the series so two uploads cannot both become the same next version.
    session.execute(
        text("select pg_advisory_xact_lock(hashtextextended(:s, 0))"),
        {"s": str(previous.series_id)},
    )
    latest = session.execute(
        select(func.max(Document.version)).where(Document.series_id == previous.series_id)
    ).scalar_one()
    return previous.series_id, int(latest) + 1


def get(session: Session, document_id: uuid.UUID) -> Document:
    return records.by_id(session, Document, document_id)


def readable_categories(role: str | None) -> list[str]:
    """The document categories a member of staff with ``role`` may see."""
    return [c for c in CATEGORIES if may_read_document(role, c)]


def get_readable(session: Session, document_id: uuid.UUID, role: str | None) -> Document:
    """The document, if ``role`` may read its category; else 404, as for an unknown id.

    A result file attached to a lab or imaging order is a result: only ``orders:results``
    reads it (the desk, who attached it, does not).
    """
    doc = get(session, document_id)
    if not may_read_document(role, doc.category):
        raise NotFound(f"no document with id {document_id}")
    if not allowed(role, "orders:results") and is_order_result(session, doc.id):
        raise NotFound(f"no document with id {document_id}")
    return doc


def is_order_result(session: Session, document_id: uuid.UUID, *, unreviewed: bool = False) -> bool:
    """Whether the document is a result file of an order (``unreviewed``: of an order no
    doctor has reviewed yet, which its patient may not see).
    """
    from opdesk.clinical.models import Order, OrderAttachment

    stmt = select(OrderAttachment.document_id).where(OrderAttachment.document_id == document_id)
    if unreviewed:
        stmt = stmt.join(Order, Order.id == OrderAttachment.order_id).where(
            Order.status_timeline_reviewed_at.is_(None)
        )
    return session.execute(stmt.limit(1)).first() is not None


def check_category(role: str | None, category: str) -> None:
    """Staff file documents only in categories they may read themselves."""
    if category in CATEGORIES and not may_read_document(role, category):
        raise InvalidInput([FieldError("category", "is not one you may file; choose another")])


def content(cipher: FieldCipher, storage: Storage, doc: Document) -> bytes:
    return cipher.decrypt(storage.get(doc.storage_key), **_where(doc))  # type: ignore[arg-type]


def of_patient(
    session: Session, patient_id: uuid.UUID, *, categories: list[str] | None = None
) -> list[Document]:
    """Every version of the patient's documents, newest first within each series.

    Staff pass ``categories=readable_categories(role)``; the patient's own portal sees all.
    """
    stmt = select(Document).where(Document.owner_type == "patient", Document.owner_id == patient_id)
    if categories is not None:
        stmt = stmt.where(Document.category.in_(categories))
    else:  # the patient: no result file before a doctor has reviewed it
        from opdesk.clinical.models import Order, OrderAttachment

        unreviewed = (
            select(OrderAttachment.document_id)
            .join(Order, Order.id == OrderAttachment.order_id)
            .where(Order.status_timeline_reviewed_at.is_(None))
        )
        stmt = stmt.where(Document.id.not_in(unreviewed))
    return list(
        session.execute(
            stmt.order_by(Document.created_at.desc(), Document.version.desc())
        ).scalars()
    )


# --------------------------------------------------------------------------- share links


@dataclass(frozen=True)
class NewShareLink:
    link: ShareLink
    token: str


def share(
    session: Session, ctx: RequestContext, *, document_id: uuid.UUID, days: int = DEFAULT_SHARE_DAYS
) -> NewShareLink:
    """A link anyone holding it can open until it expires (at most 30 days) or is revoked."""
    if not 1 <= days <= MAX_SHARE_DAYS:
        raise InvalidInput([FieldError("days", f"must be between 1 and {MAX_SHARE_DAYS}")])
    doc = get(session, document_id)
    token = session_token(doc.tenant_id)
    now = ctx.now()
    link = ShareLink(
        tenant_id=doc.tenant_id,
        id=new_id(),
        document_id=doc.id,
        token_hash=token_hash(token),
        expires_at=now + timedelta(days=days),
        created_at=now,
        created_by=ctx.actor_id,
    )
    session.add(link)
    session.flush()
    audit.record(
        ctx,
        entity="documents_share_links",
        entity_id=link.id,
        action="create",
        diff=audit.diff_of({}, {"documentId": doc.id, "expiresAt": link.expires_at}),
    )
    return NewShareLink(link, token)


def get_link(session: Session, link_id: uuid.UUID) -> ShareLink:
    return records.by_id(session, ShareLink, link_id)


def revoke(session: Session, ctx: RequestContext, *, link_id: uuid.UUID) -> ShareLink:
    link = records.by_id(session, ShareLink, link_id, lock=True)
    states.transition(session, ctx, link, ShareLinkStatus.REVOKED, SHARE_LINK)
    return link


def open_link(session: Session, ctx: RequestContext, token: str) -> Document:
    """The document behind a live link; every opening is recorded. Else 404."""
    tenant_id = tenant_of(token)
    if tenant_id is None:
        raise NotFound("this link does not exist or has expired")
    enter_tenant(session, ctx, tenant_id)
    link = session.execute(
        select(ShareLink).where(ShareLink.token_hash == token_hash(token)).with_for_update()
    ).scalar_one_or_none()
    now = ctx.now()
    if link is None or link.status != ShareLinkStatus.ACTIVE or now >= link.expires_at:
        raise NotFound("this link does not exist or has expired")
    link.last_access_at = now
    audit.record(
        ctx,
        entity="documents_share_links",
        entity_id=link.id,
        action="state-transition",
        to_state="opened",
        diff={"added": {"documentId": str(link.document_id)}, "updated": {}, "removed": {}},
    )
    return records.by_id(session, Document, link.document_id)


def sweep_share_links(session: Session, ctx: RequestContext) -> int:
    """Delete the clinic's expired links (the seed's TTL index on shareLinks.expiresAt)."""
    removed = list(
        session.execute(
            delete(ShareLink).where(ShareLink.expires_at < ctx.now()).returning(ShareLink.id)
        ).scalars()
    )
    if removed:  # one event per sweep, naming the links
        audit.record(
            ctx,
            entity="documents_share_links",
            entity_id=None,
            action="delete",
            diff=audit.diff_of({"expiredLinks": sorted(str(i) for i in removed)}, {}),
        )
    return len(removed)


def live_links(session: Session, document_ids: list[uuid.UUID], now: datetime) -> list[ShareLink]:
    """Links of these documents that still open, newest first."""
    if not document_ids:
        return []
    return list(
        session.execute(
            select(ShareLink)
            .where(
                ShareLink.document_id.in_(document_ids),
                ShareLink.revoked_at.is_(None),
                ShareLink.expires_at > now,
            )
            .order_by(ShareLink.created_at.desc())
        ).scalars()
    )
