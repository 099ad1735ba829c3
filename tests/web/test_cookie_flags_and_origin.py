"""Issue 10, items 5 and 8: a share link is shown on the page, never sent in a cookie;
every cookie of a non-dev deployment is Secure (setting and removing alike); and the
same-origin check compares the scheme as well as host and port.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.security.crypto import StaticKeyring
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import SESSION_COOKIE
from tests.factories import (
    STAFF_PASSWORD,
    csrf_of,
    make_patient,
    make_user,
    open_session,
    unique_mobile,
)

PDF = b"%PDF-1.4\n%%EOF\n"


def set_cookies(response: Any) -> list[str]:
    return [str(c) for c in response.headers.get_list("set-cookie")]


def upload(client: TestClient, patient_id: Any, token: str) -> str:
    """A lab report uploaded from the profile; the new document's id."""
    response = client.post(
        f"/patients/{patient_id}/documents",
        data={"csrf_token": token, "category": "lab-report"},
        files={"file": ("cbc.pdf", PDF, "application/pdf")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get(f"/patients/{patient_id}").text
    found = re.search(r"/patients/[0-9a-f-]+/documents/([0-9a-f-]+)/share", page)
    assert found, "the profile offers no share button"
    return found.group(1)


@pytest.fixture
def prod_app(db: Database, keyring: StaticKeyring, tmp_path: Path) -> FastAPI:
    """The app as a clinic deploys it (``OPDESK_ENV=prod``), over HTTPS."""
    settings = Settings(
        env="prod",
        base_url="https://clinic.example.in",
        data_dir=tmp_path,
        _env_file=None,
    )
    return create_app(settings, database=db, keyring=keyring)


def test_a_share_link_is_shown_on_the_page_and_never_set_in_a_cookie(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    desk = make_user(db, ident, tenant, "frontdesk")
    patient = make_patient(db, ident, tenant)
    with TestClient(app) as client:
        client.cookies.set(SESSION_COOKIE, open_session(db, ident, desk))
        token = csrf_of(client.get(f"/patients/{patient.id}").text)
        document_id = upload(client, patient.id, token)
        shared = client.post(
            f"/patients/{patient.id}/documents/{document_id}/share",
            data={"csrf_token": token},
            follow_redirects=False,
        )
        assert shared.status_code == 200, "the page is drawn again with the link, no redirect"
        assert all("opdesk_flash" not in c for c in set_cookies(shared)), set_cookies(shared)
        found = re.search(r'id="f-share-url" type="url" readonly value="([^"]+)"', shared.text)
        assert found, "the link is shown in a field the desk can copy"
        url = found.group(1)
        assert "/s/" in url
        assert "cbc.pdf" in shared.text and "Anyone with this link" in shared.text
        assert shared.headers["cache-control"] == "no-store"
        # The link shown works, without signing in.
        anonymous = TestClient(app)
        assert anonymous.get(url.split("127.0.0.1:8000", 1)[-1]).content == PDF
        # It is shown once: the profile drawn afresh lists the link but not its address.
        again = client.get(f"/patients/{patient.id}").text
        assert url not in again and "Open share links" in again


def test_every_cookie_of_a_non_dev_app_is_secure(
    prod_app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    """Set and removed alike: sign-in (session, device), a flash and its removal, a share,
    sign-out, and the patient's code sign-in cookies.
    """
    desk = make_user(db, ident, tenant, "frontdesk")
    phone = unique_mobile()
    patient = make_patient(db, ident, tenant, phone=phone)
    seen: list[str] = []
    with TestClient(prod_app, base_url="https://clinic.example.in") as client:
        signed_in = client.post(
            "/sign-in",
            data={"clinic": tenant.slug, "email": desk.email, "password": STAFF_PASSWORD},
            follow_redirects=False,
        )
        assert signed_in.status_code in (200, 303), signed_in.text
        seen += set_cookies(signed_in)
        # Whatever stage sign-in reached, continue with a fully signed-in session.
        client.cookies.set(SESSION_COOKIE, open_session(db, ident, desk))
        token = csrf_of(client.get(f"/patients/{patient.id}").text)
        uploaded = client.post(
            f"/patients/{patient.id}/documents",
            data={"csrf_token": token, "category": "lab-report"},
            files={"file": ("cbc.pdf", PDF, "application/pdf")},
            follow_redirects=False,
        )
        seen += set_cookies(uploaded)  # the flash
        shown = client.get(f"/patients/{patient.id}")  # shows the flash, then removes it
        assert "Uploaded cbc.pdf." in shown.text
        seen += set_cookies(shown)
        signed_out = client.post("/sign-out", data={"csrf_token": token}, follow_redirects=False)
        seen += set_cookies(signed_out)
        # The patient's side: asking for a code sets its cookie.
        patient_page = client.get("/patient/sign-in")
        code = client.post(
            "/patient/sign-in",
            data={"clinic": tenant.slug, "phone": phone[3:]},
            follow_redirects=False,
        )
        seen += set_cookies(patient_page) + set_cookies(code)
    names = {c.split("=", 1)[0] for c in seen}
    assert {"opdesk_flash", SESSION_COOKIE, "opdesk_device"} <= names, names
    removed = [c for c in seen if "Max-Age=0" in c or "expires=Thu, 01 Jan 1970" in c]
    assert removed, "the test saw no cookie being removed"
    insecure = [c for c in seen if "; secure" not in c.lower()]
    assert insecure == [], insecure


def origin_client(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> tuple[TestClient, str]:
    desk = make_user(db, ident, tenant, "frontdesk")
    client = TestClient(app)
    client.cookies.set(SESSION_COOKIE, open_session(db, ident, desk))
    return client, csrf_of(client.get("/patients/new").text)


def register(client: TestClient, token: str, origin: str) -> int:
    response = client.post(
        "/patients/new",
        data={
            "csrf_token": token,
            "name.first": "Origin",
            "phone": unique_mobile()[3:],
            "age_years": "40",
            "gender": "male",
        },
        headers={"Origin": origin},
        follow_redirects=False,
    )
    return response.status_code


def test_the_same_origin_check_compares_the_scheme(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    """The test client talks to http://testserver: https://testserver is another origin,
    and so are another port and another host.
    """
    client, token = origin_client(app, db, ident, tenant)
    assert register(client, token, "http://testserver") == 303
    assert register(client, token, "http://testserver:80") == 303
    assert register(client, token, "https://testserver") == 403
    assert register(client, token, "http://testserver:8080") == 403
    assert register(client, token, "ws://testserver") == 403
    assert register(client, token, "http://testserver.evil.example") == 403


def test_the_clinics_https_address_is_not_its_http_twin(
    db: Database, keyring: StaticKeyring, tmp_path: Path, ident: Any, tenant: Tenant
) -> None:
    settings = Settings(
        base_url="https://clinic.example.in",
        data_dir=tmp_path,
        fast_password_hashing=True,
        _env_file=None,
    )
    with TestClient(create_app(settings, database=db, keyring=keyring)) as probe:
        client, token = origin_client(probe.app, db, ident, tenant)  # type: ignore[arg-type]
        assert register(client, token, "https://clinic.example.in") == 303
        assert register(client, token, "https://clinic.example.in:443") == 303
        assert register(client, token, "http://clinic.example.in") == 403
        assert register(client, token, "https://clinic.example.in:8443") == 403
