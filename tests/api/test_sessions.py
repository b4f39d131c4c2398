"""Dashboard sessions and CSRF: what the cookie holds and opens, sign-out, expiry, forged POSTs.

Real servers on loopback: the app under uvicorn, real Redis; the last test drives chromium with
a hostile page served from another loopback port (same site, another origin).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.api.test_dashboard import BROWSER_DIR, PAGES, TOKEN, browser_ready, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, cleaned_namespace, failed_job
from tests.servers import wait_for
from workers.api.sessions import COOKIE, SESSION_ID
from workers.jobs.submit import submit_job

#: A sign-in that lasts this long, for the expiry test.
SHORT_SESSION_TTL_S = 2


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[Namespace, str]]:
    """A namespace of its own (no worker: its jobs stay queued) and the base URL of an app serving it."""
    for ns in cleaned_namespace(settings, "sessions"):
        with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url:
            yield ns, url


def queued_job(ns: Namespace) -> str:
    spec = JobSpec(prompt="a paper boat", kind=JobKind.image, width=64, height=64)
    submit_job(ns.broker, ns.status, spec)
    return spec.id


def session_id_of(client: httpx.Client) -> str:
    return str(client.cookies[COOKIE])


def test_the_cookie_holds_a_random_expiring_session_id_and_never_the_token(served: tuple[Namespace, str]) -> None:
    ns, url = served
    with signed_in(url) as client:
        session_id = session_id_of(client)
        stored = ns.status.client.hgetall(f"{ns.settings.namespace}:session:{session_id}")
        ttl_s = ns.status.client.ttl(f"{ns.settings.namespace}:session:{session_id}")

    assert SESSION_ID.fullmatch(session_id) and TOKEN not in session_id
    assert set(stored) == {"created_at", "csrf_token", "token"} and TOKEN not in stored.values()
    assert stored["csrf_token"] == client.csrf_token and 0 < ttl_s <= 12 * 3600


def test_the_session_cookie_opens_the_dashboard_only(served: tuple[Namespace, str]) -> None:
    ns, url = served
    job_id = queued_job(ns)
    with signed_in(url) as client:
        dashboard = client.get("/dashboard")
        api = [client.get("/v1/jobs"), client.get(f"/v1/jobs/{job_id}"), client.post(f"/v1/jobs/{job_id}/cancel"),
               client.post("/v1/jobs", json={"prompt": "a forged job"}), client.get("/metrics")]
    # The cookie of old, which held the token itself, opens nothing any more.
    with httpx.Client(base_url=url, cookies={"framequeue_token": TOKEN}) as old:
        old_api, old_dashboard = old.get("/v1/jobs"), old.get("/dashboard")

    assert dashboard.status_code == 200
    assert [response.status_code for response in api] == [401] * 5
    assert ns.status.state_of(job_id) == "queued" and ns.status.list_jobs(limit=10)[0].id == job_id
    assert old_api.status_code == 401 and old_dashboard.status_code == 303


def test_signing_out_revokes_the_session(served: tuple[Namespace, str]) -> None:
    ns, url = served
    job_id = queued_job(ns)
    with signed_in(url) as client:
        session_id, csrf_token = session_id_of(client), client.csrf_token
        out = client.post("/dashboard/logout", data=client.form())
    key = f"{ns.settings.namespace}:session:{session_id}"

    with httpx.Client(base_url=url, cookies={COOKIE: session_id}, headers={"Origin": url}) as stale:
        page = stale.get("/dashboard/jobs")
        action = stale.post(f"/dashboard/jobs/{job_id}/cancel", data={"csrf_token": csrf_token, "confirmed": "yes"})

    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert f'{COOKIE}=""' in out.headers["set-cookie"] and "max-age=0" in out.headers["set-cookie"].lower()
    assert ns.status.client.exists(key) == 0
    assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login")
    assert action.status_code == 401 and ns.status.state_of(job_id) == "queued"


def test_an_expired_session_is_refused(settings: Settings) -> None:
    for ns in cleaned_namespace(settings, "sessions-ttl"):
        short = ns.settings.model_copy(update={"api_token": TOKEN, "dashboard_session_ttl_s": SHORT_SESSION_TTL_S})
        with api_server(short) as url, signed_in(url) as client:
            session_id = session_id_of(client)
            assert client.get("/dashboard").status_code == 200
            # The browser drops the cookie at its Max-Age; a replayed id is what the server must refuse.
            with httpx.Client(base_url=url, cookies={COOKIE: session_id}) as replay:
                expired = wait_for(lambda: (page := replay.get("/dashboard")).status_code == 303 and page,
                                   SHORT_SESSION_TTL_S + 10, "the session to expire")
        key = f"{ns.settings.namespace}:session:{session_id}"

    assert expired.headers["location"].startswith("/dashboard/login") and ns.status.client.exists(key) == 0


def test_rotating_the_api_token_signs_every_browser_out(served: tuple[Namespace, str]) -> None:
    ns, url = served
    with signed_in(url) as client:
        session_id = session_id_of(client)
    rotated = ns.settings.model_copy(update={"api_token": "the-new-token"})
    with api_server(rotated) as new_url, httpx.Client(base_url=new_url, cookies={COOKIE: session_id}) as stale:
        page = stale.get("/dashboard")

    assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login")


# CSRF -------------------------------------------------------------------------------------------

def cancel(client: httpx.Client, url: str, job_id: str, fields: dict[str, str], **headers: str) -> httpx.Response:
    return client.post(f"{url}/dashboard/jobs/{job_id}/cancel", data={"confirmed": "yes", **fields}, headers=headers)


def test_every_form_that_posts_carries_the_sessions_csrf_token(served: tuple[Namespace, str]) -> None:
    ns, url = served
    job_id = queued_job(ns)
    failed_job(ns)
    with signed_in(url) as client:
        pages = {page: client.get(f"/dashboard{page}").text for page in (*PAGES, f"/jobs/{job_id}")}
        pages["confirm"] = cancel(client, url, job_id, client.form(confirmed="")).text

    for name, page in pages.items():
        forms = re.findall(r'<form[^>]*method="post".*?</form>', page, re.S)
        assert forms, name
        assert all(f'name="csrf_token" value="{client.csrf_token}"' in form for form in forms), name


def test_a_cookie_post_without_the_sessions_csrf_token_is_refused(served: tuple[Namespace, str]) -> None:
    ns, url = served
    job_id = queued_job(ns)
    with signed_in(url) as client:
        missing = cancel(client, url, job_id, {})
        wrong = cancel(client, url, job_id, {"csrf_token": "x" * 43})
        others = cancel(client, url, job_id, {"csrf_token": csrf_of_another_session(url)})

    assert [r.status_code for r in (missing, wrong, others)] == [403, 403, 403]
    assert "CSRF token" in missing.json()["detail"] and ns.status.state_of(job_id) == "queued"


def csrf_of_another_session(url: str) -> str:
    with signed_in(url) as other:
        return other.csrf_token


def test_a_cookie_post_from_another_origin_or_from_nowhere_is_refused(served: tuple[Namespace, str]) -> None:
    ns, url = served
    job_id = queued_job(ns)
    other_port = url.replace("127.0.0.1:", "127.0.0.1:1")  # same host, another port: same site, another origin
    with signed_in(url) as client:
        form = client.form()
        answers = [
            cancel(client, url, job_id, form, Origin=other_port),
            cancel(client, url, job_id, form, Origin="null"),
            cancel(client, url, job_id, form, Origin=url, **{"Sec-Fetch-Site": "same-site"}),
        ]
        client.headers.pop("Origin")
        answers += [cancel(client, url, job_id, form, Referer=f"{other_port}/dashboard"),
                    cancel(client, url, job_id, form)]

    assert [r.status_code for r in answers] == [403] * 5, [r.text for r in answers]
    assert "another origin" in answers[0].json()["detail"] and "no Origin or Referer" in answers[-1].json()["detail"]
    assert ns.status.state_of(job_id) == "queued"


def test_a_cookie_post_from_this_origin_with_the_csrf_token_works(served: tuple[Namespace, str]) -> None:
    ns, url = served
    by_origin, by_referer, by_bearer = queued_job(ns), queued_job(ns), queued_job(ns)
    with signed_in(url) as client:
        first = cancel(client, url, by_origin, client.form())
        client.headers.pop("Origin")
        second = cancel(client, url, by_referer, client.form(), Referer=f"{url}/dashboard/jobs/{by_referer}")
    # A script with the bearer token is no browser: no cookie, so neither check applies.
    third = cancel(httpx.Client(), url, by_bearer, {}, Authorization=f"Bearer {TOKEN}")

    assert [r.status_code for r in (first, second, third)] == [303, 303, 303]
    assert {ns.status.state_of(job_id) for job_id in (by_origin, by_referer, by_bearer)} == {"cancelled"}


def test_signing_out_needs_the_csrf_token_too(served: tuple[Namespace, str]) -> None:
    _, url = served
    with signed_in(url) as client:
        forged = client.post("/dashboard/logout", data={})
        still_in = client.get("/dashboard")

    assert forged.status_code == 403 and still_in.status_code == 200


# A hostile page in a real browser -----------------------------------------------------------------

@contextmanager
def hostile_page(target: str, job_id: str) -> Iterator[str]:
    """A page on another loopback port that posts a cancel of ``job_id`` to ``target`` as soon as it loads."""
    page = f"""<!doctype html><title>win a prize</title>
<form id="f" method="post" action="{target}/dashboard/jobs/{job_id}/cancel">
<input name="confirmed" value="yes"><input name="csrf_token" value="guessed"><input name="back" value=""></form>
<script>document.getElementById("f").submit()</script>""".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.timeout(300)
def test_a_page_on_another_port_cannot_act_for_a_signed_in_operator_in_a_real_browser(
    served: tuple[Namespace, str]
) -> None:
    if reason := browser_ready():
        pytest.skip(reason)
    ns, url = served
    target, control = queued_job(ns), queued_job(ns)

    with hostile_page(url, target) as evil:
        config = {"baseUrl": url, "token": TOKEN, "evilUrl": evil, "targetJob": target, "controlJob": control}
        run = subprocess.run(["node", "cross_origin.mjs", json.dumps(config)], cwd=BROWSER_DIR, capture_output=True,
                             text=True, timeout=200, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    # The browser did send the session cookie (same site): the CSRF checks refused the post.
    assert seen["forgedStatus"] == 403 and seen["cookieSent"] is True, seen
    assert ns.status.state_of(target) == "queued"
    # The same browser, through the dashboard's own button, can cancel: the refusal was the forgery's.
    assert seen["controlFlash"] == "Job cancelled." and ns.status.state_of(control) == "cancelled"
