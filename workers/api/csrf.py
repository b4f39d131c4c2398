"""CSRF defence for cookie-authenticated state changes: same origin, and the session's CSRF token.

SameSite=Strict alone is not enough: a page of the same *site* (another port of the same host)
is not cross-site, so the browser sends the cookie with its forms. Every POST that a session
cookie authenticates must therefore (1) come from this very origin, by its ``Origin`` header or,
without one, its ``Referer`` (neither: refused), and by ``Sec-Fetch-Site`` when the browser sends
it; and (2) carry the session's CSRF token in the form field ``csrf_token``, which the dashboard's
templates render into every form. Requests authenticated by the bearer token need neither:
browsers never attach that header on their own.

Written here rather than taken from a library: ``starlette-csrf`` reads the token from a request
header only (the dashboard's forms work without JavaScript, so the token travels in the form
body), and ``fastapi-csrf-protect`` parses form bodies by string replacement and wants a second
signed cookie and a secret; both keep the token in a cookie (double submit), while the session
already lives in Redis, where its token can be compared directly.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status

from workers.api.sessions import Session

#: The form field that carries the session's CSRF token.
CSRF_FIELD = "csrf_token"
#: ``Sec-Fetch-Site`` values of requests that this origin's own pages made (or the user typed).
OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def own_origins(request: Request) -> set[str]:
    """This request's own origin(s): its scheme and host, as seen directly and through a proxy."""
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")} - {""}
    schemes = {request.url.scheme, request.headers.get("x-forwarded-proto", request.url.scheme)}
    return {f"{scheme}://{host}".lower() for scheme in schemes for host in hosts}


def claimed_origin(request: Request) -> str:
    """Where the browser says the request came from: ``Origin``, else the origin of ``Referer``, else ""."""
    if origin := request.headers.get("origin"):
        return origin.lower()
    referer = urlsplit(request.headers.get("referer", ""))
    return f"{referer.scheme}://{referer.netloc}".lower() if referer.scheme and referer.netloc else ""


def require_same_origin(request: Request) -> None:
    """403 unless the request says it came from this origin (saying nothing is refused too)."""
    origin = claimed_origin(request)
    if not origin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "refused: the request names no Origin or Referer")
    if origin not in own_origins(request) or request.headers.get("sec-fetch-site", "none") not in OWN_FETCH_SITES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "refused: the request came from another origin")


def require_csrf_token(session: Session, fields: dict[str, str]) -> None:
    """403 unless the form carries the session's CSRF token."""
    given = fields.get(CSRF_FIELD, "")
    if not given or not hmac.compare_digest(given.encode(), session.csrf_token.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "refused: missing or wrong CSRF token (reload the page and try again)")
