"""The FastAPI application: job API under /v1, dashboard under /dashboard, metrics at /metrics."""

from __future__ import annotations

from fastapi import FastAPI

from queue_config.settings import Settings, get_settings
from workers.api.context import ApiContext


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, served under ``settings.api_root_path`` (a URL prefix behind a proxy)."""
    settings = settings or get_settings()
    app = FastAPI(title="framequeue", version="1", root_path=settings.api_root_path)
    app.state.context = ApiContext(settings)
    from workers.api import routes

    for router in routes.ROUTERS:
        app.include_router(router)
    return app
