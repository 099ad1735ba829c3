"""Path loaders for billing's routes: another clinic's id, or an unknown one, is 404."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from opdesk import records
from opdesk.billing.models import Invoice, Payment
from opdesk.web.deps import DbSession


def invoice_in_path(invoice_id: uuid.UUID, session: DbSession) -> Invoice:
    return records.by_id(session, Invoice, invoice_id)


def payment_in_path(payment_id: uuid.UUID, session: DbSession) -> Payment:
    return records.by_id(session, Payment, payment_id)


InvoiceInPath = Annotated[Invoice, Depends(invoice_in_path)]
PaymentInPath = Annotated[Payment, Depends(payment_in_path)]
