"""The demo clinic: created or refreshed by ``opdesk demo`` (later issues add their data)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.db import bind_tenant
from opdesk.identity import service as identity
from opdesk.identity.models import User
from opdesk.identity.service import Identity
from opdesk.security.passwords import hash_password, verify_password
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import Address, TenantCreate, TenantUpdate

DEMO_SLUG = "sunrise-clinic"

DEMO_PROFILE = TenantCreate(
    name="Sunrise Family Clinic",
    slug=DEMO_SLUG,
    timezone="Asia/Kolkata",
    gstin="27AAPFU0939F1ZV",
    address=Address(
        line1="14, Shivaji Nagar Main Road",
        line2="Opp. Kamla Nehru Park",
        city="Pune",
        state="Maharashtra",
        pincode="411005",
    ),
    phone="+912025531234",
    invoice_prefix="SUN",
)


def refresh_demo(session: Session, ctx: RequestContext) -> Tenant:
    """Create the demo clinic, or put its profile back as shipped; restores it if deleted."""
    existing = tenants.find_by_slug(session, DEMO_SLUG, include_deleted=True)
    if existing is None:
        return tenants.create_tenant(session, ctx, data=DEMO_PROFILE)
    ctx.tenant_id = existing.id
    bind_tenant(session, existing.id)
    if existing.deleted_at is not None:
        tenants.restore_tenant(session, ctx, tenant_id=existing.id)
    fields = DEMO_PROFILE.model_dump(exclude={"slug"})
    return tenants.update_tenant(
        session, ctx, tenant_id=existing.id, changes=TenantUpdate.model_validate(fields)
    )


DEMO_STAFF = (
    ("admin", "Meera Kulkarni"),
    ("frontdesk", "Ravi Patil"),
    ("doctor", "Dr. Anjali Deshmukh"),
    ("pharmacy", "Sameer Shaikh"),
    ("accounts", "Pooja Joshi"),
)
DEMO_PATIENTS = (
    ("+919822012345", "Suresh Jadhav"),
    ("+919890054321", "Lakshmi Iyer"),
    ("+917020098765", "अमित शर्मा"),
)
CREDENTIALS_FILE = "demo-credentials.json"


@dataclass(frozen=True)
class DemoLogin:
    role: str
    name: str
    email: str
    password: str


def demo_passwords(data_dir: Path) -> dict[str, str]:
    """Random passwords made at the first ``opdesk demo`` and kept in the data folder."""
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        if set(stored) >= {role for role, _ in DEMO_STAFF}:
            return stored
    passwords = {role: f"demo-{role}-{secrets.token_hex(4)}" for role, _ in DEMO_STAFF}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(passwords, fh, indent=2)
    return passwords


def refresh_demo_people(
    session: Session, ctx: RequestContext, ident: Identity, passwords: dict[str, str]
) -> list[DemoLogin]:
    """One user per staff role (password reset to the demo one) and a few patients."""
    logins = []
    for role, name in DEMO_STAFF:
        email = f"{role}@sunrise-clinic.example"
        user = session.execute(select(User).where(User.email == email)).scalar_one_or_none()
        if user is None:
            identity.create_user(
                session, ctx, ident, name=name, role=role, email=email, password=passwords[role]
            )
        elif not user.active or not verify_password(
            passwords[role], user.password_hash, fast=ident.fast
        ):
            identity.update_user(session, ctx, user_id=user.id, active=True)
            user.password_hash = hash_password(passwords[role], fast=ident.fast)
            audit.record(
                ctx,
                entity="users",
                entity_id=user.id,
                action="update",
                diff=audit.diff_of({"passwordHash": "old"}, {"passwordHash": "demo"}),
            )
        logins.append(DemoLogin(role, name, email, passwords[role]))
    for phone, name in DEMO_PATIENTS:
        phone_hash = ident.cipher.blind_index(phone, purpose="phone")
        exists = session.execute(
            select(User.id).where(User.role == "patient", User.phone_hash == phone_hash)
        ).first()
        if exists is None:
            identity.create_user(session, ctx, ident, name=name, role="patient", phone=phone)
    session.flush()
    return logins
