"""What the privacy routers share: the archive as a download."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.documents.storage import Storage
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.privacy import export
from opdesk.security.crypto import FieldCipher
from opdesk.web.deps import services


def fonts(request: Request) -> Path:
    return services(request).settings.data_dir / "fonts"


def download(
    request: Request,
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    storage: Storage,
    patient: Patient,
) -> Response:
    """The patient's archive as a ZIP download no cache keeps (audited by ``export``)."""
    data = export.export(session, ctx, cipher, storage, patient=patient, fonts=fonts(request))
    name = export.file_name(patient, patients.today_at_clinic(session, ctx))
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
