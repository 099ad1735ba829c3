"""The 503's advice to resend "with the same Idempotency-Key" is given only on routes that
honour the key: anywhere else the key is ignored, and the advice would make a retry act
twice.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.requests import Request

from opdesk.web.unavailable import takes_idempotency_key


def request_to(app: FastAPI, method: str, path: str) -> Request:
    """A request as routing leaves it: ``scope["route"]`` is the matched route itself."""
    [route] = [
        r.original_route
        for r in iter_route_contexts(app.routes)
        if r.path == path and method in (r.methods or ())
    ]
    assert isinstance(route, APIRoute)
    return Request({"type": "http", "method": method, "route": route, "headers": []})


def test_only_routes_that_declare_the_key_are_said_to_honour_it(app: FastAPI) -> None:
    assert takes_idempotency_key(request_to(app, "POST", "/api/v1/appointments"))
    assert not takes_idempotency_key(request_to(app, "POST", "/api/v1/patients"))
    assert not takes_idempotency_key(Request({"type": "http", "method": "POST", "headers": []}))


def test_the_api_description_explains_503_and_the_key(app: FastAPI) -> None:
    doc = app.openapi()
    described = doc["info"]["description"]
    assert "Retry-After" in described and "Idempotency-Key" in described
    booking = doc["paths"]["/api/v1/appointments"]["post"]
    assert "503" in booking["responses"]
    assert any(p["name"] == "Idempotency-Key" for p in booking["parameters"])
