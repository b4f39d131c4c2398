"""The batch API over HTTP: uvicorn on loopback, real Redis and a real S3 server, ``workers.batches`` behind it.

Each test has a namespace of its own that no worker serves: what an upload queues stays queued, and
a test moves a job to its final state as a worker would record it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from queue_config.settings import Settings
from storage import open_store
from tests.api.test_jobs_api import TOKEN, api_server, client_of
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.queues import PROMPT_BATCH_QUEUE, PROMPT_QUEUE
from workers import ops
from workers.api import batches as batches_api
from workers.batches.files import derive_batch_id
from workers.jobs.outcome import StageOutcome

GOOD_AND_BAD = (json.dumps({"id": "fox", "prompt": "a red fox", "width": 64, "height": 64}) + "\n\n"
                + '{"prompt": "sk-live-secret", "width": 65}\n'
                + json.dumps({"prompt": "a hare", "width": 64, "height": 64}) + "\n").encode()
#: Where a batch's image jobs wait: the batch queue of their first stage.
BATCH_QUEUE = PROMPT_BATCH_QUEUE


@dataclass
class BatchApi:
    ns: Namespace
    client: httpx.Client

    def keys(self) -> list[str]:
        """Every Redis key of the namespace (none until something is submitted) but the token's request rate."""
        rate = f"{self.ns.settings.namespace}:rate:api:"
        return sorted(key for key in self.ns.status.client.scan_iter(match=f"{self.ns.settings.namespace}:*")
                      if not key.startswith(rate))

    def queued_job_ids(self, queue: str = BATCH_QUEUE) -> list[str]:
        """The job ids of the messages waiting on ``queue``, in the order a worker takes them."""
        return [ops.job_id_of(body) for body in ops.ready_messages(self.ns.status, queue, limit=1000)]

    def progress(self, batch_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/batches/{batch_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def batch_api(settings: Settings) -> Iterator[BatchApi]:
    """A client of an API serving a fresh namespace (its keys deleted afterwards)."""
    for ns in cleaned_namespace(settings, "batches-api"):
        with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url, client_of(url) as client:
            yield BatchApi(ns, client)


def upload(client: httpx.Client, data: bytes, filename: str = "night.jsonl", **form: str) -> httpx.Response:
    return client.post("/v1/batches", files={"file": (filename, data, "application/octet-stream")}, data=form)


def jsonl(*prompts: str) -> bytes:
    return "".join(json.dumps({"prompt": prompt, "width": 64, "height": 64}) + "\n" for prompt in prompts).encode()


def finish(api: BatchApi, job_id: str, state: str) -> None:
    """The job ends in ``state`` at its image stage, as a worker records it."""
    status = api.ns.status
    status.stage_started(job_id, "image", 1)
    if state == "failed":
        status.stage_failed(job_id, "image", "RuntimeError: out of memory", f"message-of-{job_id}")
    else:
        status.stage_finished(job_id, "image", 0.5, StageOutcome(final_state=state))


def test_every_batch_route_needs_the_token(batch_api: BatchApi) -> None:
    with client_of(str(batch_api.client.base_url), token=None) as anonymous:
        answers = [upload(anonymous, GOOD_AND_BAD), anonymous.get("/v1/batches/b1"),
                   anonymous.post("/v1/batches/b1/retry-failed"), anonymous.post("/v1/batches/b1/cancel")]

    assert [answer.status_code for answer in answers] == [401] * 4
    assert batch_api.keys() == []


def test_an_upload_queues_its_good_lines_at_batch_priority_once_and_lists_the_bad_ones(batch_api: BatchApi) -> None:
    status, batch_id = batch_api.ns.status, derive_batch_id(GOOD_AND_BAD)

    first = upload(batch_api.client, GOOD_AND_BAD)
    again = upload(batch_api.client, GOOD_AND_BAD, strict="false")

    assert first.status_code == again.status_code == 202, first.text
    error = first.json()["rejected"][0]["error"]
    assert first.json() == {"batch_id": batch_id, "accepted": 2, "rejected": [{"line": 3, "error": error}],
                            "rejected_count": 1, "total": 2, "enqueued": 2, "already_submitted": 0}
    assert (again.json()["batch_id"], again.json()["enqueued"], again.json()["already_submitted"]) == (batch_id, 0, 2)
    assert "width" in error and "sk-live-secret" not in first.text
    assert first.headers["location"].endswith(f"/v1/batches/{batch_id}")
    items = dict(status.client.zrange(f"{status.batch_key(batch_id)}:items", 0, -1, withscores=True))
    fox, hare = sorted(items, key=items.__getitem__)
    assert (fox, items[fox], items[hare]) == (f"{batch_id}-fox", 1, 4) and hare.startswith(f"{batch_id}-")
    assert status.client.hmget(status.batch_key(batch_id), "name", "total") == ["night.jsonl", "2"]
    for job_id in (fox, hare):
        record = status.get(job_id)
        assert record is not None and record.state == "queued"
        assert (record.spec["priority"], record.spec["batch_id"]) == ("batch", batch_id)
    assert batch_api.queued_job_ids() == [fox, hare] and batch_api.queued_job_ids(PROMPT_QUEUE) == []


def test_a_strict_upload_with_a_bad_line_is_refused_whole_with_the_line_numbers(batch_api: BatchApi) -> None:
    response = upload(batch_api.client, GOOD_AND_BAD, strict="true")

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["batch_id"] == derive_batch_id(GOOD_AND_BAD) and body["rejected_count"] == 1
    assert [item["line"] for item in body["rejected"]] == [3] and "width" in body["rejected"][0]["error"]
    assert "sk-live-secret" not in response.text
    assert batch_api.keys() == [] and batch_api.client.get(f"/v1/batches/{body['batch_id']}").status_code == 404


def test_a_named_csv_upload_gets_its_sanitised_name_as_batch_id(batch_api: BatchApi) -> None:
    status = batch_api.ns.status

    response = upload(batch_api.client, b"prompt,width,height\na fox,64,64\n", filename="jobs.txt",
                      name="Night run #3", format="csv")

    assert response.status_code == 202, response.text
    assert response.json()["batch_id"] == "Night-run-3" and response.json()["enqueued"] == 1
    assert status.client.hget(status.batch_key("Night-run-3"), "name") == "Night run #3"
    [job_id] = batch_api.queued_job_ids()
    assert job_id.startswith("Night-run-3-") and status.state_of(job_id) == "queued"
    assert batch_api.progress("Night-run-3")["name"] == "Night run #3"


@pytest.mark.parametrize(("files", "form", "status_code", "says"), [
    ({"file": ("a.jsonl", b'{"prompt": ""}\n')}, {}, 422, "no line is a valid job"),
    ({"file": ("a.csv", b"seed\n1\n")}, {}, 422, "no 'prompt' column"),
    ({"file": ("a.csv", b"\xff\xfe")}, {}, 422, "not UTF-8"),
    ({"file": ("a.csv", b"prompt\na\n")}, {"name": "///"}, 422, "batch name"),
    ({"file": ("a.csv", b"prompt\na\n")}, {"strict": "sometimes"}, 422, "bool_parsing"),
    ({"file": ("a.csv", b"prompt\na\n")}, {"format": "xlsx"}, 422, "literal_error"),
    ({"file": ("a.csv", b"prompt\na\n")}, {"colour": "red"}, 422, "extra_forbidden"),
    ({"upload": ("a.csv", b"prompt\na\n")}, {}, 422, "missing"),
])
def test_a_form_or_file_that_cannot_be_read_is_refused_and_nothing_is_submitted(
    batch_api: BatchApi, files: dict[str, Any], form: dict[str, str], status_code: int, says: str
) -> None:
    response = batch_api.client.post("/v1/batches", files=files, data=form)

    assert response.status_code == status_code and says in response.text, response.text
    assert batch_api.keys() == []


def test_an_upload_that_is_not_multipart_is_refused(batch_api: BatchApi) -> None:
    response = batch_api.client.post("/v1/batches", content=GOOD_AND_BAD,
                                     headers={"content-type": "application/x-ndjson"})

    assert response.status_code == 415 and batch_api.keys() == []


def test_a_file_over_the_size_limit_is_refused_with_413(batch_api: BatchApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches_api, "MAX_UPLOAD_BYTES", 32 * 1024)
    line = json.dumps({"prompt": "a fox " * 100}).encode() + b"\n"

    just_over = upload(batch_api.client, line * (33 * 1024 // len(line) + 1))  # the body is under the read bound
    far_over = upload(batch_api.client, line * (150 * 1024 // len(line)))  # refused by its Content-Length
    under = upload(batch_api.client, line * (31 * 1024 // len(line)))

    assert (just_over.status_code, far_over.status_code) == (413, 413), (just_over.text, far_over.text)
    assert under.status_code == 202 and under.json()["enqueued"] == 1  # the lines are all the same job


def test_progress_counts_finished_jobs_by_state_with_their_rate_and_eta(batch_api: BatchApi) -> None:
    batch_id = upload(batch_api.client, jsonl("a wren", "a robin", "a finch", "a lark")).json()["batch_id"]
    wren, robin, _, _ = batch_api.queued_job_ids()
    submitted = batch_api.progress(batch_id)
    batch_api.ns.status.client.hset(batch_api.ns.status.batch_key(batch_id), "created_at", time.time() - 60)
    finish(batch_api, wren, "succeeded")
    finish(batch_api, robin, "failed")

    progress = batch_api.progress(batch_id)

    assert (submitted["total"], submitted["finished"], submitted["eta_s"]) == (4, 0, None)
    assert (progress["total"], progress["finished"], progress["unfinished"]) == (4, 2, 2)
    assert progress["counts"] == {"succeeded": 1, "failed": 1, "blocked": 0, "cancelled": 0}
    assert progress["jobs_per_min"] == pytest.approx(2.0, abs=0.05)  # 2 jobs in the minute since submission
    assert progress["eta_s"] == pytest.approx(60, abs=2) and not progress["completed"]
    assert batch_api.client.get("/v1/batches/b-never-submitted").status_code == 404
    assert batch_api.client.get("/v1/batches/not%20an%20id").status_code == 422


def test_retry_failed_queues_the_failed_jobs_again_from_their_first_stage(batch_api: BatchApi) -> None:
    status = batch_api.ns.status
    batch_id = upload(batch_api.client, jsonl("a barn", "a silo", "a mill")).json()["batch_id"]
    barn, silo, mill = batch_api.queued_job_ids()
    for _ in range(3):
        batch_api.ns.fetch(BATCH_QUEUE)  # a worker has taken them all
    finish(batch_api, barn, "failed")
    finish(batch_api, silo, "succeeded")

    retried = batch_api.client.post(f"/v1/batches/{batch_id}/retry-failed")
    again = batch_api.client.post(f"/v1/batches/{batch_id}/retry-failed")

    assert (retried.json(), again.json()) == ({"retried": 1}, {"retried": 0})
    assert batch_api.queued_job_ids() == [barn]
    record = status.get(barn)
    assert record is not None and (record.state, record.error) == ("queued", "")
    assert [status.state_of(job_id) for job_id in (silo, mill)] == ["succeeded", "queued"]
    progress = batch_api.progress(batch_id)
    assert (progress["finished"], progress["counts"]["failed"], progress["counts"]["succeeded"]) == (1, 0, 1)


def test_cancel_stops_the_unfinished_jobs_and_completes_the_batch_with_its_manifest(
    batch_api: BatchApi, settings: Settings
) -> None:
    status = batch_api.ns.status
    batch_id = upload(batch_api.client, jsonl("a pier", "a buoy", "a quay")).json()["batch_id"]
    pier, buoy, quay = batch_api.queued_job_ids()
    finish(batch_api, quay, "failed")

    cancelled = batch_api.client.post(f"/v1/batches/{batch_id}/cancel")
    again = batch_api.client.post(f"/v1/batches/{batch_id}/cancel")

    assert (cancelled.json(), again.json()) == ({"cancelled": 2}, {"cancelled": 0})
    assert [status.state_of(job_id) for job_id in (pier, buoy, quay)] == ["cancelled", "cancelled", "failed"]
    assert set(status.cancelled_since(0)[0]) == {pier, buoy}
    progress = batch_api.progress(batch_id)
    assert progress["completed"] and progress["counts"] == {"succeeded": 0, "failed": 1, "blocked": 0, "cancelled": 2}
    assert progress["manifest_key"] == f"manifests/batches/{batch_id}.jsonl"
    manifest = open_store(settings).get_bytes(progress["manifest_key"]).decode().splitlines()
    assert [(entry["job_id"], entry["state"]) for entry in map(json.loads, manifest)] == [
        (pier, "cancelled"), (buoy, "cancelled"), (quay, "failed")]
    events = [fields for _, fields in status.client.xrange(status.events_key)]
    assert [fields["batch_id"] for fields in events if fields["event"] == "batch_completed"] == [batch_id]


def test_the_upload_is_documented_as_a_multipart_form(batch_api: BatchApi) -> None:
    operation = batch_api.client.get("/openapi.json").json()["paths"]["/v1/batches"]["post"]

    assert set(operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]) == {
        "file", "name", "strict", "format"}
    assert {"202", "401", "413", "415", "422"} <= set(operation["responses"])


@pytest.mark.parametrize("action", ["retry-failed", "cancel"])
def test_acting_on_a_batch_nobody_submitted_answers_404(batch_api: BatchApi, action: str) -> None:
    response = batch_api.client.post(f"/v1/batches/no-such-batch/{action}")

    assert response.status_code == 404
    assert response.json()["detail"] == "no such batch"
