"""The security pages of issue 10 in a real browser at both widths: deactivating a user,
the SMS budget warning, the sign-in log with an unknown account, the set-password link.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.identity.service import create_first_admin
from opdesk.security.crypto import StaticKeyring
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import ctx_for, make_tenant, make_user, unique_mobile

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def small_budget_server(settings: Settings, db: Database, keyring: StaticKeyring) -> Iterator[str]:
    """A second live server whose clinics may send only 2 sign-in codes a day."""
    app: FastAPI = create_app(
        settings.model_copy(update={"sms_daily_budget": 2}), database=db, keyring=keyring
    )
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the live server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_admin_security_pages(
    browser: Any, small_budget_server: str, db: Database, ident: Any, width: str
) -> None:
    base = small_budget_server
    clinic = make_tenant(db, "Sunrise Family Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera Kulkarni")
    doctor = make_user(db, ident, clinic, "doctor", name="डॉ. अंजली देशमुख")
    page, problems = open_page(browser, width)

    # A failed sign-in for an email nobody has, then two codes: the budget is spent.
    page.goto(f"{base}/sign-in?clinic={clinic.slug}")
    page.get_by_label("Email").fill("nobody@sunrise.in")
    page.get_by_label("Password").fill("a guess at it")
    page.get_by_role("button", name="Sign in").click()
    for _ in range(2):
        page.request.post(
            f"{base}/api/v1/auth/otp", data={"clinic": clinic.slug, "phone": unique_mobile()}
        )

    staff_sign_in(page, base, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{base}/admin/sign-ins")
    assert page.get_by_text("unknown account").first.is_visible()
    assert page.get_by_text("Sign-in codes by SMS have stopped").is_visible()
    shot(page, f"sign-in-log-unknown-account-{width}")

    page.goto(f"{base}/admin/users/{doctor.id}")
    assert page.get_by_text("can sign in.").is_visible()
    shot(page, f"admin-user-{width}")
    page.get_by_role("button", name="Deactivate…").click()
    page.wait_for_url(f"**/admin/users/{doctor.id}/deactivate")
    assert page.get_by_text("signed out everywhere at once").is_visible()
    shot(page, f"admin-user-deactivate-{width}")
    page.get_by_role("button", name="Deactivate डॉ. अंजली देशमुख").click()
    page.wait_for_url(f"**/admin/users/{doctor.id}")
    assert page.get_by_text("can no longer sign in").is_visible()
    shot(page, f"admin-user-deactivated-{width}")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in")
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_first_admin_sets_a_password_with_the_link(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sahyadri Clinic")
    ctx = ctx_for(clinic.id)
    with transaction(db, ctx) as session:
        _user, token = create_first_admin(
            session, ctx, ident, name="Meera Joshi", email=f"meera-{width}@sahyadri.in"
        )
    page, problems = open_page(browser, width)
    page.goto(f"{live_server}/set-password?token={token}")
    shot(page, f"set-password-{width}")
    page.get_by_label("New password").fill("monsoon over the ghats")
    page.get_by_label("Type it again").fill("monsoon over the ghat")
    page.get_by_role("button", name="Set password").click()
    page.get_by_text("Type the same password twice").first.wait_for()
    shot(page, f"set-password-error-{width}")
    page.get_by_label("New password").fill("monsoon over the ghats")
    page.get_by_label("Type it again").fill("monsoon over the ghats")
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(f"**/sign-in?clinic={clinic.slug}")
    assert page.get_by_text("Password set.").is_visible()
    page.goto(f"{live_server}/set-password?token={token}")
    assert page.get_by_role("heading", name="This link no longer works").is_visible()
    shot(page, f"set-password-used-{width}")
    assert problems == [], problems
    page.context.close()
