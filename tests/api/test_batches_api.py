"""The batch API over HTTP: uvicorn on loopback and real Redis; the Redis side is ``workers.batches``.

The routes are checked against a recording stand-in for ``workers.batches`` (so what the API
hands over is asserted), and, once that module exists, end to end against the real one.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from queue_config.jobs import Priority
from queue_config.settings import Settings
from tests.api.test_jobs_api import TOKEN, api_server, client_of
from workers.api import batches as batches_api
from workers.api import routes
from workers.batches.files import BatchLine, derive_batch_id
from workers.jobs.record import JobStatusStore

#: No worker serves this namespace: submitted jobs stay queued.
NAMESPACE = "batches-api"
GOOD_AND_BAD = (json.dumps({"id": "fox", "prompt": "a red fox", "width": 64, "height": 64}) + "\n\n"
                + '{"prompt": "sk-live-secret", "width": 65}\n'
                + json.dumps({"prompt": "a hare", "width": 64, "height": 64}) + "\n").encode()
real_batches = pytest.mark.skipif(importlib.util.find_spec("workers.batches") is None,
                                  reason="workers.batches not written yet")


@pytest.fixture(scope="module")
def batch_api(settings: Settings) -> Iterator[httpx.Client]:
    """A client of an API that serves the batch routes (added here until ``routes.ROUTERS`` lists them)."""
    with pytest.MonkeyPatch.context() as patch:
        if batches_api.router not in routes.ROUTERS:
            patch.setattr(routes, "ROUTERS", [*routes.ROUTERS, batches_api.router])
        with api_server(settings.model_copy(update={"api_token": TOKEN, "namespace": NAMESPACE})) as url, \
                client_of(url) as client:
            yield client


@dataclass
class RecordingBatches:
    """Stands in for ``workers.batches``: records each call and answers what a test set."""

    submitted: list[tuple[Any, ...]] = field(default_factory=list)
    progress: dict[str, Any] | None = None
    count: int = 0

    def submit_lines(self, *args: Any) -> dict[str, Any]:
        self.submitted.append(args)
        return {"created": 2}

    def batch_progress(self, status: JobStatusStore, batch_id: str) -> dict[str, Any] | None:
        return self.progress

    def retry_failed(self, status: JobStatusStore, broker: Any, batch_id: str) -> int:
        return self.count

    def cancel_batch(self, status: JobStatusStore, broker: Any, batch_id: str, **completion: Any) -> int:
        self.completion = completion
        return self.count


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> RecordingBatches:
    """``workers.batches``'s functions replaced by a recorder (the module made up when it does not exist)."""
    fake = RecordingBatches()
    module = sys.modules.get("workers.batches")
    if module is None and importlib.util.find_spec("workers.batches") is not None:
        module = importlib.import_module("workers.batches")
    if module is None:
        module = types.ModuleType("workers.batches")
        monkeypatch.setitem(sys.modules, "workers.batches", module)
    for name in ("submit_lines", "batch_progress", "retry_failed", "cancel_batch"):
        monkeypatch.setattr(module, name, getattr(fake, name), raising=False)
    return fake


def upload(client: httpx.Client, data: bytes, filename: str = "night.jsonl", **form: str) -> httpx.Response:
    return client.post("/v1/batches", files={"file": (filename, data, "application/octet-stream")}, data=form)


def test_every_batch_route_needs_the_token(batch_api: httpx.Client) -> None:
    with client_of(str(batch_api.base_url), token=None) as anonymous:
        answers = [upload(anonymous, GOOD_AND_BAD), anonymous.get("/v1/batches/b1"),
                   anonymous.post("/v1/batches/b1/retry-failed"), anonymous.post("/v1/batches/b1/cancel")]

    assert [answer.status_code for answer in answers] == [401] * 4


def test_a_strict_upload_with_a_bad_line_is_refused_whole_with_the_line_numbers(
    batch_api: httpx.Client, recording: RecordingBatches
) -> None:
    response = upload(batch_api, GOOD_AND_BAD, strict="true")

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["batch_id"] == derive_batch_id(GOOD_AND_BAD) and body["rejected_count"] == 1
    assert [item["line"] for item in body["rejected"]] == [3] and "width" in body["rejected"][0]["error"]
    assert "sk-live-secret" not in response.text and recording.submitted == []


def test_an_upload_hands_every_line_to_submit_lines_and_lists_the_bad_ones(
    batch_api: httpx.Client, recording: RecordingBatches
) -> None:
    response = upload(batch_api, GOOD_AND_BAD)
    again = upload(batch_api, GOOD_AND_BAD, strict="false")

    assert response.status_code == again.status_code == 202, response.text
    batch_id = derive_batch_id(GOOD_AND_BAD)
    assert response.json() == {"batch_id": batch_id, "accepted": 2, "rejected": [
        {"line": 3, "error": response.json()["rejected"][0]["error"]}], "rejected_count": 1, "created": 2}
    assert response.headers["location"].endswith(f"/v1/batches/{batch_id}")
    (status, broker, submitted_id, name, lines), second = recording.submitted
    assert second[2] == submitted_id == batch_id and name == "night.jsonl"
    assert isinstance(status, JobStatusStore) and status.namespace == NAMESPACE and broker is not None
    assert all(isinstance(line, BatchLine) for line in lines)
    assert [(line.line_number, line.spec.id if line.spec else None) for line in lines] == [
        (1, f"{batch_id}-fox"), (3, None), (4, lines[2].spec and lines[2].spec.id)]
    assert all(line.spec.priority is Priority.batch for line in lines if line.spec)


def test_a_named_csv_upload_gets_its_sanitised_name_as_batch_id(
    batch_api: httpx.Client, recording: RecordingBatches
) -> None:
    response = upload(batch_api, b"prompt,width,height\na fox,64,64\n", filename="jobs.txt", name="Night run #3",
                      format="csv")

    assert response.status_code == 202, response.text
    assert response.json()["batch_id"] == "Night-run-3"
    assert recording.submitted[0][3] == "Night run #3"
    assert recording.submitted[0][4][0].spec.id.startswith("Night-run-3-")


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
    batch_api: httpx.Client, recording: RecordingBatches, files: dict[str, Any], form: dict[str, str],
    status_code: int, says: str
) -> None:
    response = batch_api.post("/v1/batches", files=files, data=form)

    assert response.status_code == status_code and says in response.text, response.text
    assert recording.submitted == []


def test_an_upload_that_is_not_multipart_is_refused(batch_api: httpx.Client) -> None:
    response = batch_api.post("/v1/batches", content=GOOD_AND_BAD, headers={"content-type": "application/x-ndjson"})

    assert response.status_code == 415


def test_a_file_over_the_size_limit_is_refused_with_413(
    batch_api: httpx.Client, recording: RecordingBatches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches_api, "MAX_UPLOAD_BYTES", 32 * 1024)
    line = json.dumps({"prompt": "a fox " * 100}).encode() + b"\n"

    just_over = upload(batch_api, line * (33 * 1024 // len(line) + 1))  # the body is under the read bound
    far_over = upload(batch_api, line * (150 * 1024 // len(line)))  # refused by its Content-Length

    assert (just_over.status_code, far_over.status_code) == (413, 413), (just_over.text, far_over.text)
    assert recording.submitted == []


def test_progress_retry_and_cancel_answer_what_workers_batches_says(
    batch_api: httpx.Client, recording: RecordingBatches
) -> None:
    missing = batch_api.get("/v1/batches/b-none")
    recording.progress, recording.count = {"batch_id": "b1", "total": 3}, 2

    assert missing.status_code == 404
    assert batch_api.get("/v1/batches/b1").json() == {"batch_id": "b1", "total": 3}
    assert batch_api.post("/v1/batches/b1/retry-failed").json() == {"retried": 2}
    assert batch_api.post("/v1/batches/b1/cancel").json() == {"cancelled": 2}
    assert batch_api.get("/v1/batches/not%20an%20id").status_code == 422


def test_the_upload_is_documented_as_a_multipart_form(batch_api: httpx.Client) -> None:
    operation = batch_api.get("/openapi.json").json()["paths"]["/v1/batches"]["post"]

    assert set(operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]) == {
        "file", "name", "strict", "format"}
    assert {"202", "401", "413", "415", "422"} <= set(operation["responses"])


@real_batches
def test_a_real_upload_queues_its_good_lines_once_and_can_be_followed_and_cancelled(
    batch_api: httpx.Client, status: JobStatusStore
) -> None:
    store = JobStatusStore(status.client, NAMESPACE)
    data = GOOD_AND_BAD.replace(b"a hare", b"a hare, real")
    batch_id = derive_batch_id(data)

    first, again = upload(batch_api, data), upload(batch_api, data)

    assert first.status_code == again.status_code == 202, first.text
    assert first.json()["batch_id"] == again.json()["batch_id"] == batch_id and first.json()["accepted"] == 2
    record = store.get(f"{batch_id}-fox")
    assert record is not None and record.state == "queued"
    assert record.spec["priority"] == "batch" and record.spec["batch_id"] == batch_id
    progress = batch_api.get(f"/v1/batches/{batch_id}")
    assert progress.status_code == 200 and isinstance(progress.json(), dict), progress.text
    assert batch_api.post(f"/v1/batches/{batch_id}/retry-failed").json() == {"retried": 0}
    assert batch_api.post(f"/v1/batches/{batch_id}/cancel").json() == {"cancelled": 2}
    assert store.state_of(f"{batch_id}-fox") == "cancelled"


@real_batches
def test_a_real_progress_read_of_an_unknown_batch_is_404(batch_api: httpx.Client) -> None:
    assert batch_api.get("/v1/batches/b-never-submitted").status_code == 404
