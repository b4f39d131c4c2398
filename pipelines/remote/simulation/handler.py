"""The simulator's HTTP server: routing, the key gate and JSON in and out.

Each API request waits the configured latency, then passes the key ledger (401, 5xx burst,
429 with ``Retry-After``), then reaches its route. Control endpoints answer only loopback
clients. Nothing here logs headers, so keys never reach a log.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipelines.remote.simulation.admin_routes import ADMIN_ROUTES
from pipelines.remote.simulation.protocol import (
    Route,
    SimError,
    SimRequest,
    SimResponse,
    error_response,
)
from pipelines.remote.simulation.provider_routes import PROVIDER_ROUTES
from pipelines.remote.simulation.state import SimState

#: Every endpoint, provider APIs first.
ROUTES: tuple[Route, ...] = PROVIDER_ROUTES + ADMIN_ROUTES
#: Client addresses allowed to use the ``/_sim/`` control endpoints.
LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
#: Largest request body read, in bytes.
MAX_BODY_BYTES = 1 << 20
#: Reason codes of the key gate's refusals.
GATE_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


class SimServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the simulator's state; request threads never block shutdown."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], state: SimState) -> None:
        super().__init__(address, SimHandler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hung up (a client timing out on a slow answer); report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bearer_key(authorization: str | None) -> str | None:
    """Return the key from ``Bearer KEY`` (or Replicate's older ``Token KEY``), else None."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    return (key.strip() or None) if scheme.lower() in ("bearer", "token") else None


class SimHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests from the route table."""

    server: SimServer
    protocol_version = "HTTP/1.1"
    #: Headers and body go out in two writes; with Nagle on, each answer waits ~40 ms for an ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the default writes every request line to stderr."""

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        body = self._read_body()
        matched = [(r, m) for r in ROUTES if (m := r.pattern.match(path))]
        if not matched:
            return self._send(error_response("plain", 404, f"no endpoint {path}", "not_found"))
        allowed = [(r, m) for r, m in matched if r.method == method]
        if not allowed:
            return self._send(error_response("plain", 405, f"{method} not allowed on {path}", "method_not_allowed"))
        route, match = allowed[0]
        params = {name: urllib.parse.unquote(value) for name, value in match.groupdict().items()}
        if path.startswith("/_sim/") and self.client_address[0] not in LOOPBACK:
            return self._send(error_response("plain", 403, "control endpoints answer loopback only", "forbidden"))
        if route.auth:
            time.sleep(state.latency_ms / 1000)
            verdict = state.ledger.admit(bearer_key(self.headers.get("Authorization")), counted=route.counted)
            if verdict.status != 200:
                headers = {"Retry-After": str(verdict.retry_after_s)} if verdict.retry_after_s is not None else {}
                code = GATE_CODES.get(verdict.status, "server_error")
                message = f"simulated {verdict.status}" + (
                    f": request was throttled, expected available in {verdict.retry_after_s} s"
                    if verdict.retry_after_s is not None
                    else ""
                )
                return self._send(error_response(route.style, verdict.status, message, code, headers))
        if body is None:
            return self._send(error_response(route.style, 400, "body is not a JSON object", "invalid_json"))
        try:
            response = route.handle(state, SimRequest(params, body, self.server.base_url))
        except SimError as error:
            response = error_response(route.style, error.status, error.message, error.code)
        self._send(response)

    def _read_body(self) -> dict[str, Any] | None:
        """Return the JSON object body ({} when there is none), or None when it is not one."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length <= 0:
            return {}
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the rest of the body stays unread: drop the connection
            return None
        raw = self.rfile.read(length)
        try:
            payload = json.loads(raw)
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def _send(self, response: SimResponse) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)
