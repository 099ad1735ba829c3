"""The HTML shell: front door, form errors, flash messages, clinic page, error pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.web.templating import FLASH_COOKIE
from tests.factories import make_tenant


def test_home_page_has_layout_navigation_and_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "Find your clinic" in html
    # Linked by their hashed names (opdesk.web.assets), so browsers may cache them long.
    assert re.search(r"/static/vendor/htmx/htmx\.min\.[0-9a-f]{12}\.js", html)
    assert re.search(r"/static/vendor/pico/pico\.jade\.min\.[0-9a-f]{12}\.css", html)
    assert 'href="/" aria-current="page"' in html
    assert "<script>" not in html  # nothing inline: the CSP forbids it


def test_vendored_assets_are_served(client: TestClient) -> None:
    for path in (
        "/static/vendor/htmx/htmx.min.js",
        "/static/vendor/pico/pico.jade.min.css",
        "/static/app.css",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" not in response.headers.get("cache-control", "")


def test_empty_code_shows_the_error_beside_the_field(client: TestClient) -> None:
    page = client.get("/find", params={"code": ""})
    assert page.status_code == 422
    assert 'aria-invalid="true"' in page.text
    assert 'id="f-code-error"' in page.text
    assert "Please correct 1 field" in page.text


def test_unknown_code_keeps_what_was_typed_escaped(client: TestClient) -> None:
    page = client.get("/find", params={"code": "nobody-here"})
    assert page.status_code == 404
    assert "No clinic uses this code" in page.text
    assert 'value="nobody-here"' in page.text
    hostile = client.get("/find", params={"code": '"><script>alert(1)</script>'})
    assert "<script>alert(1)</script>" not in hostile.text
    assert "&lt;script&gt;" in hostile.text


def test_found_clinic_redirects_with_a_flash_shown_once(client: TestClient, db: Database) -> None:
    tenant = make_tenant(db, "Ganga Clinic")
    found = client.get(
        "/find", params={"code": f"  {tenant.slug.upper()} "}, follow_redirects=False
    )
    assert found.status_code == 303
    assert found.headers["location"] == f"/c/{tenant.slug}"
    assert FLASH_COOKIE in found.cookies
    landing = client.get(f"/c/{tenant.slug}")
    assert "Welcome to Ganga Clinic." in landing.text
    assert client.get(f"/c/{tenant.slug}").text.count("Welcome to Ganga Clinic.") == 0


def test_forged_flash_cookie_is_ignored(client: TestClient, db: Database) -> None:
    tenant = make_tenant(db)
    client.cookies.set(FLASH_COOKIE, "W1siaW5mbyIsICJGcmVlIG1vbmV5Il1d.deadbeef")
    assert "Free money" not in client.get(f"/c/{tenant.slug}").text


def test_clinic_page_shows_profile_and_escapes_names(client: TestClient, db: Database) -> None:
    tenant = make_tenant(
        db,
        "<b>Shanti</b> श्री क्लिनिक",
        phone="+91 20 2553 1234",
        address={"city": "Pune", "state": "Maharashtra", "pincode": "411005"},
    )
    html = client.get(f"/c/{tenant.slug}").text
    assert "&lt;b&gt;Shanti&lt;/b&gt; श्री क्लिनिक" in html
    assert "<b>Shanti</b>" not in html
    assert 'href="tel:+912025531234"' in html
    assert "411005" in html


def test_unknown_clinic_page_is_a_friendly_404(client: TestClient) -> None:
    page = client.get("/c/no-such-clinic")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Go to the start page" in page.text
