"""Signing a consent with this deployment's cipher, storage and fonts (desk, portal, API)."""

from __future__ import annotations

import uuid

from fastapi import Request
from sqlalchemy.orm import Session

from opdesk.consents import service
from opdesk.consents.models import Consent
from opdesk.context import RequestContext


def sign_here(
    request: Request,
    session: Session,
    ctx: RequestContext,
    *,
    patient_id: uuid.UUID,
    type_: str,
    method: str,
) -> Consent:
    """Sign with this app's cipher, document storage and font cache (desk, portal, API)."""
    return service.sign(
        session,
        ctx,
        request.app.state.cipher,
        request.app.state.storage,
        patient_id=patient_id,
        type_=type_,
        method=method,
        fonts=request.app.state.settings.data_dir / "fonts",
    )
