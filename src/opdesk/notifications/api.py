"""Provider callbacks: WhatsApp status webhooks, one address per clinic.

Meta calls them, not a browser: no session, no cookie, no CSRF token. They are public
routes; what makes a request count is the signature over its raw body, checked with the
clinic's app secret before anything is read (``notifications.webhooks``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from opdesk.notifications import webhooks
from opdesk.tenancy import service as tenancy
from opdesk.uow import enter_tenant
from opdesk.web.deps import Anyone, Cipher, Ctx, DbSession

router = APIRouter(include_in_schema=False)


async def raw_body(request: Request) -> bytes:
    """The body exactly as it came (the signature covers these bytes, not a re-encoding)."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


@router.get("/webhooks/whatsapp/{slug}")
def whatsapp_subscribe(
    slug: str,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    _: Anyone,
    mode: Annotated[str, Query(alias="hub.mode")] = "",
    token: Annotated[str, Query(alias="hub.verify_token")] = "",
    challenge: Annotated[str, Query(alias="hub.challenge")] = "",
) -> Response:
    enter_tenant(session, ctx, tenancy.get_by_slug(session, slug).id)
    answer = webhooks.verify_subscription(
        session, cipher, mode=mode, token=token, challenge=challenge
    )
    return PlainTextResponse(answer)


@router.post("/webhooks/whatsapp/{slug}")
def whatsapp_status(
    slug: str,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    raw: RawBody,
    _: Anyone,
) -> Response:
    enter_tenant(session, ctx, tenancy.get_by_slug(session, slug).id)
    changed = webhooks.receive(
        session,
        ctx,
        cipher,
        raw=raw,
        signature=request.headers.get("x-hub-signature-256"),
    )
    return JSONResponse({"changed": changed})
