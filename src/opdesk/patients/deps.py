"""What the patient routers (and those of other domains) share: the patient in the path,
and the family a signed-in patient may see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from opdesk.errors import NotFound
from opdesk.patients import queries, service
from opdesk.patients.models import Patient
from opdesk.web.deps import Ctx, DbSession, signed_in


def patient_in_path(patient_id: uuid.UUID, session: DbSession) -> Patient:
    """The patient named in the path, resolved before the body is read: a foreign or
    unknown id answers 404 whatever the body holds.
    """
    return service.get(session, patient_id)


PatientInPath = Annotated[Patient, Depends(patient_in_path)]


@dataclass(frozen=True)
class Family:
    """The patient records a signed-in patient may see: their own and their dependents'.

    Every portal read and write of a patient's record goes through this one scope (inside
    a clinic, row-level security cannot tell one patient from another).
    """

    user_id: uuid.UUID
    patient_ids: frozenset[uuid.UUID]

    def check(self, patient_id: uuid.UUID) -> None:
        """404, as for an unknown id, unless the record belongs to this family."""
        if patient_id not in self.patient_ids:
            raise NotFound(f"no patient with id {patient_id}")

    def patient(self, session: Session, patient_id: uuid.UUID) -> Patient:
        self.check(patient_id)
        return service.get(session, patient_id)

    @property
    def ids(self) -> list[uuid.UUID]:
        return sorted(self.patient_ids)


def family_of(request: Request, session: DbSession, ctx: Ctx) -> Family:
    """The signed-in patient's family, read once per request.

    The route declares ``portal:self`` itself (listed before this), so only a signed-in
    patient gets here.
    """
    who = signed_in(request.state.principal)
    if who.tenant_id != ctx.tenant_id:  # signed in at another clinic than the page's
        raise NotFound("sign in to this clinic first")
    own = queries.of_portal_user(session, who.user_id)
    return Family(who.user_id, frozenset(p.id for p in own))


MyFamily = Annotated[Family, Depends(family_of)]
