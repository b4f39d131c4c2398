"""``/openapi.json`` and ``/docs`` (Swagger UI), for holders of the API token only, served offline.

Both need the bearer token, or the session of an operator signed in to the dashboard (so that a
browser can open them: it cannot send the header on a navigation; both are read-only GETs, so a
session risks nothing here that CSRF could use), unless ``api_public_docs`` opens them to anyone.
Swagger UI's script and stylesheet come from the installed ``fastapi-offline`` package (Swagger
UI 5, which reads FastAPI's OpenAPI 3.1; ``swagger-ui-bundle`` ships Swagger UI 4, which cannot),
never from a CDN. FastAPI's own page starts Swagger UI with an inline script, which the
Content-Security-Policy refuses, so the page is a template of ours and its start-up a static file.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from workers.api.context import context, require_token
from workers.api.dashboard_kit import DASHBOARD_DIR, TEMPLATES, root_of
from workers.api.sessions import current_session

#: Swagger UI's files as ``fastapi-offline`` installs them, and the page's start-up script (ours).
SWAGGER_DIR = files("fastapi_offline") / "static"
ASSETS = {**{name: SWAGGER_DIR / name for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")},
          "docs.js": DASHBOARD_DIR / "static" / "docs.js"}
#: How long browsers may keep those files.
ASSET_MAX_AGE_S = 3600
_bearer = HTTPBearer(auto_error=False)


def may_read_docs(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Public docs, the bearer token, or a live dashboard session; 401 otherwise."""
    if context(request).settings.api_public_docs or (credentials is None and current_session(request)):
        return
    require_token(request, credentials)


router = APIRouter(include_in_schema=False)
guarded = APIRouter(dependencies=[Depends(may_read_docs)])


@guarded.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    """The API's OpenAPI document; behind a URL prefix its server is the prefix (as FastAPI's own)."""
    schema: dict[str, Any] = request.app.openapi()
    if root := root_of(request):
        schema = {**schema, "servers": [{"url": root}]}
    return JSONResponse(schema)


@guarded.get("/docs")
def docs(request: Request) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "docs.html", {"root": root_of(request)},
                                      headers={"Cache-Control": "no-store"})


@router.get("/docs/assets/{name}")
def asset(name: str) -> FileResponse:
    """Swagger UI's files: public, like any library's (the API's description is what the token guards)."""
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return FileResponse(str(ASSETS[name]), headers={"Cache-Control": f"max-age={ASSET_MAX_AGE_S}"})


router.include_router(guarded)
