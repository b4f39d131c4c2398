"""Dashboard sign-in sessions: a random id in the browser's cookie, the session itself in Redis.

Signing in with the API token creates ``{namespace}:session:{id}`` (a hash: ``created_at``, the
session's ``csrf_token`` and the fingerprint of the API token it was opened with) that expires
``dashboard_session_ttl_s`` after sign-in, however busy the session is; signing out deletes it.
The cookie carries the id only, never the token, and opens the dashboard's routes only: ``/v1``
and ``/metrics`` take the bearer token and nothing else. A session opened with another API token
than the one this process has (the token was rotated) is refused, so rotating the token signs
every browser out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import cast

import redis
from fastapi import Request, Response

from workers.api.context import context

#: The cookie that holds a session's id.
COOKIE = "framequeue_session"
#: Bytes of randomness in a session id and in a CSRF token (256 bits).
TOKEN_BYTES = 32
#: What a session id looks like (``secrets.token_urlsafe``): anything else is not looked up.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Session:
    id: str
    created_at: float
    csrf_token: str


def token_fingerprint(token: str) -> str:
    """The first 12 hex digits of the token's sha256: tells tokens apart, gives nothing of it away."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class SessionStore:
    """Sessions in Redis under ``{namespace}:session:{id}``, each expiring ``ttl_s`` after it began."""

    def __init__(self, client: redis.Redis, namespace: str, ttl_s: int) -> None:
        self.client, self.namespace, self.ttl_s = client, namespace, ttl_s

    def key(self, session_id: str) -> str:
        return f"{self.namespace}:session:{session_id}"

    def create(self, api_token: str) -> Session:
        session = Session(secrets.token_urlsafe(TOKEN_BYTES), time.time(), secrets.token_urlsafe(TOKEN_BYTES))
        with self.client.pipeline() as pipe:  # MULTI/EXEC: never a session without its expiry
            pipe.hset(self.key(session.id), mapping={"created_at": session.created_at, "csrf_token": session.csrf_token,
                                                     "token": token_fingerprint(api_token)})
            pipe.expire(self.key(session.id), self.ttl_s)
            pipe.execute()
        return session

    def get(self, session_id: str, api_token: str) -> Session | None:
        """The live session of that id opened with this API token, or None."""
        if not SESSION_ID.fullmatch(session_id):
            return None
        found = cast("dict[str, str]", self.client.hgetall(self.key(session_id)))
        if not found or not hmac.compare_digest(found.get("token", ""), token_fingerprint(api_token)):
            return None
        return Session(session_id, float(found["created_at"]), found["csrf_token"])

    def revoke(self, session_id: str) -> None:
        if SESSION_ID.fullmatch(session_id):
            self.client.delete(self.key(session_id))


def sessions_of(request: Request) -> SessionStore:
    settings = context(request).settings
    return SessionStore(context(request).redis, settings.namespace, settings.dashboard_session_ttl_s)


def current_session(request: Request) -> Session | None:
    """The session the request's cookie names, if it is live (and the API token is set at all)."""
    session_id, api_token = request.cookies.get(COOKIE, ""), context(request).settings.api_token
    return sessions_of(request).get(session_id, api_token) if session_id and api_token else None


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    """HttpOnly (no script reads it), SameSite=Strict, Secure over https, for this app's paths only."""
    response.set_cookie(COOKIE, session.id, max_age=context(request).settings.dashboard_session_ttl_s,
                        path=cookie_path(request), secure=request.url.scheme == "https", httponly=True,
                        samesite="strict")


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path=cookie_path(request), secure=request.url.scheme == "https",
                           httponly=True, samesite="strict")


def cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/"
