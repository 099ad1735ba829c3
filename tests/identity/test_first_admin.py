"""A new clinic's first admin: created by ``opdesk tenant create`` with a one-time link to
choose a password (printed once, stored hashed, expiring, single use), and the page it opens.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.config import Settings
from opdesk.db import Database
from opdesk.identity.models import OtpToken, User
from opdesk.security.tokens import token_hash
from opdesk.tenancy.service import find_by_slug
from tests.factories import clinic_session, unique_slug
from tests.factories.cli import opdesk
from tests.factories.web import cookie_browser

NEW_PASSWORD = "monsoon over the ghats"


def create_clinic(db: Database, tmp_path: Path, slug: str, *extra: str) -> Any:
    return opdesk(
        "tenant",
        "create",
        "--name",
        "Sahyadri Clinic",
        "--slug",
        slug,
        *extra,
        database=db,
        data_dir=tmp_path,
    )


def link_of(output: str) -> str:
    match = re.search(r"/set-password\?token=(\S+)", output)
    assert match, output
    return match.group(1)


def sign_in(client: TestClient, slug: str, password: str) -> Any:
    body = {"clinic": slug, "email": "meera@sahyadri.in", "password": password}
    return client.post("/api/v1/auth/sign-in", json=body)


def test_tenant_create_makes_the_first_admin_who_sets_a_password_with_the_link_once(
    app: FastAPI, db: Database, tmp_path: Path, settings: Settings
) -> None:
    slug = unique_slug()
    made = create_clinic(
        db, tmp_path, slug, "--admin-email", "Meera@Sahyadri.in", "--admin-name", "Meera Joshi"
    )
    assert made.returncode == 0, made.stderr
    assert "first admin: Meera Joshi <meera@sahyadri.in>" in made.stdout
    token = link_of(made.stdout)
    with clinic_session(db, None) as session:
        tenant = find_by_slug(session, slug)
        assert tenant is not None
    with clinic_session(db, tenant.id) as session:
        admin = session.execute(select(User)).scalar_one()
        assert (admin.role, admin.email, admin.password_hash) == (
            "admin",
            "meera@sahyadri.in",
            None,
        )
        link = session.execute(
            select(OtpToken).where(OtpToken.attempt_hash == token_hash(token))
        ).scalar_one()  # only the hash is kept
        hours = (link.expires_at - link.created_at) / timedelta(hours=1)
        assert hours == settings.password_link_hours
    with cookie_browser(app, None) as browser:
        assert sign_in(browser, slug, NEW_PASSWORD).status_code == 401  # no password yet
        # The link is not a sign-in code attempt.
        assert (
            browser.post(
                "/api/v1/auth/otp/verify", json={"attempt": token, "code": "123456"}
            ).status_code
            == 401
        )
        page = browser.get(f"/set-password?token={token}")
        assert page.status_code == 200
        assert "meera@sahyadri.in" in page.text and "Sahyadri Clinic" in page.text
        differ = browser.post(
            "/set-password",
            data={"token": token, "password": NEW_PASSWORD, "repeat": "something else"},
        )
        assert differ.status_code == 422 and "Type the same password twice" in differ.text
        short = browser.post(
            "/set-password", data={"token": token, "password": "short", "repeat": "short"}
        )
        assert short.status_code == 422 and 'id="f-password-error"' in short.text
        done = browser.post(
            "/set-password",
            data={"token": token, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/sign-in?clinic={slug}"
        signed = sign_in(browser, slug, NEW_PASSWORD)
        assert signed.status_code == 200 and signed.json()["stage"] == "active"
        # Used once: the link opens nothing now.
        assert browser.get(f"/set-password?token={token}").status_code == 404
        replay = browser.post(
            "/set-password",
            data={"token": token, "password": "another long one", "repeat": "another long one"},
        )
        assert replay.status_code == 404 and "no longer works" in replay.text
        assert sign_in(browser, slug, "another long one").status_code == 401


def test_the_link_expires_and_a_new_one_replaces_it(
    app: FastAPI, db: Database, tmp_path: Path, settings: Settings
) -> None:
    slug = unique_slug()
    made = create_clinic(
        db, tmp_path, slug, "--admin-email", "meera@sahyadri.in", "--admin-name", "Meera Joshi"
    )
    first = link_of(made.stdout)
    later = datetime.now(UTC) + timedelta(hours=settings.password_link_hours, minutes=1)
    with cookie_browser(app, None) as browser, time_machine.travel(later, tick=False):
        assert browser.get(f"/set-password?token={first}").status_code == 404
    again = opdesk(
        "tenant",
        "admin-link",
        "--clinic",
        slug,
        "--email",
        "meera@sahyadri.in",
        database=db,
        data_dir=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    second = link_of(again.stdout)
    with cookie_browser(app, None) as browser:
        assert browser.get(f"/set-password?token={second}").status_code == 200
        assert browser.get(f"/set-password?token={first}").status_code == 404


def test_tenant_create_refuses_a_clinic_without_its_first_admin(
    db: Database, tmp_path: Path
) -> None:
    slug = unique_slug()
    refused = create_clinic(db, tmp_path, slug)
    assert refused.returncode == 1
    assert "--admin-email" in refused.stderr and "--admin-name" in refused.stderr
    bad = create_clinic(db, tmp_path, slug, "--admin-email", "not-an-email", "--admin-name", "X")
    assert bad.returncode == 1 and "--admin-email" in bad.stderr
    with clinic_session(db, None) as session:
        assert find_by_slug(session, slug) is None
