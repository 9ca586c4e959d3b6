"""The local HTTP API. Routes parse, authorise, call a domain function, return."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from edge import console, health, users
from edge.api import (
    control,
    gate,
    keys,
    passes,
    patrol,
    permits,
    photos,
    slips,
    snapshots,
    visitors,
)
from edge.api.limits import (
    MAX_BODY,
    CredentialsFirst,
    PrivateDocs,
    answer_large_bodies_in_json,
    too_large,
    trusted_peer,
)
from edge.console import pages
from edge.errors import DomainError
from edge.messages import refusal
from edge.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from edge.service import Service

log = logging.getLogger(__name__)


def create_app(service: Service) -> FastAPI:
    # /docs and /redoc with their scripts served from the package, not a CDN: the
    # guard-room PC is often offline
    app = FastAPIOffline(title="Gatehouse edge", version="0.2.0", max_body_size=MAX_BODY)
    app.add_middleware(CredentialsFirst)
    app.add_middleware(PrivateDocs)
    answer_large_bodies_in_json(app)  # a 413 in JSON like every refusal
    app.state.service = service
    for module in (passes, photos, gate, slips, visitors, control, snapshots, keys, permits,
                   patrol):  # fmt: skip
        _declare_roles(module.router.routes)
        app.include_router(module.router)
    # the pages: each checks its session itself
    app.state.accounts = pages.EdgeAccounts(service)
    app.include_router(console.router)
    app.include_router(pages.router)
    app.mount("/static", console.static, name="static")

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        service.count("refused:api")
        return JSONResponse(refusal(problems or "bad request", exc.errors()), status_code=422)

    @app.exception_handler(DomainError)
    async def _refused(_r: Request, exc: DomainError) -> JSONResponse:
        service.count("refused:api")
        return JSONResponse(refusal(str(exc)), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(r: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = too_large(r.scope) if exc.status_code == 413 else exc.detail
        return JSONResponse(refusal(detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("API request failed", exc_info=exc)
        service.count("api_errors")
        # no stack trace in the answer; 503 says "try again", which is what is true
        return JSONResponse(refusal("the service could not complete this request"), 503)

    @app.get("/health/live", tags=["health"])
    def live() -> dict[str, str]:
        """The process answers (the watchdog covers its threads)."""
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"])
    def ready(request: Request) -> JSONResponse:
        """Database, broker and each reader; 503 while any is not ready. The whole report
        (device paths, counters, the sync's last error) for this machine, a person logged
        in or a valid token; anyone else on the LAN learns only ``{"ready": …}``."""
        ok, body = health.report(service)
        if not trusted_peer(request.scope) and not _token_ok(request):
            body = {"ready": ok}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"])
    def metrics(request: Request) -> Response:
        """Prometheus metrics (text format): for this machine, a person logged in or a
        valid token (a scraper elsewhere sends one as its bearer token)."""
        if not trusted_peer(request.scope) and not _token_ok(request):
            said = refusal("a valid bearer token is required for the metrics")
            return JSONResponse(said, 401, headers={"WWW-Authenticate": "Bearer"})
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    def _token_ok(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        return service.read(lambda c: users.authenticate(c, token.strip())) is not None

    return app


def _declare_roles(routes: list[BaseRoute]) -> None:
    """List each /api/ route's roles in the OpenAPI document; refuse to start with a route
    that declares none, so no route is left open by accident."""
    for route in routes:
        if not isinstance(route, APIRoute):
            raise RuntimeError(f"{route} is not an API route")
        allowed = [
            r for dep in route.dependant.dependencies for r in getattr(dep.call, "roles", ())
        ]
        if not allowed:
            raise RuntimeError(f"{route.path} declares no roles")
        route.openapi_extra = {**(route.openapi_extra or {}), "x-roles": allowed}
