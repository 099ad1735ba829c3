"""Message pages: the admin's outbox (filter, read, retry), the clinic's message providers
(keys never shown back, a test message), the automation events list, and the dev inbox.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk.automation import service as automation
from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.errors import DomainError
from opdesk.identity.sessions import Principal
from opdesk.notifications import queries, service
from opdesk.notifications.models import CHANNELS, OutboxMessage, OutboxStatus
from opdesk.records import by_id
from opdesk.security.crypto import FieldCipher
from opdesk.security.permissions import DEV_ONLY
from opdesk.tenancy import service as tenancy
from opdesk.web.deps import Allow, Cipher, Ctx, DbSession, acting, services
from opdesk.web.pages import PostedForm, attempt, flash, render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV = (
    NavEntry("Messages", "/admin/outbox", "messages:read", "admin"),
    NavEntry("Message providers", "/admin/messaging", "messaging:configure", "admin"),
    NavEntry("Automation", "/admin/automation", "automation:read", "admin"),
    NavEntry("Dev inbox", "/dev/inbox", DEV_ONLY, "dev"),
)
Reader = Annotated[Principal, acting("messages:read")]
Retrier = Annotated[Principal, acting("messages:retry")]
Configurer = Annotated[Principal, acting("messaging:configure")]
EventReader = Annotated[Principal, acting("automation:read")]
EventRetrier = Annotated[Principal, acting("automation:retry")]

STATUS_LABELS = {
    OutboxStatus.PENDING: "Waiting",
    OutboxStatus.SENT: "Sent",
    OutboxStatus.DELIVERED: "Delivered",
    OutboxStatus.READ: "Read",
    OutboxStatus.FAILED: "Failed",
    OutboxStatus.CANCELLED: "Cancelled",
}
EVENT_LABELS = {
    EventStatus.PENDING: "Waiting",
    EventStatus.SUCCESS: "Done",
    EventStatus.FAILED: "Failed",
    EventStatus.CANCELLED: "Cancelled",
}


# --------------------------------------------------------------------------- outbox


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip()) if value.strip() else None
    except ValueError:
        return None


@router.get("/admin/outbox")
def outbox_page(
    request: Request,
    session: DbSession,
    cipher: Cipher,
    _: Reader,
    status: str = "",
    channel: str = "",
    template: str = "",
    patient: str = "",
    page: int = 1,
) -> Response:
    """The clinic's messages, newest first, each with the text as the patient got it."""
    wanted = queries.OutboxFilter(
        status=status if status in set(OutboxStatus) else "",
        channel=channel if channel in CHANNELS else "",
        template=template,
        patient_id=_uuid_or_none(patient),
        page=page,
    )
    found = queries.outbox(session, cipher, wanted)
    return render(
        request,
        "notifications/outbox.html",
        found=found,
        wanted=wanted,
        statuses=[(s.value, STATUS_LABELS[s]) for s in OutboxStatus],
        status_labels=STATUS_LABELS,
        channel_labels=service.CHANNEL_LABELS,
        channels=[(c, service.CHANNEL_LABELS[c]) for c in CHANNELS],
        templates=queries.templates_used(session),
        bad_patient=bool(patient.strip()) and wanted.patient_id is None,
    )


@router.post("/admin/outbox/{message_id}/retry")
def retry_message(
    request: Request,
    message_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    _: Retrier,
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    """Send a failed message again; asks first, saying to whom and what."""
    back = "/admin/outbox?status=failed"
    message = by_id(session, OutboxMessage, message_id)  # 404 before anything else
    if confirmed != "yes":
        row = queries._row(cipher, message, {})
        return render(
            request,
            "notifications/confirm.html",
            question="Send this message again?",
            about=f"{service.CHANNEL_LABELS[row.channel]} to {row.to}",
            facts=[
                f"It failed: {row.last_error or 'no reason recorded'}.",
                "It goes back in the queue and is sent within a minute, with its attempts "
                "counted afresh.",
                f"It says: “{row.text}”",
            ],
            action=f"/admin/outbox/{message_id}/retry",
            yes="Send again",
            back=back,
        )
    return attempt(
        request,
        session,
        lambda: service.retry(session, ctx, message_id),
        done=back,
        message="The message is back in the queue.",
    )


# --------------------------------------------------------------------------- providers


def _providers_page(
    request: Request,
    session: Session,
    cipher: FieldCipher,
    status: int = 200,
    **context: object,
) -> Response:
    ctx_tenant = request.state.principal.tenant_id
    slug = tenancy.get_tenant(session, ctx_tenant).slug
    base = services(request).settings.base_url.rstrip("/")
    return render(
        request,
        "notifications/providers.html",
        status,
        providers=service.providers(session, cipher),
        choices=service.provider_choices(),
        webhook_url=f"{base}/api/v1/webhooks/whatsapp/{slug}",
        **context,
    )


@router.get("/admin/messaging")
def providers_page(request: Request, session: DbSession, cipher: Cipher, _: Configurer) -> Response:
    """Each channel's provider and settings; secrets show only as "set · ends 1234"."""
    return _providers_page(request, session, cipher)


@router.post("/admin/messaging")
def save_provider(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
    _: Configurer,
) -> Response:
    """Save one channel's provider; a secret left blank keeps the one stored."""
    channel = form.get("channel", "")
    label = service.CHANNEL_LABELS.get(channel, channel)

    def refused(error: DomainError) -> Response:
        from opdesk.errors import InvalidInput

        errors = (
            {e.field: e.reason for e in error.errors} if isinstance(error, InvalidInput) else {}
        )
        return _providers_page(
            request,
            session,
            cipher,
            422 if errors else error.status,
            editing=channel,
            errors=errors,
            problem=str(error) if not errors else None,
            values={k: v for k, v in form.items() if not _is_secret(channel, k)},
        )

    return attempt(
        request,
        session,
        lambda: service.save_provider(
            session,
            ctx,
            cipher,
            channel=channel,
            values=form,
            templates=form.get("templates", ""),
            enabled=form.get("enabled") == "on",
        ),
        done=lambda _row: flash(request, "/admin/messaging", f"{label} settings saved."),
        failed=refused,
    )


def _is_secret(channel: str, name: str) -> bool:
    choice = service.provider_choices().get(channel)
    return choice is not None and any(f.secret and f.name == name for f in choice.fields)


@router.post("/admin/messaging/test")
def send_test_message(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    _: Configurer,
    channel: Annotated[str, Form()] = "",
    to: Annotated[str, Form()] = "",
) -> Response:
    """Queue a test message through the channel's provider; the outbox shows how it went."""
    label = service.CHANNEL_LABELS.get(channel, channel)
    return attempt(
        request,
        session,
        lambda: service.send_test(session, ctx, cipher, channel=channel, to=to),
        done=lambda m: flash(
            request,
            f"/admin/outbox?template=test-message&channel={channel}",
            f"A test {label} message is queued. Its status shows here within a minute.",
        ),
        failed="/admin/messaging",
    )


# --------------------------------------------------------------------------- automation


@router.get("/admin/automation")
def automation_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: EventReader,
    status: str = "",
    rule: str = "",
) -> Response:
    """The clinic's scheduled work: what runs next, what failed and why."""
    # One more than shown, to say when the list is cut short.
    events = queries.automation_events(
        session, status=status, rule=rule, now=ctx.now(), limit=queries.EVENTS_SHOWN + 1
    )
    return render(
        request,
        "notifications/automation.html",
        events=events[: queries.EVENTS_SHOWN],
        more=len(events) > queries.EVENTS_SHOWN,
        rules=queries.rules_used(session),
        statuses=[(s.value, EVENT_LABELS[s]) for s in EventStatus],
        status_labels=EVENT_LABELS,
        wanted={"status": status, "rule": rule},
    )


@router.post("/admin/automation/{event_id}/retry")
def retry_event(
    request: Request,
    event_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: EventRetrier,
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    back = "/admin/automation?status=failed"
    event = by_id(session, AutomationEvent, event_id)  # 404 before anything else
    if confirmed != "yes":
        return render(
            request,
            "notifications/confirm.html",
            question="Run this job again?",
            about=f"{event.rule} for {event.entity_ref_type} {str(event.entity_ref_id)[:8]}",
            facts=[
                f"It failed after {event.attempts} attempts: "
                f"{event.last_error or 'no reason recorded'}.",
                "It runs again within a minute, with its attempts counted afresh.",
            ],
            action=f"/admin/automation/{event_id}/retry",
            yes="Run again",
            back=back,
        )
    return attempt(
        request,
        session,
        lambda: automation.retry(session, ctx, event_id),
        done=back,
        message="The job will run again shortly.",
    )


# --------------------------------------------------------------------------- dev inbox


@router.get("/dev/inbox")
def dev_inbox(
    request: Request,
    session: DbSession,
    _: Annotated[Principal | None, Depends(Allow(DEV_ONLY))],
    cipher: Cipher,
) -> Response:
    """Every clinic's newest outbox messages, as rendered; exists only with OPDESK_ENV=dev."""
    items = service.dev_inbox(session, cipher)
    return render(request, "notifications/dev_inbox.html", items=items)
