"""Inside one clinic, a patient reaches only their family's records, through one scope.

Row-level security separates clinics, not patients of one clinic: the portal routes do
that with ``opdesk.patients.deps.family_of``. Every portal route that names a record
in its path must load it through that scope; a route added without it fails here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from opdesk.patients.deps import MyFamily, family_of
from opdesk.scheduling.deps import Me
from opdesk.web.deps import Allow


def _calls(dependant: Dependant) -> Iterator[object]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls(dep)


def _is_portal(route: Any) -> bool:
    return any(
        isinstance(call, Allow) and call.action == "portal:self" for call in _calls(route.dependant)
    )


def portal_id_routes(routes: Iterable[BaseRoute]) -> list[Any]:
    return [
        route
        for route in iter_route_contexts(list(routes))
        if isinstance(route.original_route, APIRoute)
        and _is_portal(route)
        and "_id}" in (route.path or "")
    ]


def unscoped_portal_id_routes(routes: Iterable[BaseRoute]) -> list[str]:
    """Portal routes with an id in the path that do not go through the family scope."""
    return [
        f"{','.join(sorted(route.methods or ()))} {route.path}"
        for route in portal_id_routes(routes)
        if family_of not in set(_calls(route.dependant))
    ]


def test_every_portal_route_with_an_id_is_scoped_to_the_family(app: FastAPI) -> None:
    found = portal_id_routes(app.routes)
    assert len(found) >= 8, "appointments, offers, consents, documents"
    assert unscoped_portal_id_routes(app.routes) == []


def test_the_check_finds_a_portal_route_that_skips_the_scope() -> None:
    router = APIRouter()

    @router.post("/me/things/{thing_id}/cancel")
    def unscoped(thing_id: str, _: Me) -> None: ...

    @router.post("/me/things/{thing_id}/keep")
    def scoped(thing_id: str, _: Me, family: MyFamily) -> None: ...

    assert unscoped_portal_id_routes(router.routes) == ["POST /me/things/{thing_id}/cancel"]
