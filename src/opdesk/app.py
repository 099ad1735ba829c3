"""``create_app()``: API routers under /api/v1, HTML routers, middleware, static files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from opdesk import health, metrics
from opdesk.abdm import api as abdm_api
from opdesk.abdm import web as abdm_web
from opdesk.automation import web as automation_web
from opdesk.billing import api as billing_api
from opdesk.billing import web as billing_web
from opdesk.bootstrap import bootstrap
from opdesk.clinical.web import orders as orders_web
from opdesk.clinical.web import rx as rx_web
from opdesk.clinical.web import visits as visits_web
from opdesk.config import Settings, get_settings
from opdesk.consents import api as consents_api
from opdesk.consents import web as consents_web
from opdesk.consents.models import consent_label
from opdesk.context import Clock, utc_now
from opdesk.db import Database, EmbeddedServer, open_configured
from opdesk.demo import DEMO_SLUG
from opdesk.documents import api as documents_api
from opdesk.fhir import api as fhir_api
from opdesk.hotpool import HotPool
from opdesk.identity import api as identity_api
from opdesk.identity import web as identity_web
from opdesk.logsetup import configure_logging
from opdesk.migrate import schema_problem, upgrade
from opdesk.notifications import api as notifications_api
from opdesk.notifications import web as notifications_web
from opdesk.patients import api as patients_api
from opdesk.patients import web as patients_web
from opdesk.portal import api as portal_api
from opdesk.portal import booking as portal_booking
from opdesk.portal import sign_in as portal_sign_in
from opdesk.portal import web as portal_web
from opdesk.privacy import api as privacy_api
from opdesk.privacy import web as privacy_web
from opdesk.reports import web as reports_web
from opdesk.scheduling import admin_web as doctors_admin_web
from opdesk.scheduling import api as scheduling_api
from opdesk.scheduling import web as scheduling_web
from opdesk.schemas import Problem
from opdesk.security.crypto import KeyringSource
from opdesk.security.keys import load_keyring
from opdesk.security.permissions import DEV_ONLY, PUBLIC
from opdesk.tenancy import api as tenancy_api
from opdesk.tenancy import web as tenancy_web
from opdesk.web.assets import ASSETS
from opdesk.web.deps import SESSION_COOKIE, Allow, Open, no_nul_in_query
from opdesk.web.middleware import CompressMiddleware, RequestMiddleware
from opdesk.web.problems import install_problem_handlers
from opdesk.web.templating import NavEntry

API_PREFIX = "/api/v1"
DOCS_PATH = f"{API_PREFIX}/docs"


def docs_page() -> str:
    """Swagger UI for the API, its files under their hashed names."""
    url = ASSETS.url
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OPDesk API</title>
<link rel="stylesheet" href="{url("vendor/swagger-ui/swagger-ui.css")}"></head>
<body><div id="swagger-ui"></div>
<script src="{url("vendor/swagger-ui/swagger-ui-bundle.js")}"></script>
<script src="{url("api-docs.js")}"></script></body></html>"""


class PageModule(Protocol):
    """A domain's pages: its router and the navigation entries it adds."""

    @property
    def router(self) -> APIRouter: ...

    @property
    def NAV(self) -> tuple[NavEntry, ...]: ...  # noqa: N802 (a module constant)


# The page routers, in the order their links appear within a navigation section.
def page_modules(*modules: PageModule) -> tuple[PageModule, ...]:
    return modules


PAGE_MODULES = page_modules(
    tenancy_web,
    portal_sign_in,
    portal_web,
    identity_web,
    notifications_web,
    automation_web,
    patients_web,
    consents_web,
    scheduling_web,
    visits_web,
    rx_web,
    orders_web,
    billing_web,
    reports_web,
    doctors_admin_web,
    portal_booking,
    privacy_web,
    abdm_web,
)


def template_filters() -> dict[str, Callable[..., Any]]:
    """Template filters a domain adds for its own words."""
    return {"consent_label": consent_label}


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    # Routes are matched in order, one by one: the busiest (booking, patients) go first
    # (and the hot paths before all, in create_app).
    router.include_router(scheduling_api.router)
    router.include_router(patients_api.router)
    router.include_router(portal_api.router)
    router.include_router(identity_api.router)
    router.include_router(documents_api.router)
    router.include_router(consents_api.router)
    router.include_router(tenancy_api.router)
    router.include_router(notifications_api.router)
    router.include_router(automation_web.api)
    router.include_router(visits_web.api)
    router.include_router(rx_web.api)
    router.include_router(orders_web.api)
    router.include_router(billing_api.router)
    router.include_router(privacy_api.router)
    router.include_router(abdm_api.router)
    return router


def _schema_ready(db: Database, settings: Settings) -> None:
    """Dev migrates itself; production only starts on this release's schema."""
    if settings.env == "dev":
        upgrade(db.owner_engine)
        return
    with db.owner_engine.connect() as conn:
        problem = schema_problem(conn)
    if problem:
        raise RuntimeError(problem)


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    keyring: KeyringSource | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """The OPDesk application.

    Without ``database`` the app opens the configured one (starting the embedded
    server if no URL is set) and migrates it when it starts.
    """
    settings = settings or get_settings()
    services = bootstrap(
        settings,
        keyring or load_keyring(settings),
        navigation=tuple(entry for module in PAGE_MODULES for entry in module.NAV),
        filters=template_filters(),
        clock=clock,
        demo_slug=DEMO_SLUG,
    )
    server: list[EmbeddedServer] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if database is None:
            db, embedded = open_configured(settings)
            _schema_ready(db, settings)
            app.state.db = db
            server.extend([embedded] if embedded else [])
        metrics.watch_pool(app.state.db.app_engine.pool)
        metrics.POOL_SIZE.set(app.state.db.pool_size)
        metrics.POOL_WAIT_SECONDS.set(app.state.db.pool_wait_seconds)
        if getattr(app.state, "hot", None) is None:
            app.state.hot = HotPool(
                app.state.db,
                size=settings.db_pool_size,
                wait_seconds=settings.db_pool_wait_seconds,
            )
        await app.state.hot.open()
        yield
        await app.state.hot.close()
        if database is None:
            app.state.db.dispose()

    app = FastAPI(
        title="OPDesk",
        version="0.1.0",
        summary="Outpatient clinic system for Indian clinics",
        description=API_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(no_nul_in_query)],
    )
    app.state.services = services
    app.state.db = database  # opened by the lifespan when not given

    install_problem_handlers(app)
    app.add_middleware(CompressMiddleware)
    app.add_middleware(RequestMiddleware, hsts=settings.is_https)
    if settings.proxy_networks:
        # Outermost, so the request id, the audit and every per-address limit see the
        # client the trusted proxy names; anyone else's X-Forwarded-For is ignored.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.proxy_networks)
    app.include_router(scheduling_api.hot_router, prefix=API_PREFIX)
    app.mount("/static", ASSETS, name="static")
    app.include_router(health.router)
    app.include_router(api_router())
    app.include_router(fhir_api.router)
    for module in PAGE_MODULES:
        app.include_router(module.router)
    app.include_router(documents_api.share_router)

    @app.get(DOCS_PATH, include_in_schema=False, dependencies=[Depends(Open())])
    def api_docs() -> HTMLResponse:
        return HTMLResponse(docs_page())

    @app.get("/api/docs", include_in_schema=False, dependencies=[Depends(Open())])
    def old_api_docs() -> RedirectResponse:
        """The docs' first address, kept for bookmarks."""
        return RedirectResponse(DOCS_PATH, status_code=308)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


API_DESCRIPTION = """\
Every error is a problem document (`application/problem+json`): `title`, `status`, a
`detail` written for people, and `errors` naming each bad field with its reason.

**When OPDesk is briefly unavailable** (its database restarting for an upgrade, every
connection busy, a query cut off by the statement timeout) the answer is **503** with a
`Retry-After` header in seconds and `fault` set to `unavailable`, `busy` or `slow`. It is
never a 500, and it is safe to wait `Retry-After` seconds and send the request again.

**Was it saved?** A read can always be repeated. A write that was refused before it reached
the database, or whose connection broke before its commit, was not saved, and the
`detail` says "Nothing was saved". Only when the connection broke while the commit was on
its way does the `detail` say it *may or may not* have been saved: look before repeating
it. Writes whose effect must not happen twice (booking, paying, the portal's bookings)
take an **`Idempotency-Key`** header (any unique text up to 200 characters; the routes
that honour it list it among their parameters): repeated with the same key and body, the
request returns the first answer instead of acting twice, so a retry after any 503 is
safe. The same key with a different body is 409.
"""


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the shared ``Problem`` schema every error refers to, and
    the two ways to call the API signed in (so the docs page offers "Authorize").
    """
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = doc.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema(by_alias=True)
        components["securitySchemes"] = SECURITY_SCHEMES
        for route in iter_route_contexts(app.routes):
            if isinstance(route.original_route, APIRoute) and route.include_in_schema:
                _declare_security(doc, route)
        app.openapi_schema = doc
    return app.openapi_schema


SECURITY_SCHEMES: dict[str, Any] = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The `token` that `POST /api/v1/auth/sign-in` (staff) or "
        "`POST /api/v1/auth/patient-sign-in` (patients) answers with.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The browser session the pages use.",
    },
    "csrfToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "With the session cookie, every request that changes something "
        "carries the page's CSRF token in this header.",
    },
}
# Either a bearer token, or the cookie (with the CSRF header when the request writes).
READ_SECURITY: list[dict[str, list[str]]] = [{"bearerToken": []}, {"sessionCookie": []}]
WRITE_SECURITY: list[dict[str, list[str]]] = [
    {"bearerToken": []},
    {"sessionCookie": [], "csrfToken": []},
]


def route_action(route: RouteContext) -> str | None:
    """The action a route declares with ``acting(...)`` / ``Allow``, if any."""
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, Allow):
            return dependant.call.action
        pending.extend(dependant.dependencies)
    return None


def _declare_security(doc: dict[str, Any], route: RouteContext) -> None:
    """A route that needs a session says so; public ones (sign-in, clinic pages) do not."""
    action = route_action(route)
    if action is None or action in (PUBLIC, DEV_ONLY):
        return
    operations = doc["paths"].get(route.path_format or "", {})
    for method in route.methods or ():
        operation = operations.get(method.lower())
        if operation is not None:
            writes = method not in ("GET", "HEAD", "OPTIONS")
            operation["security"] = WRITE_SECURITY if writes else READ_SECURITY


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers share the settings' database)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
