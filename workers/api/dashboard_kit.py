"""What the dashboard's pages and actions share: templates, sign-in checks, routing helpers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates

from storage import ObjectStore, open_store
from workers import batches, ops
from workers.api.context import context, require_token
from workers.api.csrf import require_csrf_token, require_same_origin
from workers.api.sessions import current_session
from workers.batches.files import BATCH_ID_PATTERN

#: Text artifacts up to this size are shown inline on the job page.
INLINE_TEXT_MAX_BYTES = 4096
#: Jobs the overview's state counts cover, newest first (the page refreshes every 5 s).
OVERVIEW_COUNTED_JOBS = 10_000
#: Batches shown on the overview, newest first.
OVERVIEW_BATCHES = 20
#: Jobs listed on a batch's page, by line number.
BATCH_PAGE_JOBS = 200
#: What an action reports on the page it returns to: fixed texts, nothing from the URL is echoed.
DONE = {
    "requeued": "Requeued: the message is back on its queue with its retries reset.",
    "deleted": "Dead letter deleted.", "emptied": "Queue emptied; the jobs it carried were cancelled.",
    "cancelled": "Job cancelled.", "gone": "Nothing to do: it was already gone or finished.",
    "retried": "The batch's failed jobs are queued again, from their first stage.",
    "batch_cancelled": "Batch cancelled: its unfinished jobs stop at their next message.",
    "job_retried": "The job is queued again.",
    "key_enabled": "Key enabled: workers may pick it again.", "key_disabled": "Key disabled for every worker.",
}
#: Pages show live state: never cached. (CSP, framing and the rest: workers/api/security_headers.py.)
_HEADERS = {"Cache-Control": "no-store"}
#: Methods that change nothing: a session cookie alone may ask for them.
SAFE_METHODS = frozenset({"GET", "HEAD"})
DASHBOARD_DIR = Path(__file__).parent
_bearer = HTTPBearer(auto_error=False)


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _ago(epoch_s: float) -> str:
    seconds = max(0.0, time.time() - epoch_s)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _due(epoch_s: float) -> str:
    """When something is due, for people: ``in 5 min``, or ``due now`` once its time has come."""
    seconds = epoch_s - time.time()
    return "due now" if seconds <= 0 else f"in {_span(seconds)}"


def _seconds(seconds: float | None) -> str:
    """A run time for people: ``0.42 s``, ``12 s``, ``3.5 min``; "—" when there is none."""
    if seconds is None:
        return "—"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"


def _span(seconds: float | None) -> str:
    """A duration for people (``2 h 5 min``), or "—" when there is none."""
    if seconds is None:
        return "—"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min" if minutes else f"{seconds:.0f} s"


TEMPLATES = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(DASHBOARD_DIR / "templates"),
                                                   autoescape=True, undefined=jinja2.StrictUndefined))
TEMPLATES.env.filters.update(ago=_ago, due=_due, seconds=_seconds, span=_span,
                             clock=lambda s: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s)))


async def signed_in(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """The bearer token, or a live session whose POSTs come from this origin with its CSRF token.

    A browser that has not signed in (or whose session expired or was signed out) is sent to the
    login form; a POST without either is refused (401), one failing the CSRF checks too (403).
    """
    if credentials is not None:
        require_token(request, credentials)
        return
    session = current_session(request)
    if session is None:
        if request.method not in SAFE_METHODS:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in first")
        login = f"{root_of(request)}/dashboard/login?next={quote(here(request))}"
        raise HTTPException(status.HTTP_303_SEE_OTHER, "sign in first", headers={"Location": login})
    if request.method not in SAFE_METHODS:
        require_same_origin(request)
        require_csrf_token(session, await form_of(request))
    request.state.session = session


def same_site(request: Request) -> None:
    """Refuse a sign-in that a browser says came from another site (the cookie-less POST: no CSRF token yet)."""
    origin = request.headers.get("origin")
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    if request.headers.get("sec-fetch-site") == "cross-site" or (origin and urlsplit(origin).netloc not in hosts):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")


async def form_of(request: Request) -> dict[str, str]:
    """The POSTed urlencoded form (parsed here: no multipart dependency for three fields)."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


Form = Annotated[dict[str, str], Depends(form_of)]
router = APIRouter(prefix="/dashboard", include_in_schema=False)
guarded = APIRouter(dependencies=[Depends(signed_in)])
actions = APIRouter(dependencies=[Depends(signed_in)])


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> Response:
    """The page, or with ``?format=json`` what it shows as JSON: the values the template is given, for scripts."""
    if request.query_params.get("format") == "json":
        return JSONResponse(jsonable_encoder(values), status_code, headers=_HEADERS)
    done = DONE.get(request.query_params.get("done", ""), "")
    session = getattr(request.state, "session", None)
    values = {"root": root_of(request), "done": done, "here": here(request),
              "csrf_token": session.csrf_token if session else "", **values}
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status_code, headers=_HEADERS)


def here(request: Request, *, query: bool = True) -> str:
    """This page's URL path under the root path (whether or not the server already put it in ``path``)."""
    root, path = root_of(request), request.url.path
    path = path[len(root):] if root and path.startswith(f"{root}/") else path
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "done"] if query else []
    return root + path + (f"?{urlencode(kept)}" if kept else "")


def safe_back(request: Request, value: str) -> str:
    """``value`` if it is a dashboard path of this site (a place to return to), else ""."""
    back = urlsplit(value)
    local = not (back.scheme or back.netloc) and "//" not in back.path and "\\" not in value
    return value if local and back.path.startswith(f"{root_of(request)}/dashboard") else ""


def back_to(request: Request, fields: dict[str, str], fallback: str, done: str = "") -> RedirectResponse:
    """See-other to the dashboard page the form came from (else ``fallback``), reporting ``done``."""
    back = urlsplit(safe_back(request, fields.get("back", "")) or f"{root_of(request)}/dashboard{fallback}")
    query = [(k, v) for k, v in parse_qsl(back.query) if k != "done"] + ([("done", done)] if done else [])
    return RedirectResponse(back.path + (f"?{urlencode(query)}" if query else ""), status.HTTP_303_SEE_OTHER)


def ask_first(request: Request, fields: dict[str, str], question: str) -> Response | None:
    """The confirmation page, unless the form says the operator has confirmed already."""
    if fields.get("confirmed") == "yes":
        return None
    return render(request, "confirm.html", question=question, action=here(request, query=False),
                  back=safe_back(request, fields.get("back", "")))


def store_of(request: Request) -> ObjectStore:
    state = request.app.state
    if getattr(state, "dashboard_store", None) is None:
        state.dashboard_store = open_store(context(request).settings)
    return state.dashboard_store  # type: ignore[no-any-return]


def known_queue(queue: str) -> str:
    if queue not in ops.queue_names():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no stage queue {queue!r}")
    return queue


def known_batch(request: Request, batch_id: str) -> dict[str, Any]:
    """The batch's progress, or 404."""
    found = batches.batch_progress(context(request).status, batch_id) if BATCH_ID_PATTERN.fullmatch(batch_id) else None
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch {batch_id!r}")
    return found


def with_manifest_url(request: Request, progress: dict[str, Any]) -> dict[str, Any]:
    """``progress`` plus ``manifest_url``: the store's share URL, or this dashboard's when a browser cannot open it."""
    url, key = "", progress["manifest_key"]
    if key:
        url = store_of(request).share_url(key, context(request).settings.presigned_url_ttl_s)
        if not url.startswith(("http://", "https://")):
            url = f"{root_of(request)}/dashboard/batches/{progress['batch_id']}/manifest"
    return {**progress, "manifest_url": url}
