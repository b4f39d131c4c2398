"""The FastAPI application: job API under /v1, dashboard under /dashboard, metrics at /metrics.

FastAPI's own /docs, /redoc and /openapi.json are off: workers/api/docs.py serves /docs and
/openapi.json behind the token, with Swagger UI from an installed package instead of a CDN.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from queue_config.settings import Settings, get_settings
from workers.api.context import ApiContext
from workers.api.security_headers import SecurityHeaders, server_error
from workers.outages import OUTAGE_ERRORS

#: What a client is told to wait before trying again while Redis is unreachable.
RETRY_AFTER_S = 5


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, served under ``settings.api_root_path`` (a URL prefix behind a proxy)."""
    settings = settings or get_settings()
    app = FastAPI(title="framequeue", version="1", root_path=settings.api_root_path,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(Exception, server_error)
    app.state.context = ApiContext(settings)
    from workers.api import routes

    for router in routes.ROUTERS:
        app.include_router(router)
    for error in OUTAGE_ERRORS:
        app.add_exception_handler(error, redis_unreachable)
    return app


async def redis_unreachable(request: Request, error: Exception) -> JSONResponse:
    """503 with Retry-After while Redis is unreachable; the next request reconnects."""
    return JSONResponse({"detail": "the job store is unreachable; try again shortly"}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})
