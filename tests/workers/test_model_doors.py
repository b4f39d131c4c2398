"""Every door refuses a job its catalog cannot serve, with the catalog's reason, and queues nothing.

The doors (HTTP job and batch submission, the intake stream, batch files, ``framequeue submit``) all
read one catalog of their own, written here: a text model called ``words``, a small image model
(sides up to 128 px) and a camera that makes at most 8 frames. No worker serves the namespace: a
refused job must leave no record and no message, and an accepted one waits on its first stage's
queue, ``prompt_enhance.words``, the doors' catalog's and no other's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import cast

import httpx
import pytest
import redis

from queue_config.catalog import catalog_of
from queue_config.settings import Settings
from tests.api.test_jobs_api import api_server, client_of
from tests.conftest import settings_env
from tests.servers import REPO_ROOT
from workers import ops
from workers.batches.files import parse_batch
from workers.broker import build_broker
from workers.doors.intake import Intake
from workers.jobs.record import JobStatusStore
from workers.ops.queues import message_fields

TOKEN = "doors-token"
#: The doors' catalog: what it refuses is what the refusals below ask for.
DOORS_CATALOG = """\
[defaults]
prompt_enhance = "words"
image = "small"
frames = "camera"

[models.words]
stage = "prompt_enhance"
backend = { kind = "local", pipeline = "AutoModelForCausalLM", model = "tiny:text" }

[models.small]
stage = "image"
backend = { kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }
capabilities = { max_side = 128 }

[models.camera]
stage = "frames"
backend = { kind = "local", pipeline = "camera" }
capabilities = { input_image = true, max_frames = 8 }
"""
SMALL = {"prompt": "a heron at dawn", "width": 64, "height": 64}
#: A job each door must refuse, and the catalog's reason, word for word.
REFUSED: dict[str, tuple[dict[str, object], str]] = {
    "unknown-model": ({**SMALL, "models": {"image": "ghost"}},
                      "models.image: no model 'ghost' in the catalog (models of image: small)"),
    "over-max-side": ({**SMALL, "width": 256}, "model 'small' (image) takes sides of 8 to 128 px, not 256x64"),
    "over-max-frames": ({**SMALL, "kind": "video", "num_frames": 9},
                        "model 'camera' (frames) makes at most 8 frames, not 9"),
}
#: The same refusals as ``framequeue submit`` arguments (it names no image model: its unknown model is a frames one).
CLI_REFUSED: dict[str, tuple[list[str], str]] = {
    "unknown-model": (["--kind", "video", "--frames-backend", "img2img"],
                      "models.frames: no model 'img2img' in the catalog (models of frames: camera)"),
    "over-max-side": (["--width", "256"], REFUSED["over-max-side"][1]),
    "over-max-frames": (["--kind", "video", "--frames", "9"], REFUSED["over-max-frames"][1]),
}


@pytest.fixture(scope="module")
def doors(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings with the doors' catalog, on a namespace of their own (every key under it deleted afterwards)."""
    path = tmp_path_factory.mktemp("doors") / "catalog.toml"
    path.write_text(DOORS_CATALOG)
    own = settings.model_copy(update={"namespace": f"doors-{uuid.uuid4().hex[:8]}", "model_catalog": path,
                                      "api_token": TOKEN})
    yield own
    client = redis.Redis.from_url(own.redis_url)
    for key in client.scan_iter(match=f"{own.namespace}:*", count=1000):
        client.delete(key)


@pytest.fixture(scope="module")
def status(doors: Settings) -> JobStatusStore:
    return JobStatusStore(redis.Redis.from_url(doors.redis_url, decode_responses=True), doors.namespace)


@pytest.fixture(scope="module")
def api(doors: Settings) -> Iterator[httpx.Client]:
    with api_server(doors) as url, client_of(url, TOKEN) as client:
        yield client


def with_id(fields: dict[str, object]) -> dict[str, object]:
    return {**fields, "id": f"refused-{uuid.uuid4().hex[:12]}"}


def queued_job_ids(status: JobStatusStore) -> set[str]:
    """The jobs of every message on a stage queue of the namespace, of any model of any catalog."""
    keys = status.client.scan_iter(match=f"{status.namespace}:*.msgs", count=1000)
    return {ops.job_id_of(message_fields(body)) for key in keys for body in status.client.hvals(key)}


def first_queue_of(status: JobStatusStore, job_id: str) -> str:
    """The queue holding ``job_id``'s message (it must be on exactly one)."""
    [queue] = [key.removeprefix(f"{status.namespace}:").removesuffix(".msgs")
               for key in status.client.scan_iter(match=f"{status.namespace}:*.msgs", count=1000)
               if job_id in {ops.job_id_of(message_fields(body)) for body in status.client.hvals(key)}]
    return queue


def added(status: JobStatusStore, stream: str, job: dict[str, object]) -> str:
    """The id of a new intake entry holding ``job``."""
    return cast(str, status.client.xadd(stream, {"job": json.dumps(job)}))


@pytest.mark.parametrize("case", REFUSED)
def test_the_api_answers_422_with_the_catalogs_reason(api: httpx.Client, status: JobStatusStore, case: str) -> None:
    fields, reason = REFUSED[case]
    body = with_id(fields)

    response = api.post("/v1/jobs", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == reason
    assert status.get(str(body["id"])) is None and body["id"] not in queued_job_ids(status)


def test_the_api_refuses_a_version_1_job_that_names_models(api: httpx.Client) -> None:
    response = api.post("/v1/jobs", json={**SMALL, "schema_version": 1, "models": {"image": "small"}})

    assert response.status_code == 422 and "models needs schema_version 2" in response.text


def test_an_uploaded_batch_of_refused_lines_is_refused_line_by_line_with_each_reason(
    api: httpx.Client, status: JobStatusStore
) -> None:
    data = "\n".join(json.dumps(fields) for fields, _ in REFUSED.values()).encode()

    response = api.post("/v1/batches", files={"file": ("refused.jsonl", data, "application/octet-stream")})

    assert response.status_code == 422, response.text
    assert response.json()["rejected"] == [{"line": number, "error": reason}
                                           for number, (_, reason) in enumerate(REFUSED.values(), start=1)]
    assert api.get(f"/v1/batches/{response.json()['batch_id']}").status_code == 404


def test_a_batch_file_reports_each_refused_line_with_its_reason_and_keeps_the_good_ones(doors: Settings) -> None:
    lines = [SMALL, *(fields for fields, _ in REFUSED.values()),
             {**SMALL, "schema_version": 1, "models": {"image": "small"}}]
    data = "\n".join(json.dumps(line) for line in lines)

    parsed = parse_batch(data, batch_id="b-doors", catalog=catalog_of(doors))

    assert parsed[0].spec is not None and parsed[0].error == "" and parsed[0].spec.width == 64
    assert [line.error for line in parsed[1:4]] == [reason for _, reason in REFUSED.values()]
    assert "models needs schema_version 2" in parsed[4].error
    assert all(line.spec is None for line in parsed[1:])


def test_the_intake_stream_rejects_each_refused_entry_in_its_receipt_with_the_reason(
    doors: Settings, status: JobStatusStore
) -> None:
    intake = Intake(status.client, build_broker(doors), status, doors.namespace, catalog=catalog_of(doors))
    stream = f"{doors.namespace}:intake"
    entries = {added(status, stream, fields): reason for fields, reason in REFUSED.values()}
    version_1 = added(status, stream, {**SMALL, "schema_version": 1, "models": {"image": "small"}})

    assert intake.serve_once(block_ms=10) == len(entries) + 1

    for entry_id, reason in entries.items():
        receipt = status.client.hgetall(f"{stream}:receipt:{entry_id}")
        assert receipt == {"status": "rejected", "job_id": f"intake-{entry_id}", "reason": reason}
        assert status.get(f"intake-{entry_id}") is None and f"intake-{entry_id}" not in queued_job_ids(status)
    assert "models needs schema_version 2" in str(status.client.hget(f"{stream}:receipt:{version_1}", "reason"))


@pytest.mark.parametrize("case", CLI_REFUSED)
def test_framequeue_submit_exits_2_with_the_catalogs_reason(
    doors: Settings, status: JobStatusStore, case: str
) -> None:
    args, reason = CLI_REFUSED[case]
    job_id = f"refused-{uuid.uuid4().hex[:12]}"
    env = {**settings_env(doors), "FRAMEQUEUE_MODEL_CATALOG": str(doors.model_catalog)}

    run = subprocess.run([sys.executable, "-m", "workers.cli", "submit", "a heron at dawn", "--width", "64",
                          "--height", "64", *args, "--id", job_id],
                         env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    assert run.returncode == 2, run.stderr
    assert run.stderr == f"framequeue: {reason}\n" and run.stdout == ""
    assert status.get(job_id) is None and job_id not in queued_job_ids(status)


def test_a_batch_line_names_its_models_in_one_flat_object_and_a_malformed_one_is_refused_unquoted(
    doors: Settings
) -> None:
    canary = "sk-live-CANARY"
    lines = [{**SMALL, "models": {"prompt_enhance": "words", "image": "small"}},
             {**SMALL, "models": {canary: "small"}},
             {**SMALL, "models": {"image": {"deep": canary}}},
             {**SMALL, "models": {"image": canary}}]
    data = "\n".join(json.dumps(line) for line in lines)

    named, *refused = parse_batch(data, batch_id="b-models", catalog=catalog_of(doors))

    assert named.spec is not None and named.spec.models == {"prompt_enhance": "words", "image": "small"}
    assert [line.error for line in refused[:2]] == ["models: must name a model id for stages among prompt_enhance, "
                                                    "image, frames"] * 2
    assert refused[2].error.startswith("invalid job: models.image: String should match pattern")
    assert all(line.spec is None and canary not in line.error for line in refused)


def accepted_by_api(api: httpx.Client, doors: Settings) -> str:
    response = api.post("/v1/jobs", json={**SMALL, "models": {"image": "small"}})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def accepted_by_batch_upload(api: httpx.Client, doors: Settings) -> str:
    data = json.dumps({**SMALL, "id": "one", "models": {"image": "small"}}).encode()
    response = api.post("/v1/batches", files={"file": ("accepted.jsonl", data, "application/octet-stream")},
                        data={"name": f"accepted-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 202, response.text
    return f"{response.json()['batch_id']}-one"


def accepted_by_intake(api: httpx.Client, doors: Settings) -> str:
    status = JobStatusStore(redis.Redis.from_url(doors.redis_url, decode_responses=True), doors.namespace)
    intake = Intake(status.client, build_broker(doors), status, doors.namespace, catalog=catalog_of(doors))
    entry_id = added(status, f"{doors.namespace}:intake", SMALL)
    intake.serve_once(block_ms=10)
    assert status.client.hget(f"{doors.namespace}:intake:receipt:{entry_id}", "status") == "accepted"
    return f"intake-{entry_id}"


def accepted_by_cli(api: httpx.Client, doors: Settings) -> str:
    job_id = f"cli-{uuid.uuid4().hex[:12]}"
    env = {**settings_env(doors), "FRAMEQUEUE_MODEL_CATALOG": str(doors.model_catalog)}
    run = subprocess.run([sys.executable, "-m", "workers.cli", "submit", str(SMALL["prompt"]), "--width", "64",
                          "--height", "64", "--id", job_id], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    return job_id


@pytest.mark.parametrize(
    ("door", "queue"),
    [(accepted_by_api, "prompt_enhance.words"), (accepted_by_batch_upload, "prompt_enhance_batch.words"),
     (accepted_by_intake, "prompt_enhance.words"), (accepted_by_cli, "prompt_enhance.words")],
    ids=["api", "batch-upload", "intake", "cli"],
)
def test_a_job_a_door_accepts_is_queued_for_the_model_its_catalog_routes_it_to(
    api: httpx.Client, doors: Settings, status: JobStatusStore, door: Callable[[httpx.Client, Settings], str],
    queue: str
) -> None:
    job_id = door(api, doors)

    record = status.get(job_id)
    assert record is not None and record.state == "queued"
    assert first_queue_of(status, job_id) == queue
