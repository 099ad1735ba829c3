"""The gateway's calls to OPDesk, received: routed to their clinic by facility id, checked
(signed by the gateway, not seen before), kept, and handed to the worker.

The gateway expects a quick 202 and the real answer later, by a call back to it, so a
callback's work never runs in the request: the call is stored (encrypted) once per
``REQUEST-ID`` and an automation event names the rule that answers it. A repeat of the
same REQUEST-ID (the gateway retries calls it got no answer to) finds the row and does
nothing; a forged call never gets past :func:`checked`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.abdm import hub
from opdesk.abdm.callbacks import CallbackMeta, CallbackRefused, KeysUnavailable, verify_callback
from opdesk.abdm.gateway import GatewayError
from opdesk.abdm.hub import Link
from opdesk.abdm.messages import MessageError
from opdesk.abdm.models import AbdmCallback, AbdmFacility
from opdesk.abdm.settings import Abdm
from opdesk.automation import service as automation
from opdesk.automation.models import AutomationEvent
from opdesk.automation.rules import AfterCommit, Permanent, cipher_of
from opdesk.config import Settings
from opdesk.context import RequestContext
from opdesk.db import Database
from opdesk.errors import DomainError, FieldError, InvalidInput, NotFound, Unauthorized
from opdesk.security.crypto import FieldCipher

ENTITY = "abdm_callbacks"
# Which worker rule answers each kind of call (abdm.share and abdm.sharing register them;
# the web process only names them, so it need not import the rules).
SHARE_RULE = "abdm.share"
DISCOVER_RULE = "abdm.discover"
CONSENT_RULE = "abdm.consent-notify"
REQUEST_RULE = "abdm.hi-request"
INIT_RULE = "abdm.link-init"
CONFIRM_RULE = "abdm.link-confirm"
TOKEN_RULE = "abdm.link-token"  # noqa: S105 (a rule's name)
LINKED_RULE = "abdm.linked"
RULES: dict[str, str] = {
    "patient-share": SHARE_RULE,
    "discover": DISCOVER_RULE,
    "consent-notify": CONSENT_RULE,
    "hi-request": REQUEST_RULE,
    "link-init": INIT_RULE,
    "link-confirm": CONFIRM_RULE,
    "on-generate-token": TOKEN_RULE,
    "on-link-carecontext": LINKED_RULE,
}


class KeysMissing(DomainError):
    """The gateway's keys could not be fetched: the call cannot be checked now. 503, so
    the gateway sends it again later."""

    status = 503
    title = "Service unavailable"


def not_here(facility_id: str) -> NotFound:
    return NotFound(f"No clinic on this OPDesk is connected to ABDM as {facility_id}")


def clinic_of_facility(session: Session, facility_id: str) -> uuid.UUID:
    """The clinic that claims ``facility_id``, or 404 (whether it is switched on is the
    clinic's own settings' to say)."""
    found = session.scalar(
        select(AbdmFacility.clinic_id).where(AbdmFacility.facility_id == facility_id.upper())
    )
    if found is None:
        raise not_here(facility_id)
    return found


def checked(
    headers: Iterable[tuple[str, str]], link: Link, now: datetime, facility_id: str
) -> CallbackMeta:
    """The call's headers and bearer token verified, or 401 saying why (503 when the keys
    to check it with cannot be had)."""
    try:
        meta = verify_callback(headers, link.keys, now)
    except KeysUnavailable as exc:
        raise KeysMissing(f"The gateway's keys are unavailable: {exc.reason}") from exc
    except CallbackRefused as exc:
        raise Unauthorized(f"Not a call from the ABDM gateway: {exc.reason}") from exc
    if meta.hip_id is not None and meta.hip_id.upper() != facility_id:
        raise Unauthorized("X-HIP-ID names another facility than the call was routed to")
    return meta


def parsed(raw: bytes, parse: Callable[[Any], Any]) -> Any:
    """The body as ``parse`` reads it, or 422 naming the first wrong field."""
    try:
        return parse(json.loads(raw))
    except ValueError as exc:
        if isinstance(exc, MessageError):
            raise InvalidInput([FieldError(exc.field, exc.reason)]) from exc
        raise InvalidInput([FieldError("body", "is not JSON")]) from exc


def receive(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    kind: str,
    meta: CallbackMeta,
    raw: bytes,
) -> bool:
    """Keep the call and schedule its answer; False when this REQUEST-ID came before."""
    tenant_id = ctx.tenant_id
    assert tenant_id is not None, "a callback is received for a clinic"
    sealed = cipher.encrypt(
        raw, tenant_id=tenant_id, table=ENTITY, column="body", row_id=meta.request_id
    )
    kept = session.scalar(
        insert(AbdmCallback)
        .values(
            tenant_id=tenant_id,
            request_id=meta.request_id,
            kind=kind,
            body=sealed,
            received_at=ctx.now(),
        )
        .on_conflict_do_nothing()
        .returning(AbdmCallback.request_id)
    )
    if kept is None:
        return False
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=meta.request_id,
        action="create",
        diff={"added": {"kind": kind}, "updated": {}, "removed": {}},
    )
    automation.schedule(
        session,
        ctx,
        rule=RULES[kind],
        entity_type=ENTITY,
        entity_id=meta.request_id,
        when=ctx.now(),
        dedupe_key=f"abdm:{meta.request_id}",
    )
    return True


def body_of(
    session: Session, cipher: FieldCipher, request_id: uuid.UUID
) -> tuple[AbdmCallback, Any]:
    """A kept call and its body, decoded (404 when it is not this clinic's)."""
    row = session.scalar(select(AbdmCallback).where(AbdmCallback.request_id == request_id))
    if row is None:
        raise NotFound("No such gateway call")
    plain = cipher.decrypt(
        row.body, tenant_id=row.tenant_id, table=ENTITY, column="body", row_id=row.request_id
    )
    return row, json.loads(plain)


Message = TypeVar("Message")


def received(
    session: Session, event: AutomationEvent, parse: Callable[[Any], Message]
) -> tuple[FieldCipher, AbdmCallback, Message]:
    """What a rule answering a kept call starts from: the worker's cipher, the call
    ``event`` names, and its body as ``parse`` reads it."""
    cipher = cipher_of(session)
    call, body = body_of(session, cipher, event.entity_ref_id)
    return cipher, call, parse(body)


def answer_later(clinic: Abdm, path: str, body: dict[str, Any]) -> AfterCommit:
    """The worker's answer to a kept call: sent to the gateway at ``path`` once the rule's
    writes are committed (and again if the worker retries the rule)."""

    def send(_db: Database, _cipher: FieldCipher, settings: Settings) -> None:
        try:
            hub.link_for(settings, clinic).gateway.post(
                path, body, headers={"X-HIP-ID": clinic.facility_id}
            )
        except GatewayError as exc:
            if not exc.retryable:
                # The gateway refused this answer itself (its body, or a call it no longer
                # waits for): sending it again would be refused again.
                raise Permanent(str(exc)) from exc
            raise  # an outage, or "too many": the worker tries again (after Retry-After)

    return send


def finished(ctx: RequestContext, row: AbdmCallback, outcome: str) -> None:
    """Mark a kept call done, with how it ended."""
    row.processed_at = ctx.now()
    row.outcome = outcome
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=row.request_id,
        action="update",
        diff={"added": {"outcome": outcome}, "updated": {}, "removed": {}},
    )
