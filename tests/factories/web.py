"""Browsing the pages without a browser: cookie sessions, CSRF tokens, portal sign-in."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import SESSION_COOKIE
from tests.factories.clinics import clinic_session
from tests.factories.people import bearer, open_session


def browser_for(app: FastAPI, token: str) -> TestClient:
    """A client sending ``token`` as the session cookie, as a browser would."""
    client = TestClient(app)
    client.cookies.set(SESSION_COOKIE, token)
    return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{40})"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def portal_login(db: Database, ident: Any, tenant: Tenant, patient: Any) -> dict[str, str]:
    """Bearer headers of the patient's portal login (made when they were registered)."""
    with clinic_session(db, tenant.id) as session:
        user = session.execute(
            select(User).where(User.role == "patient", User.phone_hash == patient.phone_hash)
        ).scalar_one()
    return bearer(open_session(db, ident, user))
