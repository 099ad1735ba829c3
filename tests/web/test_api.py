"""The HTTP edge: problem details, request ids, headers, health, one transaction per request."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import APIRouter, FastAPI, Header
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from opdesk.app import create_app
from opdesk.audit.models import AuditEvent
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.security.crypto import StaticKeyring
from opdesk.tenancy import service
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import TenantUpdate
from opdesk.web.deps import Ctx, DbSession
from tests.factories import clinic_session, make_tenant


def rename_router() -> APIRouter:
    """A write route used only here, to watch the request transaction and its audit."""
    router = APIRouter()

    @router.post("/api/v1/_test/clinics/{slug}/rename")
    def rename(
        slug: str,
        name: str,
        session: DbSession,
        ctx: Ctx,
        fail: Annotated[bool, Header()] = False,
    ) -> dict[str, str]:
        tenant = service.get_by_slug(session, slug)
        ctx.tenant_id = tenant.id
        from opdesk.db import bind_tenant

        bind_tenant(session, tenant.id)
        service.update_tenant(session, ctx, tenant_id=tenant.id, changes=TenantUpdate(name=name))
        if fail:
            raise RuntimeError("crash after the write")
        return {"name": name}

    return router


@pytest.fixture(scope="module")
def write_app(settings: Settings, db: Database, keyring: StaticKeyring) -> FastAPI:
    app = create_app(settings, database=db, keyring=keyring)
    app.include_router(rename_router())
    return app


@pytest.fixture
def write_client(write_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(write_app, raise_server_exceptions=False) as c:
        yield c


def test_public_clinic_profile_uses_camel_case(client: TestClient, db: Database) -> None:
    tenant = make_tenant(db, "Kaveri Clinic", invoicePrefix="KAV", address={"city": "Mysuru"})
    response = client.get(f"/api/v1/clinics/{tenant.slug}")
    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == tenant.slug
    assert body["address"]["city"] == "Mysuru"
    assert "invoicePrefix" not in body  # internal settings are not public


def test_unknown_clinic_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/api/v1/clinics/no-such-clinic")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404
    assert body["title"] == "Not found"
    assert body["instance"] == "/api/v1/clinics/no-such-clinic"
    assert body["requestId"] == response.headers["x-request-id"]


def test_bad_input_is_a_422_naming_the_field(client: TestClient) -> None:
    response = client.get("/api/v1/clinics/Bad Slug!")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == "path.slug"
    assert "pattern" in error["reason"]


def test_unknown_api_path_is_a_problem_too(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_request_id_is_echoed_when_sane_and_replaced_when_not(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "trace-abc-12345"}).headers["x-request-id"]
        == "trace-abc-12345"
    )
    replaced = client.get("/healthz", headers={"X-Request-ID": "<script>"}).headers["x-request-id"]
    assert replaced != "<script>"
    assert len(replaced) == 32


def test_security_headers_on_pages_and_api(client: TestClient) -> None:
    for path in ("/", "/api/v1/clinics/no-such-clinic"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in headers


def test_hsts_is_sent_when_served_over_https(
    db: Database, keyring: StaticKeyring, tmp_path: object
) -> None:
    settings = Settings(base_url="https://clinic.example.in", _env_file=None)
    with TestClient(create_app(settings, database=db, keyring=keyring)) as c:
        assert "max-age=" in c.get("/healthz").headers["strict-transport-security"]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


def test_not_ready_when_migrations_are_behind(
    fresh_database: Database, keyring: StaticKeyring, settings: Settings
) -> None:
    with fresh_database.owner_engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '0000'"))
    with TestClient(create_app(settings, database=fresh_database, keyring=keyring)) as c:
        response = c.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "0000" in response.json()["migrations"]


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/clinics/{slug}" in doc["paths"]
    assert "Problem" in doc["components"]["schemas"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "/static/api-docs." in docs.text
    assert "<script>" not in docs.text  # no inline script: the CSP stays strict


def _trail(db: Database, tenant: Tenant) -> list[AuditEvent]:
    with clinic_session(db, tenant.id) as session:
        return list(session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


def test_a_write_commits_once_with_request_id_ip_and_agent_in_its_audit_event(
    write_client: TestClient, tenant: Tenant, db: Database
) -> None:
    response = write_client.post(
        f"/api/v1/_test/clinics/{tenant.slug}/rename",
        params={"name": "Asha Multispeciality"},
        headers={"X-Request-ID": "req-write-0001", "User-Agent": "FrontDesk/1.0"},
    )
    assert response.status_code == 200
    event = _trail(db, tenant)[-1]
    assert (event.action, event.request_id, event.user_agent) == (
        "update",
        "req-write-0001",
        "FrontDesk/1.0",
    )
    assert event.ip == "testclient"


def test_a_crash_after_the_write_leaves_nothing_half_written(
    write_client: TestClient, tenant: Tenant, db: Database
) -> None:
    before = _trail(db, tenant)
    response = write_client.post(
        f"/api/v1/_test/clinics/{tenant.slug}/rename",
        params={"name": "Half Written"},
        headers={"fail": "true"},
    )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "crash" not in response.text  # internals stay in the log
    with clinic_session(db, tenant.id) as session:
        assert session.get(Tenant, tenant.id).name == "Asha Clinic"  # type: ignore[union-attr]
    assert len(_trail(db, tenant)) == len(before)


def test_access_log_is_json_without_query_strings(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    from opdesk.logsetup import JsonFormatter

    with caplog.at_level(logging.INFO, logger="opdesk.access"):
        client.get("/api/v1/clinics/no-such-clinic?phone=%2B919876543210")
    [record] = [r for r in caplog.records if r.name == "opdesk.access"]
    line = JsonFormatter().format(record)
    doc = json.loads(line)
    assert doc["path"] == "/api/v1/clinics/no-such-clinic"
    assert doc["status"] == 404
    assert "9876543210" not in line
    assert uuid.UUID(hex=doc["requestId"])


def test_nul_in_a_query_parameter_is_refused_naming_it(client: TestClient) -> None:
    response = client.get("/api/v1/clinics/sunrise-clinic", params={"specialty": "a\x00b"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "specialty", "reason": "must not contain NUL characters"}
    ]
