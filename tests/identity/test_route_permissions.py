"""Generated from the router: every route declares an action, every role gets exactly what
the permission table says, denied writes change nothing, and tenant B cannot reach
tenant A's records by id.

Routes added by later issues are covered without editing this file; a route with an
id parameter this file cannot make a record for fails until a maker is added to
``tests/factories`` and registered in ``ID_FACTORIES`` below.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.security.permissions import (
    DEV_ONLY,
    PERMISSIONS,
    PUBLIC,
    ROLES,
    SIGNING_IN,
    allowed,
)
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import Allow
from tests.factories import (
    abdm,
    bearer,
    billing,
    book,
    clinic_session,
    clinic_with_slots,
    clinical_orders,
    clinical_rx,
    fhir,
    make_consent,
    make_device,
    make_doctor,
    make_document,
    make_exception,
    make_patient,
    make_share_link,
    make_tenant,
    make_user,
    offered,
    open_session,
    patients,
    waiting,
)
from tests.factories.clinical_visits import VISIT_IDS, visit_maker
from tests.factories.messages import failed_event, failed_message

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Routes that are not ours to declare: FastAPI's own OpenAPI document.
FRAMEWORK_PATHS = {"/api/v1/openapi.json"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    action: str

    @property
    def is_api(self) -> bool:
        return self.path.startswith(("/api/", "/fhir/"))

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.action}]"


def declared_actions(route: Any) -> list[str]:
    found: list[str] = []

    def walk(dependant: Any) -> None:
        call = getattr(dependant, "call", None)
        if isinstance(call, Allow):
            found.append(call.action)
        for sub in dependant.dependencies:
            walk(sub)

    walk(route.dependant)
    return found


def endpoints(app: FastAPI) -> list[Endpoint]:
    result = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or route.path in FRAMEWORK_PATHS:
            continue
        actions = declared_actions(route)
        action = actions[0] if len(actions) == 1 else f"<{len(actions)} declarations>"
        for method in sorted((route.methods or set()) - {"HEAD"}):
            result.append(Endpoint(method, route.path or "", action))
    return result


def test_every_route_declares_exactly_one_known_action(app: FastAPI) -> None:
    known = set(PERMISSIONS) | {PUBLIC, SIGNING_IN, DEV_ONLY}
    bad = [str(e) for e in endpoints(app) if e.action not in known]
    assert bad == [], "routes without one known action: " + ", ".join(bad)
    assert len(endpoints(app)) >= 40


# --------------------------------------------------------------------------- the matrix


@pytest.fixture(scope="module")
def clinic(db: Database, ident: Any) -> dict[str, Any]:
    tenant = make_tenant(db, "Matrix Clinic")
    users = {role: make_user(db, ident, tenant, role) for role in ROLES}
    return {"tenant": tenant, "users": users}


def fill_path(path: str, tenant: Tenant) -> str:
    path = path.replace("{slug}", tenant.slug)
    return re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path)


def call(client: TestClient, endpoint: Endpoint, path: str, token: str | None) -> Any:
    headers = bearer(token) if token else {}
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if endpoint.method in UNSAFE:
        if endpoint.is_api:
            kwargs["json"] = {}
        else:
            kwargs["data"] = {}
    return client.request(endpoint.method, path, **kwargs)


def is_unauthenticated(endpoint: Endpoint, response: Any) -> bool:
    if endpoint.is_api:
        return bool(response.status_code == 401)
    return response.status_code == 303 and "hx-redirect" in response.headers


def database_state(db: Database, tenant_id: uuid.UUID) -> dict[str, int]:
    """Row counts of every table, and the tenant's audit chain length."""
    with db.owner_engine.connect() as conn:
        tables = conn.execute(
            text("select tablename from pg_tables where schemaname = 'public' order by 1")
        ).scalars()
        state = {
            t: conn.execute(text(f'select count(*) from "{t}"')).scalar_one()
            for t in tables
            if t not in ("sessions", "auth_throttle")  # the test opens sessions itself
        }
        state["audit head"] = conn.execute(
            text("select coalesce(max(seq), 0) from audit_events where tenant_id = :t"),
            {"t": tenant_id},
        ).scalar_one()
    return state


def test_every_role_gets_what_the_permission_table_says(
    app: FastAPI, db: Database, ident: Any, clinic: dict[str, Any]
) -> None:
    tenant: Tenant = clinic["tenant"]
    problems: list[str] = []
    forbidden = 0
    with TestClient(app) as client:
        for endpoint in endpoints(app):
            path = fill_path(endpoint.path, tenant)
            for role in (None, *ROLES):
                token = open_session(db, ident, clinic["users"][role]) if role else None
                denied_write = endpoint.method in UNSAFE and not _expect_through(endpoint, role)
                before = database_state(db, tenant.id) if denied_write else None
                response = call(client, endpoint, path, token)
                problem = _judge(endpoint, role, response)
                forbidden += response.status_code == 403
                if problem:
                    problems.append(problem)
                if before is not None and database_state(db, tenant.id) != before:
                    problems.append(f"{endpoint} as {role}: denied, yet the database changed")
    assert problems == [], "\n".join(problems)
    assert forbidden > 100  # the table really says no, often


def _expect_through(endpoint: Endpoint, role: str | None) -> bool:
    if endpoint.action in (PUBLIC, DEV_ONLY):
        return True
    if role is None:
        return False
    return endpoint.action == SIGNING_IN or allowed(role, endpoint.action)


def _judge(endpoint: Endpoint, role: str | None, response: Any) -> str | None:
    who = role or "anonymous"
    status = response.status_code
    if _expect_through(endpoint, role):
        if status == 403 or is_unauthenticated(endpoint, response):
            return f"{endpoint} as {who}: expected access, got {status}"
        if status >= 500:
            return f"{endpoint} as {who}: server error {status}"
        return None
    if role is None:
        return (
            None
            if is_unauthenticated(endpoint, response)
            else f"{endpoint} anonymous: got {status}"
        )
    return None if status == 403 else f"{endpoint} as {who}: expected 403, got {status}"


def test_a_half_signed_in_session_reaches_only_the_sign_in_steps(
    app: FastAPI, db: Database, ident: Any, clinic: dict[str, Any]
) -> None:
    tenant: Tenant = clinic["tenant"]
    admin = clinic["users"]["admin"]
    wrong = []
    with TestClient(app) as client:
        for endpoint in endpoints(app):
            if endpoint.action in (PUBLIC, DEV_ONLY, SIGNING_IN) or not endpoint.is_api:
                continue
            token = open_session(db, ident, admin, stage="mfa")
            response = call(client, endpoint, fill_path(endpoint.path, tenant), token)
            if response.status_code != 401:
                wrong.append(f"{endpoint}: {response.status_code}")
    assert wrong == []


# --------------------------------------------------------------------------- other tenants


# Path parameters that are not record ids: public codes, secret tokens, message channels.
NOT_IDS = {"slug", "token", "channel", "table"}  # table: a report table's name, not a record


def _make_appointment(db: Database, ident: Any, tenant: Tenant) -> uuid.UUID:
    _tenant, _doctor, slots = clinic_with_slots(db, ident, 1, tenant)
    (patient,) = patients(db, ident, tenant, 1)
    return book(db, tenant, slots[0], patient).id


def _id_of(name: str) -> Callable[[Database, Any, Tenant], uuid.UUID]:
    make = visit_maker(name)
    return lambda db, ident, tenant: make(db, ident, tenant)[name]


# One way to make a record of tenant A for each kind of id a route takes (the makers
# live in tests/factories).
ID_FACTORIES: dict[str, Callable[[Database, Any, Tenant], uuid.UUID | str]] = {
    "user_id": lambda db, ident, tenant: make_user(db, ident, tenant, "frontdesk").id,
    "device_id": lambda db, ident, tenant: make_device(db, ident, tenant).id,
    "patient_id": lambda db, ident, tenant: make_patient(db, ident, tenant).id,
    "document_id": lambda db, ident, tenant: make_document(db, ident, tenant).id,
    "link_id": lambda db, ident, tenant: make_share_link(db, ident, tenant).id,
    "consent_id": lambda db, ident, tenant: make_consent(db, ident, tenant).id,
    "doctor_id": lambda db, ident, tenant: make_doctor(db, ident, tenant).id,
    "exception_id": lambda db, ident, tenant: make_exception(db, ident, tenant).id,
    "slot_id": lambda db, ident, tenant: clinic_with_slots(db, ident, 1, tenant)[2][0].id,
    "appointment_id": _make_appointment,
    "entry_id": lambda db, ident, tenant: waiting(db, ident, tenant).entry.id,
    "offer_id": lambda db, ident, tenant: offered(db, ident, tenant).id,
    "message_id": lambda db, ident, tenant: failed_message(db, ident.cipher, tenant),
    "event_id": lambda db, ident, tenant: failed_event(db, tenant),
    **{name: _id_of(name) for name in VISIT_IDS},
    "prescription_id": clinical_rx.prescription_id,
    "order_id": clinical_orders.order_id_of,
    "diet_plan_id": clinical_orders.diet_plan_id_of,
    "diet_template_id": clinical_orders.diet_template_id_of,
    "invoice_id": billing.issued_id_of,
    "payment_id": billing.payment_id_of,
    "gateway_event_id": billing.kept_delivery_id,
    "counter_id": abdm.counter_id_of,
    **{name: fhir.id_of(name) for name in fhir.MAKERS},
}


def id_routes(app: FastAPI) -> Iterator[tuple[Endpoint, list[str]]]:
    for endpoint in endpoints(app):
        params = re.findall(r"\{([a-z_]+)\}", endpoint.path)
        ids = [p for p in params if p not in NOT_IDS]
        if ids:
            yield endpoint, ids


def test_every_id_parameter_has_a_factory(app: FastAPI) -> None:
    missing = {p for _, ids in id_routes(app) for p in ids} - set(ID_FACTORIES)
    assert missing == set(), f"add factories for: {sorted(missing)}"


def test_tenant_b_cannot_reach_tenant_a_records_by_id(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant_a, tenant_b = make_tenant(db, "Clinic A"), make_tenant(db, "Clinic B")
    admin_b = make_user(db, ident, tenant_b, "admin")
    patient_b = make_user(db, ident, tenant_b, "patient")
    holders: dict[str, Any] = {}
    problems = []
    with TestClient(app) as client:
        for endpoint, params in id_routes(app):
            path = endpoint.path
            for param in params:
                path = path.replace(
                    "{" + param + "}", str(ID_FACTORIES[param](db, ident, tenant_a))
                )
            path = path.replace("{slug}", tenant_a.slug)
            # Tenant B's most powerful identity that may call the route at all.
            actor = patient_b if endpoint.action == "portal:self" else admin_b
            if not allowed(actor.role, endpoint.action):  # e.g. notes: doctors only
                holder = next(r for r in ROLES if allowed(r, endpoint.action))
                if holder not in holders:
                    holders[holder] = make_user(db, ident, tenant_b, holder)
                actor = holders[holder]
            before = database_state(db, tenant_a.id)
            response = call(client, endpoint, path, open_session(db, ident, actor))
            if response.status_code != 404:
                problems.append(f"{endpoint}: {response.status_code}")
            if database_state(db, tenant_a.id) != before:
                problems.append(f"{endpoint}: tenant A changed")
    assert problems == []
    assert len(list(id_routes(app))) >= 10


def test_a_patient_cannot_reach_another_familys_records_in_the_same_clinic(
    app: FastAPI, db: Database, ident: Any
) -> None:
    """Row-level security cannot separate patients of one clinic; the portal's family
    scope must. Every portal route with an id, called by a patient of the *same* clinic
    outside the record's family, answers 404 and changes nothing.
    """
    clinic = make_tenant(db, "One Clinic")
    record = make_patient(db, ident, clinic)  # registering gives the outsider a login
    with clinic_session(db, clinic.id) as session:
        outsider = session.execute(
            select(User).where(User.role == "patient", User.phone_hash == record.phone_hash)
        ).scalar_one()
    portal_routes = [(e, ids) for e, ids in id_routes(app) if e.action == "portal:self"]
    problems = []
    with TestClient(app) as client:
        for endpoint, params in portal_routes:
            path = endpoint.path
            for param in params:
                path = path.replace("{" + param + "}", str(ID_FACTORIES[param](db, ident, clinic)))
            path = path.replace("{slug}", clinic.slug)
            before = database_state(db, clinic.id)
            response = call(client, endpoint, path, open_session(db, ident, outsider))
            if response.status_code != 404:
                problems.append(f"{endpoint}: {response.status_code}")
            if database_state(db, clinic.id) != before:
                problems.append(f"{endpoint}: the clinic's data changed")
    assert problems == []
    assert len(portal_routes) >= 8, "appointments, offers, consents and documents"


def test_the_documented_table_is_the_real_one() -> None:
    from pathlib import Path

    from opdesk.security.permissions import table_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"
    assert table_markdown() in doc.read_text()
