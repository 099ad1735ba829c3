"""A patient's documents, share links and consents."""

from __future__ import annotations

from pathlib import Path
from tempfile import mkdtemp

from opdesk.consents import service as consents
from opdesk.consents.models import Consent
from opdesk.db import Database
from opdesk.documents import service as documents
from opdesk.documents.models import Document, ShareLink
from opdesk.documents.storage import LocalStorage
from opdesk.identity.service import Identity
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for
from tests.factories.people import make_patient


def make_document(db: Database, ident: Identity, tenant: Tenant) -> Document:
    """A small PDF uploaded for a new patient."""
    ctx = ctx_for(tenant.id)
    patient_id = make_patient(db, ident, tenant).id
    with transaction(db, ctx) as session:
        return documents.upload(
            session,
            ctx,
            ident.cipher,
            LocalStorage(Path(mkdtemp())),
            patient_id=patient_id,
            category="other",
            filename="x.pdf",
            data=b"%PDF-1.4 test",
            tags=[],
            max_bytes=1024,
        )


def make_share_link(db: Database, ident: Identity, tenant: Tenant) -> ShareLink:
    """A share link to a new document."""
    document_id = make_document(db, ident, tenant).id
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return documents.share(session, ctx, document_id=document_id).link


def make_consent(db: Database, ident: Identity, tenant: Tenant) -> Consent:
    """A treatment consent signed in the clinic by a new patient (the clinic's template
    is added first).
    """
    patient_id = make_patient(db, ident, tenant).id
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        text = consents.add_template(
            session, ctx, type_="treatment", title="Treatment", body="I agree to be treated here."
        )
        return consents.sign(
            session,
            ctx,
            ident.cipher,
            LocalStorage(Path(mkdtemp())),
            patient_id=patient_id,
            type_="treatment",
            method="in-clinic",
            fonts=Path(mkdtemp()),
            version=text.version,
        )
