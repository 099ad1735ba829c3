"""Path loaders for billing's routes (another clinic's id, or an unknown one, is 404), and
what a route needs to call the gateway after its commit.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Request
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.billing import gateway, outside, prepay
from opdesk.billing.gateway import Gateways
from opdesk.billing.models import GatewayEvent, Invoice, Payment
from opdesk.context import RequestContext
from opdesk.db import Database
from opdesk.security.crypto import FieldCipher
from opdesk.web.deps import AppSettings, DbSession


def invoice_in_path(invoice_id: uuid.UUID, session: DbSession) -> Invoice:
    return records.by_id(session, Invoice, invoice_id)


def payment_in_path(payment_id: uuid.UUID, session: DbSession) -> Payment:
    return records.by_id(session, Payment, payment_id)


def gateway_event_in_path(gateway_event_id: uuid.UUID, session: DbSession) -> GatewayEvent:
    return records.by_id(session, GatewayEvent, gateway_event_id)


InvoiceInPath = Annotated[Invoice, Depends(invoice_in_path)]
GatewayEventInPath = Annotated[GatewayEvent, Depends(gateway_event_in_path)]
PaymentInPath = Annotated[Payment, Depends(payment_in_path)]


async def _gateways(settings: AppSettings) -> Gateways:
    return Gateways(settings.razorpay_base_url, settings.razorpay_timeout_seconds)


async def _database(request: Request) -> Database:
    """For the work after a request's commit (a gateway call, then its answer recorded)."""
    db: Database = request.app.state.db
    return db


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: a webhook's signature covers these bytes."""
    return await request.body()


GatewaysDep = Annotated[Gateways, Depends(_gateways)]
DatabaseDep = Annotated[Database, Depends(_database)]
RawBody = Annotated[bytes, Depends(raw_body)]


class PayAhead:
    """Opens a payment link for a patient: the pending payment in the request's
    transaction, Razorpay asked once it has committed (a background task of the response).
    """

    def __init__(self, db: DatabaseDep, gateways: GatewaysDep, tasks: BackgroundTasks) -> None:
        self.db, self.gateways, self.tasks = db, gateways, tasks

    def link(
        self, session: Session, ctx: RequestContext, cipher: FieldCipher, appointment_id: uuid.UUID
    ) -> None:
        """For a booking that waits for its payment (its charge issued here once)."""
        self._ask(ctx, cipher, prepay.open_payment(session, ctx, cipher, appointment_id))

    def balance(
        self, session: Session, ctx: RequestContext, cipher: FieldCipher, invoice: Invoice
    ) -> None:
        """For what is still due on an issued invoice."""
        self._ask(ctx, cipher, gateway.open_link(session, ctx, cipher, invoice))

    def _ask(self, ctx: RequestContext, cipher: FieldCipher, opened: gateway.LinkRequest) -> None:
        self.tasks.add_task(
            outside.make_link, self.db, outside.detached(ctx), cipher, self.gateways, opened
        )


PayAheadDep = Annotated[PayAhead, Depends()]
