"""Signing a consent with this deployment's cipher, storage and fonts (desk, portal, API),
and the consent a signed-in patient names in the path.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from opdesk.consents import service
from opdesk.consents.models import Consent
from opdesk.context import RequestContext
from opdesk.patients.deps import MyFamily
from opdesk.web.deps import DbSession, services


def sign_here(
    request: Request,
    session: Session,
    ctx: RequestContext,
    *,
    patient_id: uuid.UUID,
    type_: str,
    method: str,
    version: int,
    text_hash: str | None = None,
    language: str | None = None,
) -> Consent:
    """Sign ``version`` of the text (it must be the one in force), in ``language``, with
    this app's cipher, document storage and font cache (desk, portal, API).
    """
    built = services(request)
    return service.sign(
        session,
        ctx,
        built.cipher,
        built.storage,
        patient_id=patient_id,
        type_=type_,
        method=method,
        fonts=built.settings.data_dir / "fonts",
        version=version,
        text_hash=text_hash,
        language=language,
    )


def my_consent(consent_id: uuid.UUID, session: DbSession, family: MyFamily) -> Consent:
    """A consent of the signed-in patient or their family, else 404."""
    consent = service.get(session, consent_id)
    family.check(consent.patient_id)
    return consent


MyConsent = Annotated[Consent, Depends(my_consent)]
