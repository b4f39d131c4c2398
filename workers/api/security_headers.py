"""Security headers on every response: pages, JSON, artifacts, static files and errors alike.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which would buffer the job
event stream): it adds each header to the response's start message unless the route set its own
(the artifact routes set a stricter policy). Responses to unhandled exceptions are made outside
every middleware, by Starlette's ``ServerErrorMiddleware``: ``server_error`` gives them the same
headers. A dict and a wrapper of ``send`` are the whole of it, so no library (``secure`` and the
like bring defaults of their own that we would have to undo).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request
from fastapi.responses import PlainTextResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: What pages may load: their own scripts, styles and fonts only (no inline script); images and
#: video also from the object store's presigned URLs (another host), and ``data:`` images (Swagger
#: UI's stylesheet draws its icons so). No plugins, no <base>, forms post here, no framing.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: http: https:; media-src 'self' http: https:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Stored bytes are never a page: an artifact opened on its own runs nothing and loads nothing.
ARTIFACT_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
#: The headers every response carries.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Adds ``headers`` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, *, headers: Mapping[str, str] = SECURITY_HEADERS) -> None:
        self.app, self.headers = app, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def server_error(request: Request, error: Exception) -> PlainTextResponse:
    """The 500 of an unhandled exception, with the security headers (it is sent outside the middleware)."""
    return PlainTextResponse("Internal Server Error", status_code=500, headers=dict(SECURITY_HEADERS))
