"""First load: static files under hashed names, cached for a year, sent compressed."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import brotli
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.tenancy.models import Tenant
from opdesk.web.assets import ASSETS, StaticAssets
from tests.factories import make_user, open_session
from tests.factories.web import browser_for

STATIC = Path(__file__).resolve().parents[2] / "src" / "opdesk" / "static"
YEAR = "public, max-age=31536000, immutable"


def _links(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)


def _raw(client: TestClient, url: str, encoding: str) -> tuple[int, dict[str, str], bytes]:
    """The bytes as sent, not decoded by the client."""
    with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as response:
        body = b"".join(response.iter_raw())
        return response.status_code, dict(response.headers), body


def test_the_layout_links_every_static_file_by_its_hashed_name(client: TestClient) -> None:
    links = _links(client.get("/").text)
    assert any("/static/app." in link for link in links)
    for link in links:
        assert re.search(r"\.[0-9a-f]{12}\.[a-z0-9]+$", link), link
        response = client.get(link)
        assert response.status_code == 200, link
        assert response.headers["cache-control"] == YEAR, link


def test_a_hashed_file_is_the_file_and_its_name_follows_its_content(
    client: TestClient, tmp_path: Path
) -> None:
    url = ASSETS.url("vendor/htmx/htmx.min.js")
    assert client.get(url).content == (STATIC / "vendor/htmx/htmx.min.js").read_bytes()

    folder = StaticAssets(tmp_path)
    (tmp_path / "site.js").write_text("one();")
    first = folder.url("site.js")
    (tmp_path / "site.js").write_text("two();")
    assert folder.url("site.js") != first


def test_text_files_come_compressed_with_brotli_or_gzip(client: TestClient) -> None:
    url = ASSETS.url("vendor/pico/pico.jade.min.css")
    plain = (STATIC / "vendor/pico/pico.jade.min.css").read_bytes()

    status, headers, body = _raw(client, url, "gzip, deflate, br")
    assert (status, headers["content-encoding"]) == (200, "br")
    assert brotli.decompress(body) == plain
    assert len(body) < len(plain) / 4
    assert headers["vary"] == "Accept-Encoding"

    status, headers, body = _raw(client, url, "gzip")
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == plain

    status, headers, body = _raw(client, url, "br;q=0, identity")
    assert "content-encoding" not in headers
    assert body == plain


def test_stylesheets_point_at_hashed_fonts_that_are_cached_too(client: TestClient) -> None:
    css = client.get(ASSETS.url("vendor/fonts/devanagari/400.css")).text
    fonts = re.findall(r"url\((\./files/[^)]+\.woff2)\)", css)
    assert fonts
    for ref in fonts:
        assert re.search(r"\.[0-9a-f]{12}\.woff2$", ref), ref
        response = client.get("/static/vendor/fonts/devanagari/" + ref.removeprefix("./"))
        assert response.status_code == 200
        assert response.headers["content-type"] == "font/woff2"
        assert response.headers["cache-control"] == YEAR
        assert "content-encoding" not in response.headers  # WOFF2 is compressed already


def test_plain_and_outdated_names_are_revalidated_not_cached(client: TestClient) -> None:
    plain = client.get("/static/app.css")
    assert plain.status_code == 200
    assert plain.headers["cache-control"] == "public, no-cache"
    again = client.get("/static/app.css", headers={"If-None-Match": plain.headers["etag"]})
    assert again.status_code == 304

    outdated = client.get("/static/app.000000000000.css")
    assert outdated.status_code == 200  # a page from before a deploy still gets its styles
    assert outdated.headers["cache-control"] == "public, no-cache"


def test_nothing_outside_the_static_folder_is_served(client: TestClient) -> None:
    for path in (
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/vendor",
        "/static/nope.css",
    ):
        assert client.get(path).status_code == 404, path
    assert client.post("/static/app.css").status_code in (403, 405)


def test_public_pages_are_compressed(client: TestClient) -> None:
    status, headers, body = _raw(client, "/", "gzip, br")
    assert status == 200
    assert headers["content-encoding"] == "br"
    assert b"<html" in brotli.decompress(body)
    status, headers, body = _raw(client, "/", "gzip")
    assert headers["content-encoding"] == "gzip"
    assert b"<html" in gzip.decompress(body)


def test_signed_in_pages_are_not_compressed(
    app: FastAPI, db: Database, ident: Identity, tenant: Tenant
) -> None:
    """They carry the CSRF token beside what the request typed: compressing them would
    let an onlooker recover the token from response sizes (BREACH).
    """
    user = make_user(db, ident, tenant, "frontdesk")
    with browser_for(app, open_session(db, ident, user)) as browser:
        status, headers, _ = _raw(browser, "/account", "gzip, br")
        assert status == 200
        assert "content-encoding" not in headers
        bearer = {"Authorization": "Bearer x", "Accept-Encoding": "gzip"}
        assert "content-encoding" not in browser.get("/api/v1/auth/me", headers=bearer).headers
