"""The small vocabulary the simulator's routes speak: a request in, a response out, a route table entry."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pipelines.remote.simulation.state import SimState

#: How errors are shaped: OpenAI's ``{"error": {...}}``, Replicate's ``{"title", "detail", "status"}``.
ErrorStyle = Literal["openai", "replicate", "plain"]


@dataclass(frozen=True)
class SimRequest:
    """One parsed request: path parameters from the route, the JSON body, the server's own URL."""

    params: dict[str, str]
    body: dict[str, Any]
    base_url: str


@dataclass(frozen=True)
class SimResponse:
    """What the handler writes back."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class SimError(Exception):
    """Raised by a route to answer with an error status in the route's style."""

    def __init__(self, status: int, message: str, code: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> SimResponse:
    return SimResponse(status, json.dumps(payload).encode("utf-8"), headers=dict(headers or {}))


def error_response(
    style: ErrorStyle, status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> SimResponse:
    """An error body shaped the way the route's real provider shapes it."""
    if style == "openai":
        return json_response(status, {"error": {"message": message, "type": code, "code": code}}, headers)
    if style == "replicate":
        return json_response(status, {"title": code, "detail": message, "status": status}, headers)
    return json_response(status, {"error": message}, headers)


@dataclass(frozen=True)
class Route:
    """One endpoint.

    Attributes:
        method: The HTTP method.
        pattern: A regex over the path, whose named groups become ``SimRequest.params``.
        handle: Builds the response; may raise :class:`SimError`.
        style: How its errors (including 401/429/5xx) are shaped.
        auth: Whether a key is required (the provider API) or not (admin, output files).
        counted: Whether an accepted request uses quota (creations do, polls do not).
    """

    method: str
    pattern: re.Pattern[str]
    handle: Callable[[SimState, SimRequest], SimResponse]
    style: ErrorStyle = "plain"
    auth: bool = False
    counted: bool = False


def route(method: str, path: str, handle: Callable[[SimState, SimRequest], SimResponse], **options: Any) -> Route:
    """Build a :class:`Route` from a path with ``{name}`` placeholders (each one path segment)."""
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")
    return Route(method, pattern, handle, **options)
