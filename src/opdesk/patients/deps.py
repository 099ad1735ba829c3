"""What the patient routers (and those of other domains) share: the patient in the path."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from opdesk.patients import service
from opdesk.patients.models import Patient
from opdesk.web.deps import DbSession


def patient_in_path(patient_id: uuid.UUID, session: DbSession) -> Patient:
    """The patient named in the path, resolved before the body is read: a foreign or
    unknown id answers 404 whatever the body holds.
    """
    return service.get(session, patient_id)


PatientInPath = Annotated[Patient, Depends(patient_in_path)]
