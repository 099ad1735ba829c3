"""Every route that reaches the database is a plain ``def``.

The session is synchronous: an ``async def`` endpoint using it, or any model object a
dependency loaded through it, would block the event loop for every other request.
Forms are read in an ``async`` dependency instead (``opdesk.web.pages.PostedForm``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from opdesk.identity.sessions import Principal
from opdesk.web.deps import DbSession, acting, db_session
from opdesk.web.pages import PostedForm


def _reaches_session(dependant: Dependant) -> bool:
    return any(d.call is db_session or _reaches_session(d) for d in dependant.dependencies)


def async_routes_with_session(routes: Iterable[BaseRoute]) -> list[str]:
    """``METHOD /path`` of each ``async def`` endpoint whose dependencies open the session."""
    return [
        f"{','.join(sorted(route.methods or ()))} {route.path}"
        for route in routes
        if isinstance(route, APIRoute)
        and inspect.iscoroutinefunction(route.endpoint)
        and _reaches_session(route.dependant)
    ]


def test_no_async_endpoint_touches_the_database(app: FastAPI) -> None:
    assert [r for r in app.routes if isinstance(r, APIRoute)], "the app has routes"
    assert async_routes_with_session(app.routes) == []


def test_the_check_finds_a_session_taken_directly_or_through_a_dependency() -> None:
    router = APIRouter()

    @router.post("/direct")
    async def direct(session: DbSession) -> None: ...

    @router.post("/indirect")
    async def indirect(_: Annotated[Principal, acting("clinic:manage")]) -> None: ...

    @router.post("/sync")
    def sync(session: DbSession, form: PostedForm) -> None: ...

    @router.get("/no-database")
    async def no_database() -> None: ...

    assert async_routes_with_session(router.routes) == ["POST /direct", "POST /indirect"]
