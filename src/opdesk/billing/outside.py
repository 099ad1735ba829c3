"""The gateway's second and third phases, run after the first phase's transaction has
committed: ask Razorpay (no transaction open while it answers), then record its answer in
a transaction of its own.

The first phase (``gateway.open_link`` / ``gateway.open_refund``) wrote a pending row, so
a crash between the phases leaves a row a person can see, never money moved unrecorded.
A refund asked again sends the same receipt as Razorpay's idempotency key and gets the
first refund back, so these steps are safe to repeat.
"""

from __future__ import annotations

from opdesk.billing import gateway, reminders
from opdesk.billing.razorpay_client import GatewayError
from opdesk.context import RequestContext
from opdesk.db import Database
from opdesk.security.crypto import FieldCipher
from opdesk.uow import transaction


def detached(ctx: RequestContext) -> RequestContext:
    """The request's context for work done after its transaction (same actor and clinic)."""
    return RequestContext(
        tenant_id=ctx.tenant_id,
        actor_id=ctx.actor_id,
        role=ctx.role,
        request_id=ctx.request_id,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        clock=ctx.clock,
    )


def make_link(
    db: Database,
    ctx: RequestContext,
    cipher: FieldCipher,
    gateways: gateway.Gateways,
    request: gateway.LinkRequest,
    *,
    send: bool = True,
) -> None:
    """Ask Razorpay for the link, then record its address (and send it to the patient
    unless ``send`` is false) or the failure.
    """
    with transaction(db, ctx) as session:
        client = gateways.client(gateway.account_of(session, cipher, request.tenant_id))
    try:
        link = gateway.ask_for_link(client, request)
    except GatewayError as error:
        with transaction(db, ctx) as session:
            gateway.link_failed(session, ctx, request.payment_id, gateway.unavailable(error).detail)
        return
    with transaction(db, ctx) as session:
        payment = gateway.record_link(session, ctx, request.payment_id, link)
        if send:
            reminders.send_link(session, ctx, cipher, payment)


def make_refund(
    db: Database,
    ctx: RequestContext,
    cipher: FieldCipher,
    gateways: gateway.Gateways,
    request: gateway.RefundRequest,
    *,
    retry: bool = False,
) -> None:
    """Ask Razorpay for the refund, then record its id (settled if already processed) or
    the failure. With ``retry`` (the worker), a failure that may pass (timeout, 5xx) is
    raised instead, and the refund asked again later with the same key.
    """
    with transaction(db, ctx) as session:
        client = gateways.client(gateway.account_of(session, cipher, request.tenant_id))
    try:
        made = gateway.ask_for_refund(client, request)
    except GatewayError as error:
        if retry and error.retryable:
            raise
        with transaction(db, ctx) as session:
            gateway.refund_failed(
                session, ctx, request.refund_id, gateway.unavailable(error).detail
            )
        return
    with transaction(db, ctx) as session:
        gateway.record_refund(session, ctx, request.refund_id, made.id, made.status == "processed")


def cancel_links(
    db: Database,
    ctx: RequestContext,
    cipher: FieldCipher,
    gateways: gateway.Gateways,
    link_ids: list[str],
) -> None:
    """Cancel links we gave up on, so nobody pays them later. A link already paid or
    expired is left as it is (a late payment reaches the webhook and is kept for review).
    """
    if not link_ids or ctx.tenant_id is None:
        return
    with transaction(db, ctx) as session:
        client = gateways.client(gateway.account_of(session, cipher, ctx.tenant_id))
    for link_id in link_ids:
        try:
            client.cancel_payment_link(link_id)
        except GatewayError as error:
            if error.retryable:
                raise
