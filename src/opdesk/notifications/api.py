"""REST for messages: the admin's outbox (filter, read, retry), automation events (list,
retry) and the clinic's message providers (settings, a test message), the twins of the
pages in ``notifications.web`` through the same queries and services; and the
providers' callbacks.

Provider callbacks (WhatsApp status webhooks, one address per clinic): Meta calls them,
not a browser: no session, no cookie, no CSRF token. They are public routes; what makes
a request count is the signature over its raw body, checked with the clinic's app secret
before anything is read (``notifications.webhooks``).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from opdesk.automation import service as automation
from opdesk.automation.models import EventStatus
from opdesk.identity.sessions import Principal
from opdesk.notifications import queries, service, webhooks
from opdesk.notifications.models import OutboxStatus
from opdesk.notifications.schemas import (
    Channel,
    EventItem,
    EventList,
    OutboxItem,
    OutboxList,
    ProviderOut,
    ProviderUpdate,
    SendTest,
)
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.tenancy import service as tenancy
from opdesk.uow import enter_tenant
from opdesk.web.deps import Anyone, Cipher, Ctx, DbSession, acting

hooks = APIRouter(include_in_schema=False)
admin = APIRouter(tags=["messages"], responses=PROBLEM_RESPONSES)

Reader = Annotated[Principal, acting("messages:read")]
Retrier = Annotated[Principal, acting("messages:retry")]
Configurer = Annotated[Principal, acting("messaging:configure")]
EventReader = Annotated[Principal, acting("automation:read")]
EventRetrier = Annotated[Principal, acting("automation:retry")]


# --------------------------------------------------------------------------- outbox


@admin.get("/outbox", response_model=OutboxList)
def list_outbox(
    session: DbSession,
    cipher: Cipher,
    _: Reader,
    status: OutboxStatus | None = None,
    channel: Channel | None = None,
    template: Annotated[str, Query(max_length=100)] = "",
    patient_id: Annotated[uuid.UUID | None, Query(alias="patientId")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> OutboxList:
    """The clinic's messages, newest first, each with its text as the patient got it
    (a sign-in code redacted once sent); filtered as asked, one page at a time.
    """
    wanted = queries.OutboxFilter(
        status=status or "",
        channel=channel or "",
        template=template.strip(),
        patient_id=patient_id,
        page=page,
    )
    return OutboxList.of(queries.outbox(session, cipher, wanted))


@admin.get("/outbox/{message_id}", response_model=OutboxItem)
def get_outbox_message(
    message_id: uuid.UUID, session: DbSession, cipher: Cipher, _: Reader
) -> OutboxItem:
    return OutboxItem.of(queries.outbox_message(session, cipher, message_id))


@admin.post("/outbox/{message_id}/retry", response_model=OutboxItem)
def retry_outbox_message(
    message_id: uuid.UUID, session: DbSession, ctx: Ctx, cipher: Cipher, _: Retrier
) -> OutboxItem:
    """Send a failed message again: pending, due now, its attempts counted afresh
    (409 unless it failed).
    """
    service.retry(session, ctx, message_id)
    return OutboxItem.of(queries.outbox_message(session, cipher, message_id))


# --------------------------------------------------------------------------- automation


@admin.get("/automation/events", response_model=EventList, tags=["automation"])
def list_automation_events(
    session: DbSession,
    ctx: Ctx,
    _: EventReader,
    status: EventStatus | None = None,
    rule: Annotated[str, Query(max_length=100)] = "",
) -> EventList:
    """The clinic's scheduled work: failed first (they need someone), then what is still
    to run, soonest first, then what has run, latest first; at most
    100 (``more`` says there were more).
    """
    found = queries.automation_events(
        session,
        status=status or "",
        rule=rule.strip(),
        now=ctx.now(),
        limit=queries.EVENTS_SHOWN + 1,
    )
    return EventList(
        items=[EventItem.of(e) for e in found[: queries.EVENTS_SHOWN]],
        more=len(found) > queries.EVENTS_SHOWN,
    )


@admin.post("/automation/events/{event_id}/retry", response_model=EventItem, tags=["automation"])
def retry_automation_event(
    event_id: uuid.UUID, session: DbSession, ctx: Ctx, _: EventRetrier
) -> EventItem:
    """Run a failed event again: pending, due now, its attempts counted afresh (409 unless
    it failed).
    """
    automation.retry(session, ctx, event_id)
    return EventItem.of(queries.automation_event(session, event_id, now=ctx.now()))


# --------------------------------------------------------------------------- providers


def channel_in_path(channel: Annotated[str, Path()]) -> str:
    """The channel a path names (404 for any other); declared after the route's action,
    so a caller who may not act is told so before anything about the channel.
    """
    return service.provider_choice(channel).channel


InPath = Annotated[str, Depends(channel_in_path)]


@admin.get("/messaging/providers", response_model=list[ProviderOut])
def list_providers(session: DbSession, cipher: Cipher, _: Configurer) -> list[ProviderOut]:
    """Each channel's provider and settings. A secret is never given back: only whether
    it is set and, for one longer than eight characters, its last four.
    """
    return [ProviderOut.of(v) for v in service.providers(session, cipher)]


@admin.put("/messaging/providers/{channel}", response_model=ProviderOut)
def put_provider(
    _: Configurer,
    channel: InPath,
    body: ProviderUpdate,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> ProviderOut:
    """Set the channel's provider, as the page saves it: a secret left out keeps the one
    stored; 422 names each setting that is missing (to enable) or unknown.
    """
    service.refuse_unknown_settings(channel, body.settings)
    service.save_provider(
        session,
        ctx,
        cipher,
        channel=channel,
        values=body.values(),
        templates=body.templates_json(),
        enabled=body.enabled,
    )
    (view,) = (v for v in service.providers(session, cipher) if v.channel == channel)
    return ProviderOut.of(view)


@admin.post("/messaging/providers/{channel}/test", response_model=OutboxItem, status_code=202)
def send_test_message(
    _: Configurer,
    channel: InPath,
    body: SendTest,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> OutboxItem:
    """Queue a test message to ``to`` through the channel's provider; the worker sends it
    like any other, and the outbox (``GET /outbox/{id}``) shows how it went.
    """
    message = service.send_test(session, ctx, cipher, channel=channel, to=body.to)
    return OutboxItem.of(queries.outbox_message(session, cipher, message.id))


# --------------------------------------------------------------------------- webhooks


async def raw_body(request: Request) -> bytes:
    """The body exactly as it came (the signature covers these bytes, not a re-encoding)."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


@hooks.get("/webhooks/whatsapp/{slug}")
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


@hooks.post("/webhooks/whatsapp/{slug}")
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


router = APIRouter()
router.include_router(admin)
router.include_router(hooks)
