"""Registering patients through the API and the desk's form, for the registration tests."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.db import Database
from opdesk.patients import schemas
from opdesk.patients.models import Patient
from opdesk.tenancy.models import Tenant
from tests.factories.clinics import clinic_session
from tests.factories.people import make_user, open_session, unique_mobile
from tests.factories.web import browser_for


def abha_with_check(first13: str) -> str:
    """A 14-digit number whose last digit is the Luhn check digit of the first 13."""
    for last in "0123456789":
        if schemas.luhn_valid(first13 + last):
            return first13 + last
    raise AssertionError("no check digit")


def register(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    """``POST /api/v1/patients`` for a valid adult, with ``fields`` added or replaced."""
    body = {
        "name": {"first": "Sunita", "last": "Deshmukh"},
        "phone": unique_mobile(),
        "dob": "1979-08-21",
        "gender": "female",
        "city": "Pune",
        **fields,
    }
    return client.post("/api/v1/patients", json=body, headers=headers)


def stored_patient(db: Database, tenant: Tenant, patient_id: str | uuid.UUID) -> Patient:
    with clinic_session(db, tenant.id) as session:
        found = session.execute(select(Patient).where(Patient.id == patient_id)).scalar_one()
        session.expunge(found)
        return found


def desk_browser(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> TestClient:
    """A front-desk member's browser, signed in."""
    return browser_for(app, open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def field_errors(html: str) -> dict[str, str]:
    """Each form field's error message on a page, by the field's name."""
    return dict(
        re.findall(r'<small id="f-([\w-]+)-error" class="field-error">([^<]+)</small>', html)
    )
