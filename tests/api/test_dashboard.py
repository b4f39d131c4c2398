"""The operator dashboard: pages and actions over HTTP, then a real browser against real workers."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dramatiq
import httpx
import pytest
import torch
from PIL import Image

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from storage import open_store
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, cleaned_namespace, failed_job, namespace_for
from tests.queues import FRAMES_QUEUE, IMAGE_QUEUE, PROMPT_QUEUE
from tests.servers import wait_for
from workers import ops
from workers.jobs.outcome import StageOutcome
from workers.jobs.progress import StageProgress
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job

TOKEN = "test-token"
BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
#: Pages every signed-in operator can open (relative to /dashboard).
PAGES = ("", "/jobs", "/jobs?state=failed", "/failed", f"/failed?queue={IMAGE_QUEUE}", f"/queues/{IMAGE_QUEUE}")


@pytest.fixture(scope="module")
def dashboard(settings: Settings) -> Iterator[tuple[Namespace, str]]:
    """A namespace of its own (no worker) and the base URL of an app serving it."""
    ns = namespace_for(settings, "dashboard")
    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url:
        yield ns, url


@pytest.fixture
def own_dashboard(settings: Settings) -> Iterator[tuple[Namespace, str]]:
    """Like ``dashboard``, for a test that acts on every dead letter of a queue: a namespace no other test uses."""
    for ns in cleaned_namespace(settings, "dashboard-all"):
        with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url:
            yield ns, url


class Operator(httpx.Client):
    """A browser signed in to the dashboard: it names its own origin, as browsers do, and ``form``
    adds the session's CSRF token, as the dashboard's forms do."""

    csrf_token = ""

    def form(self, **fields: str) -> dict[str, str]:
        return {"csrf_token": self.csrf_token, **fields}


def csrf_token_of(page: str) -> str:
    """The CSRF token the page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page's forms carry no CSRF token"
    return found.group(1)


@contextmanager
def signed_in(base_url: str) -> Iterator[Operator]:
    """A client that has signed in with the login form (it holds the session cookie)."""
    with Operator(base_url=base_url, headers={"Origin": base_url}, timeout=30) as client:
        response = client.post("/dashboard/login", data={"token": TOKEN, "next": ""})
        assert response.status_code == 303, response.text
        client.csrf_token = csrf_token_of(client.get("/dashboard").text)
        yield client


def post(client: Operator, path: str, **fields: str) -> httpx.Response:
    return client.post(path, data=client.form(back=f"/dashboard/failed?queue={IMAGE_QUEUE}", **fields))


def test_a_browser_that_has_not_signed_in_is_sent_to_the_login_form(dashboard: tuple[Namespace, str]) -> None:
    _, url = dashboard
    response = httpx.get(f"{url}/dashboard/failed?queue={IMAGE_QUEUE}")

    assert response.status_code == 303
    assert response.headers["location"] == f"/dashboard/login?next=/dashboard/failed%3Fqueue%3D{IMAGE_QUEUE}"
    assert httpx.post(f"{url}/dashboard/queues/{IMAGE_QUEUE}/empty", data={"confirmed": "yes"}).status_code == 401
    assert httpx.get(f"{url}/dashboard", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_signing_in_sets_a_strict_httponly_cookie_and_returns_to_the_page(dashboard: tuple[Namespace, str]) -> None:
    _, url = dashboard
    wrong = httpx.post(f"{url}/dashboard/login", data={"token": "nope", "next": "/dashboard/jobs"})
    response = httpx.post(f"{url}/dashboard/login", data={"token": TOKEN, "next": "/dashboard/jobs?state=failed"})
    elsewhere = httpx.post(f"{url}/dashboard/login", data={"token": TOKEN, "next": "https://evil.example/x"})

    assert wrong.status_code == 401 and "Wrong token." in wrong.text and "set-cookie" not in wrong.headers
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/jobs?state=failed"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("framequeue_session=") and TOKEN not in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=43200" in cookie and "path=/;" in cookie
    assert elsewhere.headers["location"] == "/dashboard"


def test_every_page_renders_without_secrets_and_refuses_framing(dashboard: tuple[Namespace, str]) -> None:
    ns, url = dashboard
    failed_job(ns)
    ns.status.client.hset(f"{ns.settings.namespace}:keys:replicate:0a1b2c3d4e5f", mapping={"requests": 2})

    with signed_in(url) as client:
        for page in PAGES:
            response = client.get(f"/dashboard{page}")
            assert response.status_code == 200, (page, response.text)
            assert TOKEN not in response.text and "test-secret-key" not in response.text, page
            assert response.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in \
                response.headers["content-security-policy"]
        overview = client.get("/dashboard").text
    assert "0a1b2c3d4e5f" in overview and f'data-queue="{IMAGE_QUEUE}"' in overview and "Throughput" in overview


def test_a_job_page_shows_its_stages_error_and_artifact_previews(dashboard: tuple[Namespace, str],
                                                                 settings: Settings) -> None:
    ns, url = dashboard
    spec = JobSpec(prompt="a moth on a lamp", kind=JobKind.image, width=64, height=64)
    ns.status.create(spec, stage_plan(spec.kind))
    store, png = open_store(settings), io.BytesIO()
    Image.new("RGB", (8, 8), "teal").save(png, "PNG")
    image = store.put_content("images", png.getvalue(), "png", "image/png")
    prompt = store.put_content("prompts", b"a moth on a lamp, soft light", "txt", "text/plain")
    ns.status.stage_started(spec.id, "image", 1)
    ns.status.stage_finished(spec.id, "image", 1.25, StageOutcome(artifacts={"image": image, "prompt": prompt}))
    ns.status.stage_failed(spec.id, "safety_check", "RuntimeError: classifier crashed", "some-message")

    with signed_in(url) as client:
        page = client.get(f"/dashboard/jobs/{spec.id}").text

    assert 'data-state="failed"' in page and "RuntimeError: classifier crashed" in page
    image_row = r'data-stage="image">\s*<td>image</td>\s*<td class="num">1.25 s</td>\s*<td class="num">1</td>'
    assert re.search(image_row, page)
    src = re.search(r'<img src="([^"]+)" alt="image"', page)
    assert src and src.group(1).startswith(settings.s3_endpoint_url)
    assert httpx.get(src.group(1).replace("&amp;", "&")).content == png.getvalue()
    assert "a moth on a lamp, soft light" in page


def test_requeue_and_delete_act_on_dead_letters_and_say_so(dashboard: tuple[Namespace, str]) -> None:
    ns, url = dashboard
    spec, requeued = failed_job(ns)
    _, deleted = failed_job(ns)

    deleting = f"/dashboard/failed/{IMAGE_QUEUE}/{deleted.options['redis_message_id']}/delete"
    with signed_in(url) as client:
        answer = post(client, f"/dashboard/failed/{IMAGE_QUEUE}/{requeued.options['redis_message_id']}/requeue")
        ask = post(client, deleting)
        assert ns.status.dead_letter_reason(deleted.message_id) is not None
        done = post(client, deleting, confirmed="yes")
        again = post(client, deleting, confirmed="yes")
        flash = client.get(answer.headers["location"]).text

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/dashboard/failed?queue={IMAGE_QUEUE}&done=requeued"
    assert "Requeued" in flash and ns.status.state_of(spec.id) == "queued"
    assert ask.status_code == 200 and "Are you sure?" in ask.text and 'name="confirmed" value="yes"' in ask.text
    assert done.headers["location"].endswith("done=deleted") and again.headers["location"].endswith("done=gone")
    assert ns.status.dead_letter_reason(deleted.message_id) is None
    assert {letter_id for letter_id in ns.status.client.zrange(f"{ns.settings.namespace}:{IMAGE_QUEUE}.XQ", 0, -1)} & {
        requeued.options["redis_message_id"], deleted.options["redis_message_id"]} == set()


def test_requeue_all_puts_every_dead_letter_of_the_queue_back_with_its_retries_reset(
    own_dashboard: tuple[Namespace, str]
) -> None:
    ns, url = own_dashboard
    # One more than the failed page lists: "all" is every letter of the queue, not the page's.
    letters = {spec.id: letter for spec, letter in (failed_job(ns) for _ in range(ops.DEAD_LETTERS_LIMIT + 1))}
    _, elsewhere = failed_job(ns, stage="upload")
    key = f"{ns.settings.namespace}:{IMAGE_QUEUE}"

    with signed_in(url) as client:
        page = client.get(f"/dashboard/failed?queue={IMAGE_QUEUE}").text
        answer = post(client, f"/dashboard/failed/{IMAGE_QUEUE}/requeue-all")

    assert f'action="/dashboard/failed/{IMAGE_QUEUE}/requeue-all"' in page
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/dashboard/failed?queue={IMAGE_QUEUE}&done=requeued"
    assert ns.status.client.zcard(f"{key}.XQ") == ns.status.client.hlen(f"{key}.XQ.msgs") == 0
    queued = ops.ready_messages(ns.status, IMAGE_QUEUE, limit=len(letters) + 1)
    assert sorted(body["message_id"] for body in queued) == sorted(letter.message_id for letter in letters.values())
    assert all(body["options"].get("retries", 0) == 0 for body in queued)
    assert all(letter.options["retries"] == 3 for letter in letters.values())
    assert {job_id: ns.status.state_of(job_id) for job_id in letters} == dict.fromkeys(letters, "queued")
    assert all(ns.status.dead_letter_reason(letter.message_id) is None for letter in letters.values())
    requeued_events = {fields["job_id"] for _, fields in ns.status.client.xrange(ns.status.events_key)
                       if fields["event"] == "requeued"}
    assert requeued_events == set(letters)
    assert [letter.message_id for letter in ops.dead_letters(ns.status, "upload")] == [elsewhere.message_id]


def test_emptying_a_queue_asks_first_then_cancels_the_jobs_it_carried(dashboard: tuple[Namespace, str]) -> None:
    ns, url = dashboard
    waiting = JobSpec(prompt="a snail race", kind=JobKind.video, width=64, height=64)
    submit_job(ns.broker, ns.status, waiting)

    with signed_in(url) as client:
        ask = client.post(f"/dashboard/queues/{PROMPT_QUEUE}/empty", data=client.form(back="/dashboard"))
        assert ns.status.state_of(waiting.id) == "queued"
        emptied = client.post(f"/dashboard/queues/{PROMPT_QUEUE}/empty",
                              data=client.form(back="/dashboard", confirmed="yes"))
        unknown = client.post("/dashboard/queues/nope/empty", data=client.form(confirmed="yes"))

    assert "Are you sure?" in ask.text and emptied.headers["location"] == "/dashboard?done=emptied"
    assert ns.status.state_of(waiting.id) == "cancelled" and ns.status.client.llen(
        f"{ns.settings.namespace}:{PROMPT_QUEUE}") == 0
    assert unknown.status_code == 404


def test_cancelling_a_running_job_asks_first_then_cancels_it_and_says_so(dashboard: tuple[Namespace, str]) -> None:
    ns, url = dashboard
    running = JobSpec(prompt="a tin robot", kind=JobKind.image, width=64, height=64)
    submit_job(ns.broker, ns.status, running)
    ns.status.stage_started(running.id, "prompt_enhance", 0)
    before = ns.status.client.xrevrange(ns.status.events_key, count=1)[0][0]

    with signed_in(url) as client:
        ask = client.post(f"/dashboard/jobs/{running.id}/cancel", data=client.form())
        assert ns.status.state_of(running.id) == "running"
        cancelled = client.post(f"/dashboard/jobs/{running.id}/cancel", data=client.form(confirmed="yes"))
        flash = client.get(cancelled.headers["location"]).text
        again = client.post(f"/dashboard/jobs/{running.id}/cancel", data=client.form(confirmed="yes"))

    assert "Are you sure?" in ask.text
    assert cancelled.headers["location"] == f"/dashboard/jobs/{running.id}?done=cancelled" and "Job cancelled." in flash
    assert ns.status.state_of(running.id) == "cancelled" and running.id in ns.status.cancelled_since(0)[0]
    events = [fields for _, fields in ns.status.client.xrange(ns.status.events_key, min=f"({before}")
              if fields["job_id"] == running.id]
    assert [fields["event"] for fields in events] == ["cancelled"] and events[0]["error"] == "cancelled on request"
    assert again.headers["location"] == f"/dashboard/jobs/{running.id}?done=gone"


def test_cross_site_posts_and_foreign_return_addresses_are_refused(dashboard: tuple[Namespace, str]) -> None:
    ns, url = dashboard
    _, letter = failed_job(ns)
    path = f"/dashboard/failed/{IMAGE_QUEUE}/{letter.options['redis_message_id']}/requeue"

    with signed_in(url) as client:
        forged = client.post(path, data=client.form(), headers={"Origin": "https://evil.example"})
        fetched = client.post(path, data=client.form(), headers={"Sec-Fetch-Site": "same-site"})
        assert (forged.status_code, fetched.status_code) == (403, 403)
        assert ns.status.dead_letter_reason(letter.message_id) is not None
        sent_away = client.post(path, data=client.form(back="//evil.example/dashboard"))

    assert sent_away.status_code == 303 and sent_away.headers["location"] == "/dashboard/failed?done=requeued"


def test_links_follow_the_url_prefix(settings: Settings) -> None:
    ns = namespace_for(settings, "prefixed")
    prefixed = ns.settings.model_copy(update={"api_token": TOKEN, "api_root_path": "/ops/fq"})
    with api_server(prefixed) as url, httpx.Client(base_url=url) as client:
        login = client.get("/ops/fq/dashboard/login").text
        answer = client.post("/ops/fq/dashboard/login", data={"token": TOKEN, "next": "/ops/fq/dashboard/jobs"})
        page = client.get("/ops/fq/dashboard").text
        redirect = httpx.get(f"{url}/ops/fq/dashboard/failed")
        docs = client.get("/ops/fq/docs").text
        schema = client.get("/ops/fq/openapi.json").json()

    assert 'href="/ops/fq/dashboard/static/dashboard.css"' in login and 'action="/ops/fq/dashboard/login"' in login
    assert answer.headers["location"] == "/ops/fq/dashboard/jobs"
    assert "path=/ops/fq/" in answer.headers["set-cookie"].lower()
    assert f'href="/ops/fq/dashboard/queues/{IMAGE_QUEUE}"' in page
    assert f'action="/ops/fq/dashboard/queues/{IMAGE_QUEUE}/empty"' in page
    assert redirect.headers["location"].startswith("/ops/fq/dashboard/login?next=/ops/fq/dashboard/failed")
    assert 'src="/ops/fq/docs/assets/swagger-ui-bundle.js"' in docs
    assert 'data-openapi-url="/ops/fq/openapi.json"' in docs
    assert schema["servers"] == [{"url": "/ops/fq"}]


# The browser --------------------------------------------------------------------------------------

def browser_ready() -> str:
    """Why the browser test cannot run here, or "" when node, chromium and playwright-core are present."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm missing: apt-get install -y nodejs npm"
    if not CHROMIUM.exists():
        return "chromium missing: apt-get install -y chromium"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        installed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, capture_output=True,
                                   text=True, timeout=300, check=False)
        if installed.returncode != 0:
            return f"npm ci failed in {BROWSER_DIR}: {installed.stderr[-500:]}"
    return ""


def dead_lettered(status: JobStatusStore, queue_key: str, message_id: str) -> tuple[str, float] | None:
    """(broker id, dead-letter time in ms) of the message on the XQ, if it is there."""
    for redis_id, body in status.client.hgetall(f"{queue_key}.XQ.msgs").items():
        if json.loads(body)["message_id"] == message_id:
            score = status.client.zscore(f"{queue_key}.XQ", redis_id)
            return (redis_id, score) if score is not None else None
    return None


@pytest.mark.timeout(480)
@pytest.mark.usefixtures("workers")
def test_an_operator_sees_a_job_succeed_and_requeues_a_failed_message_in_a_real_browser(
    settings: Settings, broker: dramatiq.Broker, status: JobStatusStore, artifacts_dir: Path
) -> None:
    if reason := browser_ready():
        pytest.skip(reason)
    payload = {"job": {"prompt": "a cat", "width": 100}}
    invalid = dramatiq.Message(queue_name=IMAGE_QUEUE, actor_name=IMAGE_QUEUE, args=(payload,), kwargs={}, options={})
    broker.declare_queue(IMAGE_QUEUE)
    broker.enqueue(invalid)
    queue_key = f"{settings.namespace}:{IMAGE_QUEUE}"
    first = wait_for(lambda: status.dead_letter_reason(invalid.message_id) and dead_lettered(
        status, queue_key, invalid.message_id), 120, "the invalid message to be dead-lettered")
    spec = JobSpec(prompt="a lighthouse in fog", kind=JobKind.image, width=64, height=64, enhance_prompt=False)
    submit_job(broker, status, spec)

    config = {"token": TOKEN, "jobId": spec.id, "messageId": invalid.message_id, "artifactsDir": str(artifacts_dir),
              "imageQueue": IMAGE_QUEUE, "framesQueue": FRAMES_QUEUE}
    with api_server(settings.model_copy(update={"api_token": TOKEN})) as url:
        run = subprocess.run(["node", "dashboard.mjs", json.dumps({**config, "baseUrl": url})], cwd=BROWSER_DIR,
                             capture_output=True, text=True, timeout=400, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen["loginUrl"] == "/dashboard/login" and seen["cookieReadableByScripts"] is False
    assert seen["refreshed"] and seen["state"] == "succeeded" and seen["stages"] == list(stage_plan(JobKind.image))
    assert seen["imageWidth"] == 64
    assert "InvalidJob" in seen["reason"] and "must be a multiple of 8" in seen["reason"]
    assert "Requeued" in seen["flash"]
    assert seen["dialogs"] == [f"Remove every waiting message of {FRAMES_QUEUE} and cancel their jobs?"]
    assert seen["urlAfterDismiss"] == "/dashboard"
    assert seen["counts"]["succeeded"] >= 1 and TOKEN not in seen["html"]
    # The requeued message ran again and, being invalid, was dead-lettered again: later, under a new broker id.
    second = wait_for(lambda: (entry := dead_lettered(status, queue_key, invalid.message_id)) and entry != first
                      and entry, 60, "the requeued message to be dead-lettered again")
    assert second[0] != first[0] and second[1] > first[1]
    assert (artifacts_dir / "dashboard.png").stat().st_size > 20_000


def test_a_job_page_shows_its_place_in_the_queue_then_its_progress_and_the_forming_image(
    dashboard: tuple[Namespace, str]
) -> None:
    ns, url = dashboard
    spec = JobSpec(prompt="a moth, forming", kind=JobKind.image, width=64, height=64)
    ahead = ns.status.client.llen(f"{ns.settings.namespace}:{PROMPT_QUEUE}")
    submit_job(ns.broker, ns.status, spec)
    with signed_in(url) as client:
        queued_page = client.get(f"/dashboard/jobs/{spec.id}").text
        ns.status.stage_started(spec.id, "image", 1)
        StageProgress(ns.status, spec.id, "image")(3, 8, torch.zeros((1, 4, 8, 8)))
        running_page = client.get(f"/dashboard/jobs/{spec.id}").text
        preview = client.get(f"/dashboard/jobs/{spec.id}/preview")

    assert f'id="queue-position">{ahead} ahead' in queued_page
    assert re.search(r'data-stage="image">.*?<td class="num progress">3/8</td>', running_page, re.S)
    assert f'src="/dashboard/jobs/{spec.id}/preview"' in running_page
    assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size == (8, 8)
