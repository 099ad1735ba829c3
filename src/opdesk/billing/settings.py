"""A clinic's billing settings: the UPI id its QR codes pay, its Razorpay account (the key
secret and webhook secret encrypted), and whether online bookings are paid for ahead.

A clinic with no row has defaults: no UPI QR, no payment links, no prepayment.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.billing.models import BillingSettings, settings_row_id
from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput
from opdesk.security.crypto import FieldCipher

# A UPI id (VPA): a handle of letters, digits, dots, hyphens and underscores, "@", a bank's
# name of letters (e.g. clinic.name@okaxis).
VPA = re.compile(r"^[A-Za-z0-9._-]{2,256}@[A-Za-z][A-Za-z0-9.-]{1,63}$")
RAZORPAY_KEY_ID = re.compile(r"^rzp_(test|live)_[A-Za-z0-9]{6,32}$")


@dataclass(frozen=True)
class Razorpay:
    key_id: str
    key_secret: str
    webhook_secret: str


@dataclass(frozen=True)
class Billing:
    """The settings as the services use them (decrypted)."""

    upi_vpa: str | None = None
    upi_payee_name: str | None = None
    razorpay: Razorpay | None = None
    prepay_online: bool = False
    prepay_minutes: int = 15
    consult_sac: str = "999312"


def _row(session: Session, tenant_id: uuid.UUID) -> BillingSettings | None:
    return session.scalar(select(BillingSettings).where(BillingSettings.tenant_id == tenant_id))


def of(session: Session, cipher: FieldCipher, tenant_id: uuid.UUID) -> Billing:
    row = _row(session, tenant_id)
    if row is None:
        return Billing()
    razorpay = None
    if row.razorpay_key_id and row.razorpay_secrets:
        secrets = json.loads(
            cipher.decrypt_str(
                row.razorpay_secrets,
                tenant_id=tenant_id,
                table="billing_settings",
                column="razorpay_secrets",
                row_id=settings_row_id(tenant_id),
            )
        )
        razorpay = Razorpay(row.razorpay_key_id, secrets["keySecret"], secrets["webhookSecret"])
    return Billing(
        upi_vpa=row.upi_vpa,
        upi_payee_name=row.upi_payee_name,
        razorpay=razorpay,
        prepay_online=row.prepay_online,
        prepay_minutes=row.prepay_minutes,
        consult_sac=row.consult_sac,
    )


def takes_links(session: Session, tenant_id: uuid.UUID) -> bool:
    """Whether the clinic has a Razorpay account to send payment links from."""
    row = _row(session, tenant_id)
    return row is not None and bool(row.razorpay_key_id)


def prepay_window(session: Session, tenant_id: uuid.UUID) -> timedelta | None:
    """How long an online booking waits for its payment; None when the clinic takes no
    prepayment (switched off, or no Razorpay account to take it with).
    """
    row = _row(session, tenant_id)
    if row is None or not row.prepay_online or not row.razorpay_key_id:
        return None
    return timedelta(minutes=row.prepay_minutes)


def _check(changes: Billing) -> None:
    errors = []
    if changes.upi_vpa is not None and not VPA.match(changes.upi_vpa):
        errors.append(FieldError("upiVpa", "must be a UPI id such as clinic@okaxis"))
    if changes.upi_vpa and not (changes.upi_payee_name or "").strip():
        errors.append(FieldError("upiPayeeName", "is required with a UPI id (the name payers see)"))
    if changes.razorpay is not None:
        if not RAZORPAY_KEY_ID.match(changes.razorpay.key_id):
            errors.append(FieldError("razorpayKeyId", "must look like rzp_live_… or rzp_test_…"))
        if len(changes.razorpay.key_secret) < 8:
            errors.append(FieldError("razorpayKeySecret", "is too short"))
        if len(changes.razorpay.webhook_secret) < 8:
            errors.append(FieldError("razorpayWebhookSecret", "is too short"))
    if not 5 <= changes.prepay_minutes <= 1440:
        errors.append(FieldError("prepayMinutes", "must be between 5 and 1440 minutes"))
    if changes.prepay_online and changes.razorpay is None:
        errors.append(FieldError("prepayOnline", "needs a Razorpay account to send payment links"))
    if not re.fullmatch(r"[0-9]{4,8}", changes.consult_sac):
        errors.append(FieldError("consultSac", "must be a SAC code of 4 to 8 digits"))
    if errors:
        raise InvalidInput(errors)


def save(session: Session, ctx: RequestContext, cipher: FieldCipher, changes: Billing) -> Billing:
    """Replace the clinic's billing settings (secrets are never written to the audit trail)."""
    _check(changes)
    tenant_id = ctx.tenant_id
    if tenant_id is None:
        raise RuntimeError("billing settings belong to a clinic")
    row = _row(session, tenant_id)
    before = _shown(of(session, cipher, tenant_id)) if row else {}
    if row is None:
        row = BillingSettings(tenant_id=tenant_id)
        session.add(row)
    row.upi_vpa = changes.upi_vpa
    row.upi_payee_name = changes.upi_payee_name
    row.prepay_online = changes.prepay_online
    row.prepay_minutes = changes.prepay_minutes
    row.consult_sac = changes.consult_sac
    row.razorpay_key_id = changes.razorpay.key_id if changes.razorpay else None
    row.razorpay_secrets = (
        cipher.encrypt(
            json.dumps(
                {
                    "keySecret": changes.razorpay.key_secret,
                    "webhookSecret": changes.razorpay.webhook_secret,
                }
            ),
            tenant_id=tenant_id,
            table="billing_settings",
            column="razorpay_secrets",
            row_id=settings_row_id(tenant_id),
        )
        if changes.razorpay
        else None
    )
    row.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="billing_settings",
        entity_id=None,
        action="update",
        diff=audit.diff_of(before, _shown(changes), redact={"razorpaySecrets"}),
    )
    return changes


def _shown(settings: Billing) -> dict[str, object]:
    """The settings as the audit trail shows them: the secrets only as "changed"."""
    return {
        "upiVpa": settings.upi_vpa,
        "upiPayeeName": settings.upi_payee_name,
        "razorpayKeyId": settings.razorpay.key_id if settings.razorpay else None,
        "razorpaySecrets": (
            f"{settings.razorpay.key_secret}|{settings.razorpay.webhook_secret}"
            if settings.razorpay
            else None
        ),
        "prepayOnline": settings.prepay_online,
        "prepayMinutes": settings.prepay_minutes,
        "consultSac": settings.consult_sac,
    }
