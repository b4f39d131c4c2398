"""The job API over HTTP: uvicorn on loopback, real Redis, a real S3 server and a real worker process."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import fastapi.routing
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image

from queue_config.settings import Settings
from tests.servers import WorkerProcess, free_port, wait_for
from workers.api import create_app
from workers.jobs.record import JobStatusStore

TOKEN = "test-token"
#: The first job of a session waits for the worker to load every tiny model.
JOB_TIMEOUT_S = 120
#: A job the worker finishes in about a second once its models are loaded.
SMALL_IMAGE: dict[str, Any] = {
    "prompt": "a red fox in fresh snow", "kind": "image", "width": 64, "height": 64, "enhance_prompt": False,
}
#: Put into every refused body: no answer may repeat it.
SECRET = "sk-live-0123456789abcdef"
#: Refused bodies: (body, the fields the 422 must name, the error type of the first).
INVALID_BODIES: dict[str, tuple[bytes, list[str], str]] = {
    "malformed JSON": (f'{{"prompt": "{SECRET}", "width": '.encode(), [], "json_invalid"),
    "wrong types": (json.dumps({"prompt": "a fox", "width": SECRET, "steps": [4]}).encode(),
                    ["width", "steps"], "int_parsing"),
    "oversize prompt": (json.dumps({"prompt": SECRET + "x" * 1000}).encode(), ["prompt"], "string_too_long"),
    "schema_version 3": (json.dumps({"schema_version": 3, "prompt": SECRET}).encode(),
                         ["schema_version"], "literal_error"),
    "unknown field": (json.dumps({"prompt": "a fox", "api_key": SECRET}).encode(), ["api_key"], "extra_forbidden"),
    "no prompt": (json.dumps({"negative_prompt": SECRET}).encode(), ["prompt"], "missing"),
}
#: An image job's submission answer and every event of its stream.
FinishedJob = tuple[httpx.Response, list[dict[str, Any]]]


@contextmanager
def api_server(settings: Settings, app: FastAPI | None = None) -> Iterator[str]:
    """``create_app(settings)`` (or ``app``) served by uvicorn in a thread on a free loopback port; yields the base
    URL."""
    port = free_port()
    config = uvicorn.Config(app or create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "the API server to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def client_of(base_url: str, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=JOB_TIMEOUT_S)


@pytest.fixture(scope="module")
def api(settings: Settings, workers: WorkerProcess) -> Iterator[httpx.Client]:
    """A client of the API whose jobs the session's worker runs."""
    with api_server(settings.model_copy(update={"api_token": TOKEN})) as url, client_of(url) as client:
        yield client


@pytest.fixture(scope="module")
def idle_api(settings: Settings) -> Iterator[httpx.Client]:
    """A client of the API on a namespace no worker serves: its jobs stay queued until cancelled."""
    with api_server(settings.model_copy(update={"api_token": TOKEN, "namespace": "api-idle"})) as url, \
            client_of(url) as client:
        yield client


def read_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The SSE wire format, parsed: each event as {"event", "id", "data" (decoded JSON)}, each comment as
    {"comment"}."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event[name] = json.loads(value) if name == "data" else value
        elif event:
            yield event
            event = {}


def follow(client: httpx.Client, job_id: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every event of a job's stream, until the server ends it."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [event for event in read_events(response) if "comment" not in event]


def submit(client: httpx.Client, **changes: Any) -> str:
    response = client.post("/v1/jobs", json={**SMALL_IMAGE, **changes})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def xread_clients(status: JobStatusStore) -> int:
    """How many Redis connections last ran XREAD (a following stream blocks in one)."""
    return sum(client["cmd"] == "xread" for client in status.client.client_list())


@pytest.fixture(scope="module")
def finished_image_job(api: httpx.Client) -> FinishedJob:
    """An image job submitted over HTTP and followed to its end: (the submission's answer, its events)."""
    response = api.post("/v1/jobs", json=SMALL_IMAGE)
    assert response.status_code == 202, response.text
    return response, follow(api, response.json()["job_id"])


def test_a_submitted_image_job_streams_its_events_until_it_succeeds(
    api: httpx.Client, finished_image_job: FinishedJob
) -> None:
    response, events = finished_image_job
    job_id = response.json()["job_id"]
    assert response.json() == {"job_id": job_id, "state": "queued", "created": True, "reason": ""}
    assert response.headers["location"].endswith(f"/v1/jobs/{job_id}")

    record = api.get(f"/v1/jobs/{job_id}").json()

    names = [event["event"] for event in events]
    assert names[0] == "queued" and names[-1] == "succeeded", names
    assert {event["data"]["stage"] for event in events if event["event"] == "running"} == set(record["stages"])
    assert all(event["data"]["job_id"] == job_id and event["data"]["id"] == event["id"] for event in events)
    assert record["state"] == "succeeded" and record["result_url"].startswith("http")
    assert record["spec"]["width"] == 64 and set(record["timings_s"]) == set(record["stages"])


def test_a_stream_resumes_after_its_last_event_id_and_always_ends_with_the_final_state(
    api: httpx.Client, finished_image_job: FinishedJob
) -> None:
    response, events = finished_image_job

    resumed = follow(api, response.json()["job_id"], headers={"Last-Event-ID": events[1]["id"]})
    after_the_end = follow(api, response.json()["job_id"], headers={"Last-Event-ID": events[-1]["id"]})

    assert resumed == events[2:]
    # Nothing left in the stream, but the job has finished: its final state is told again, from the record.
    assert [(event["event"], event["data"]["id"], "id" in event) for event in after_the_end] == [
        ("succeeded", "", False)
    ]


def test_resubmitting_a_job_id_answers_200_and_queues_nothing(api: httpx.Client, finished_image_job: FinishedJob,
                                                              status: JobStatusStore) -> None:
    job_id = finished_image_job[0].json()["job_id"]

    response = api.post("/v1/jobs", json={**SMALL_IMAGE, "id": job_id})

    assert response.status_code == 200
    assert response.json() == {"job_id": job_id, "state": "succeeded", "created": False, "reason": ""}
    entries = cast("list[tuple[str, dict[str, str]]]", status.client.xrange(status.events_key))
    queued = [fields for _, fields in entries if fields["job_id"] == job_id and fields["event"] == "queued"]
    assert len(queued) == 1


def test_jobs_are_listed_newest_first_and_filtered_by_state_and_kind(api: httpx.Client, idle_api: httpx.Client,
                                                                     finished_image_job: FinishedJob) -> None:
    older, newer = submit(idle_api), submit(idle_api, kind="video", num_frames=4)

    def listed(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
        response = client.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["jobs"])

    everything = [job["id"] for job in listed(idle_api, limit=500)]
    assert everything.index(newer) < everything.index(older)
    assert [job["id"] for job in listed(idle_api, limit=1)] == [newer]
    videos = listed(idle_api, kind="video")
    assert newer in [job["id"] for job in videos] and older not in [job["id"] for job in videos]
    assert all(job["kind"] == "video" for job in videos)
    queued_images = listed(idle_api, state="queued", kind="image")
    assert older in [job["id"] for job in queued_images]
    assert all(job["state"] == "queued" and job["kind"] == "image" for job in queued_images)
    assert listed(idle_api, state="succeeded") == []
    succeeded = listed(api, state="succeeded", kind="image", limit=500)
    assert finished_image_job[0].json()["job_id"] in [job["id"] for job in succeeded]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"state": "done"}, {"kind": "gif"}])
def test_a_listing_with_a_bad_filter_is_refused(idle_api: httpx.Client, params: dict[str, Any]) -> None:
    response = idle_api.get("/v1/jobs", params=params)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", *params]]


def test_a_queued_job_can_be_cancelled_once_and_its_stream_ends(idle_api: httpx.Client) -> None:
    job_id = submit(idle_api)

    with idle_api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        events = read_events(stream)
        assert next(events)["event"] == "queued"
        response = idle_api.post(f"/v1/jobs/{job_id}/cancel")
        rest = [event for event in events if "comment" not in event]

    assert response.status_code == 200 and response.json() == {"cancelled": True}
    assert [event["event"] for event in rest] == ["cancelled"]
    assert idle_api.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    again = idle_api.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json() == {"detail": "job already cancelled"}


def test_a_finished_job_cannot_be_cancelled(api: httpx.Client, finished_image_job: FinishedJob) -> None:
    job_id = finished_image_job[0].json()["job_id"]

    response = api.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 409 and response.json() == {"detail": "job already succeeded"}
    assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"


def test_a_quiet_stream_sends_heartbeats_and_a_client_that_leaves_frees_its_redis_connection(
    idle_api: httpx.Client, status: JobStatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.2)  # the server runs in this process
    job_id = submit(idle_api)
    others = xread_clients(status)

    with idle_api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        events = read_events(stream)
        assert next(events)["event"] == "queued"
        assert next(events) == {"comment": "ping"}
        assert next(events) == {"comment": "ping"}
        wait_for(lambda: xread_clients(status) == others + 1, 5, "the stream to block in XREAD")

    wait_for(lambda: xread_clients(status) == others, 5, "the stream's Redis connection to close")


def test_a_blocked_prompt_is_recorded_as_blocked_with_the_reason(api: httpx.Client) -> None:
    response = api.post("/v1/jobs", json={**SMALL_IMAGE, "prompt": "a nude figure"})

    assert response.status_code == 200
    answer = response.json()
    assert answer["state"] == "blocked" and answer["created"] is True
    assert answer["reason"].startswith("blocked by the prompt check: sexual")
    record = api.get(f"/v1/jobs/{answer['job_id']}").json()
    assert record["state"] == "blocked" and record["error"] == answer["reason"]
    events = follow(api, answer["job_id"])
    assert [(event["event"], event["data"]["error"]) for event in events] == [("blocked", answer["reason"])]


@pytest.mark.parametrize("case", list(INVALID_BODIES))
def test_an_invalid_job_is_refused_with_its_errors_and_no_values_echoed(idle_api: httpx.Client, case: str) -> None:
    body, fields, first_type = INVALID_BODIES[case]

    response = idle_api.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert errors[0]["type"] == first_type
    assert [error["loc"] for error in errors if isinstance(error["loc"][-1], str)] == [["body", f] for f in fields]
    assert all(set(error) == {"loc", "msg", "type"} for error in errors)
    assert SECRET not in response.text


def test_a_good_job_still_runs_after_refused_requests(api: httpx.Client, status: JobStatusStore) -> None:
    dead_letters = status.client.hlen(status.dead_letters_key)
    for body, _, _ in INVALID_BODIES.values():
        assert api.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"}).status_code == 422
    oversize = api.post("/v1/jobs", json={**SMALL_IMAGE, "negative_prompt": "x" * 70_000})
    assert oversize.status_code == 413

    events = follow(api, submit(api, seed=11))

    assert events[-1]["event"] == "succeeded"
    assert status.client.hlen(status.dead_letters_key) == dead_letters


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no token", "wrong token"])
def test_every_job_route_refuses_a_request_without_the_right_token(idle_api: httpx.Client, token: str | None) -> None:
    job_id = submit(idle_api)
    routes = [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{job_id}"),
              ("POST", f"/v1/jobs/{job_id}/cancel"), ("GET", f"/v1/jobs/{job_id}/events")]

    with client_of(str(idle_api.base_url), token) as stranger:
        spec = {**SMALL_IMAGE, "id": "stranger-job"}
        answers = [stranger.request(method, path, json=spec) for method, path in routes]

    assert [answer.status_code for answer in answers] == [401] * len(routes)
    assert all(answer.headers["www-authenticate"] == "Bearer" for answer in answers)
    assert idle_api.get("/v1/jobs/stranger-job").status_code == 404
    assert idle_api.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/jobs/no-such-job"), ("POST", "/v1/jobs/no-such-job/cancel"), ("GET", "/v1/jobs/no-such-job/events"),
])
def test_a_job_that_does_not_exist_is_404(idle_api: httpx.Client, method: str, path: str) -> None:
    response = idle_api.request(method, path)

    assert response.status_code == 404 and response.json() == {"detail": "no such job"}


def test_openapi_documents_every_job_route(idle_api: httpx.Client) -> None:
    document = idle_api.get("/openapi.json").json()

    paths = document["paths"]
    operations = {(method.upper(), path): op for path, ops in paths.items() if path.startswith("/v1/")
                  for method, op in ops.items()}
    assert {("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}"),
            ("POST", "/v1/jobs/{job_id}/cancel"), ("GET", "/v1/jobs/{job_id}/events")} <= set(operations)
    assert all(op["summary"] and op["security"] == [{"HTTPBearer": []}] for op in operations.values())
    submit_op = operations["POST", "/v1/jobs"]
    assert submit_op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobSpec"}
    assert {"200", "202", "401", "413", "422"} <= set(submit_op["responses"])
    assert "JobRecord" in json.dumps(operations["GET", "/v1/jobs/{job_id}"]["responses"]["200"])
    stream = operations["GET", "/v1/jobs/{job_id}/events"]["responses"]["200"]["content"]["text/event-stream"]
    assert stream["itemSchema"]["properties"]["data"]["contentSchema"]["title"] == "JobEvent"
    assert idle_api.get("/docs").status_code == 200


def test_the_image_stage_streams_its_steps_and_a_preview_while_it_renders(api: httpx.Client) -> None:
    job_id = submit(api, steps=6, prompt="a red fox, step by step")

    events = follow(api, job_id)

    steps = [(event["data"]["step"], event["data"]["total"]) for event in events if event["event"] == "progress"]
    assert steps and steps[-1] == (6, 6) and all(total == 6 for _, total in steps), steps
    assert [step for step, _ in steps] == sorted(step for step, _ in steps)
    assert api.get(f"/v1/jobs/{job_id}").json()["progress"] == {"image": "6/6"}
    preview = api.get(f"/v1/jobs/{job_id}/preview")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(preview.content)).size == (8, 8)  # the latents' size: 64 px / 8


def test_a_job_that_has_not_rendered_yet_has_no_preview(idle_api: httpx.Client) -> None:
    job_id = submit(idle_api)

    response = idle_api.get(f"/v1/jobs/{job_id}/preview")

    assert (response.status_code, response.json()["detail"]) == (404, "no preview yet")


def test_a_queued_job_reads_its_place_on_the_queue(idle_api: httpx.Client, api: httpx.Client,
                                                   finished_image_job: FinishedJob) -> None:
    first, second, third = (submit(idle_api, prompt=f"a queue of foxes, number {n}") for n in range(3))

    places = [idle_api.get(f"/v1/jobs/{job_id}").json()["queue_position"] for job_id in (first, second, third)]

    assert places[0] is not None and places == [places[0], places[0] + 1, places[0] + 2]
    finished_id = finished_image_job[0].json()["job_id"]
    assert api.get(f"/v1/jobs/{finished_id}").json()["queue_position"] is None


def test_a_video_job_reports_the_steps_of_its_image_frames_and_video_stages(api: httpx.Client) -> None:
    job_id = submit(api, kind="video", num_frames=9, fps=8, steps=2, prompt="a red fox, frame by frame")

    events = follow(api, job_id)

    last_by_stage = {event["data"]["stage"]: (event["data"]["step"], event["data"]["total"])
                     for event in events if event["event"] == "progress"}
    assert set(last_by_stage) == {"image", "frames", "video"}
    assert all(step == total for step, total in last_by_stage.values()), last_by_stage
    assert last_by_stage["video"] == (9, 9)
    progress = api.get(f"/v1/jobs/{job_id}").json()["progress"]
    assert progress == {stage: f"{step}/{total}" for stage, (step, total) in last_by_stage.items()}
    running = ""  # queued on the worker's status writer, each step lands after its stage's start, before the next's
    for event in events:
        running = event["data"]["stage"] if event["event"] == "running" else running
        assert event["event"] != "progress" or event["data"]["stage"] == running, (event, running)
