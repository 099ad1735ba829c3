"""The dev inbox: outgoing messages (OTP codes, reminders) shown in development."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from opdesk.identity.sessions import Principal
from opdesk.notifications import service
from opdesk.security.permissions import DEV_ONLY
from opdesk.web.deps import Allow, Cipher, DbSession
from opdesk.web.pages import render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("Dev inbox", "/dev/inbox", DEV_ONLY, "dev"),)


@router.get("/dev/inbox")
def dev_inbox(
    request: Request,
    session: DbSession,
    _: Annotated[Principal | None, Depends(Allow(DEV_ONLY))],
    cipher: Cipher,
) -> Response:
    """Every clinic's newest outbox messages; exists only with OPDESK_ENV=dev."""
    items = service.dev_inbox(session, cipher)
    return render(request, "notifications/dev_inbox.html", items=items)
