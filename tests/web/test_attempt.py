"""The page helper: ``attempt`` rolls back only its own savepoint on a refusal and shows
the message; success redirects with a flash (``HX-Redirect`` for htmx).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.app import create_app
from opdesk.audit.models import AuditEvent
from opdesk.audit.verify import verify_tenant
from opdesk.config import Settings
from opdesk.db import Database, bind_tenant
from opdesk.errors import Conflict
from opdesk.security.crypto import StaticKeyring
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import TenantUpdate
from opdesk.web.deps import Ctx, DbSession
from opdesk.web.pages import attempt, render
from opdesk.web.templating import FLASH_COOKIE
from tests.factories import clinic_session, make_tenant


def attempt_router() -> APIRouter:
    """A page action used only here: one write before the attempt, one inside it."""
    router = APIRouter()

    @router.post("/_test/attempt/{slug}")
    def rename(
        request: Request,
        slug: str,
        session: DbSession,
        ctx: Ctx,
        fail: bool = False,
        again: bool = False,
    ) -> Response:
        tenant = tenants.get_by_slug(session, slug)
        ctx.tenant_id = tenant.id
        bind_tenant(session, tenant.id)
        before = TenantUpdate(name="Before")
        tenants.update_tenant(session, ctx, tenant_id=tenant.id, changes=before)

        def inside() -> Tenant:
            changed = tenants.update_tenant(
                session, ctx, tenant_id=tenant.id, changes=TenantUpdate(name="Inside")
            )
            if fail:
                raise Conflict("the second step is refused")
            return changed

        def drawn_again(problem: Exception) -> Response:
            return render(request, "error.html", 409, status=409, title="No", detail=str(problem))

        back = f"/c/{slug}"
        if again:
            return attempt(request, session, inside, done=back, message="Ok.", failed=drawn_again)
        return attempt(request, session, inside, done=back, message="Renamed.")

    return router


@pytest.fixture(scope="module")
def attempt_app(settings: Settings, db: Database, keyring: StaticKeyring) -> FastAPI:
    app = create_app(settings, database=db, keyring=keyring)
    app.include_router(attempt_router())
    return app


@pytest.fixture
def browser(attempt_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(attempt_app, follow_redirects=False) as client:
        yield client


def names_in_audit(db: Database, tenant: Tenant) -> str:
    with clinic_session(db, tenant.id) as session:
        diffs = session.execute(
            select(AuditEvent.diff).where(
                AuditEvent.entity_collection == "tenants", AuditEvent.action == "update"
            )
        ).scalars()
        return json.dumps(list(diffs))


def name_of(db: Database, tenant: Tenant) -> str:
    with clinic_session(db, tenant.id) as session:
        return tenants.get_tenant(session, tenant.id).name


def test_a_refusal_rolls_back_only_the_attempt_and_shows_the_message(
    browser: TestClient, db: Database
) -> None:
    tenant = make_tenant(db, "Narmada Clinic")
    refused = browser.post(f"/_test/attempt/{tenant.slug}", params={"fail": True})
    assert refused.status_code == 303
    assert refused.headers["location"] == f"/c/{tenant.slug}"
    assert "hx-redirect" not in refused.headers
    assert name_of(db, tenant) == "Before", "the write before the attempt commits"
    audited = names_in_audit(db, tenant)
    assert "Before" in audited and "Inside" not in audited, "the attempt's event is gone"
    with db.owner_engine.connect() as conn:
        assert verify_tenant(conn, tenant.id).ok
    shown = browser.get(f"/c/{tenant.slug}")
    assert "the second step is refused" in shown.text


def test_success_redirects_with_a_flash_shown_once(browser: TestClient, db: Database) -> None:
    tenant = make_tenant(db, "Tapti Clinic")
    done = browser.post(f"/_test/attempt/{tenant.slug}")
    assert done.status_code == 303
    assert done.headers["location"] == f"/c/{tenant.slug}"
    assert FLASH_COOKIE in done.cookies
    assert name_of(db, tenant) == "Inside"
    assert "Renamed." in browser.get(f"/c/{tenant.slug}").text
    assert "Renamed." not in browser.get(f"/c/{tenant.slug}").text


def test_htmx_is_told_to_load_the_whole_page(browser: TestClient, db: Database) -> None:
    tenant = make_tenant(db)
    for fail in (False, True):
        answer = browser.post(
            f"/_test/attempt/{tenant.slug}", params={"fail": fail}, headers={"HX-Request": "true"}
        )
        assert answer.status_code == 303
        assert answer.headers["hx-redirect"] == f"/c/{tenant.slug}"


def test_a_refusal_can_draw_the_same_page_again(browser: TestClient, db: Database) -> None:
    tenant = make_tenant(db)
    again = browser.post(f"/_test/attempt/{tenant.slug}", params={"fail": True, "again": True})
    assert again.status_code == 409
    assert "the second step is refused" in again.text
    assert name_of(db, tenant) == "Before"
