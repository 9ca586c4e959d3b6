"""The local HTTP API. Routes parse, call the service, return: no rules in here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from edge.service import Service


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="Gatehouse edge", version="0.1.0")

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"detail": problems or "bad request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, _exc: Exception) -> JSONResponse:
        # logged by the server; the answer carries no stack trace
        return JSONResponse({"detail": "the service could not complete this request"}, 503)

    @app.get("/health/live")
    def live() -> dict[str, str]:
        """The process answers (the watchdog covers its threads)."""
        return {"status": "live"}

    @app.get("/health/ready")
    def ready() -> JSONResponse:
        """Database, broker and each reader; 503 while any is not ready."""
        ok, body = service.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    return app
