"""The API's documentation: where it lives, and how it says to sign in."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.security.permissions import DEV_ONLY, PUBLIC
from tests.factories.web import declared_routes


def _doc(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def test_docs_live_beside_the_api_and_the_old_address_redirects(client: TestClient) -> None:
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in docs.text and "api-docs" in docs.text
    assert "<script>" not in docs.text  # no inline script: the CSP stays strict
    assert "'unsafe-inline'" in docs.headers["content-security-policy"]  # Swagger's styles

    old = client.get("/api/docs", follow_redirects=False)
    assert old.status_code in (301, 308)
    assert old.headers["location"] == "/api/v1/docs"


def test_openapi_declares_bearer_token_and_cookie_with_csrf_header(client: TestClient) -> None:
    schemes = _doc(client)["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    cookie = schemes["sessionCookie"]
    assert (cookie["type"], cookie["in"], cookie["name"]) == ("apiKey", "cookie", "opdesk_session")
    csrf = schemes["csrfToken"]
    assert (csrf["type"], csrf["in"], csrf["name"]) == ("apiKey", "header", "X-CSRF-Token")


def test_routes_that_need_a_session_reference_the_schemes(client: TestClient) -> None:
    paths = _doc(client)["paths"]
    # A read: a bearer token or the session cookie.
    assert paths["/api/v1/users"]["get"]["security"] == [
        {"bearerToken": []},
        {"sessionCookie": []},
    ]
    # A write: with the cookie, the CSRF header too.
    assert paths["/api/v1/users"]["post"]["security"] == [
        {"bearerToken": []},
        {"sessionCookie": [], "csrfToken": []},
    ]
    # Public routes ask for nothing.
    assert "security" not in paths["/api/v1/auth/sign-in"]["post"]
    assert "security" not in paths["/api/v1/clinics/{slug}"]["get"]


def test_exactly_the_routes_that_need_a_session_are_secured(
    app: FastAPI, client: TestClient
) -> None:
    """Checked against each route's declared action, so no route is left out."""
    paths = _doc(client)["paths"]
    checked = 0
    for route in declared_routes(app):
        operation = paths.get(route.path, {}).get(route.method.lower())
        if operation is None:
            continue  # a page, or a route kept out of the document
        checked += 1
        public = route.action in (PUBLIC, DEV_ONLY)
        assert ("security" in operation) is not public, f"{route}"
    assert checked >= 40
