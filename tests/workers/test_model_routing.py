"""Jobs run the catalog models they name, on the queue of each model, through real worker processes.

Version 1 jobs (the catalog's defaults, ``frames_backend`` as their frames maker) and version 2 jobs
(``models``) run side by side on the session's worker. A fleet of its own, in a namespace of its
own, shows a worker started with ``--models`` consuming only those models' queues, and a worker
refusing a message for a model its catalog lacks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
import redis

from pipelines.model_paths import weights_path, weights_revision
from queue_config.catalog import Catalog, load_catalog, shipped_catalog
from queue_config.jobs import JobKind, JobSpec, Priority
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from storage import open_store
from tests.api.test_jobs_api import api_server, client_of
from tests.conftest import settings_env
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers import ops
from workers.broker import FramequeueBroker, build_broker
from workers.cli.main import worker_queues
from workers.jobs.messages import StageMessage, stage_message
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.submit import submit_job
from workers.ops.queues import message_fields
from workers.ops.workers import WorkerEntry, list_workers

TOKEN = "routing-token"
#: Generous: a fresh worker process loads its tiny models cold.
JOB_TIMEOUT_S = 180
#: The split fleet's first worker: every stage, but of the image stage only tiny-sd.
FIRST_MODELS = ["tiny-text", "tiny-sd", "camera"]
FIRST_STAGES = ["video", "safety_check", "upload"]


@pytest.fixture(scope="module")
def tiny() -> Catalog:
    return load_catalog(shipped_catalog("tiny"))


def revision(settings: Settings, model: str) -> str:
    """What a worker records as the revision of tiny model ``model`` (built by then)."""
    return weights_revision(weights_path(model, settings.data_dir / "models"))


# Each stage's message goes to the queue of the model that runs it.

def queue_of(tiny: Catalog, stage: str, job: JobSpec, **models: str) -> str:
    return stage_message(stage, StageMessage(job=job, models=models), tiny).queue_name


def test_a_version_1_jobs_messages_go_to_the_default_models_and_its_frames_backends_queues(tiny: Catalog) -> None:
    job = JobSpec(schema_version=1, prompt="a heron", kind=JobKind.video, frames_backend="img2img")

    assert [queue_of(tiny, stage, job) for stage in stage_plan(job.kind)] == \
        ["prompt_enhance.tiny-text", "image.tiny-sd", "frames.img2img", "video", "safety_check", "upload"]
    assert queue_of(tiny, "frames", job.model_copy(update={"frames_backend": None})) == "frames.camera"
    payload = stage_message("image", StageMessage(job=job), tiny).args[0]
    assert set(payload) == {"job", "refs"}  # as a version 1 worker wrote it: no fallbacks field


def test_a_version_2_jobs_messages_go_to_the_queues_of_the_models_it_names(tiny: Catalog) -> None:
    job = JobSpec(prompt="a heron", kind=JobKind.video, models={"image": "tiny-sd-alt", "frames": "tiny-svd"})
    batch = job.model_copy(update={"priority": Priority.batch})

    assert (queue_of(tiny, "image", job), queue_of(tiny, "frames", job)) == ("image.tiny-sd-alt", "frames.tiny-svd")
    assert queue_of(tiny, "image", batch) == "image_batch.tiny-sd-alt"
    assert queue_of(tiny, "image", job, image="tiny-sd") == "image.tiny-sd"  # a fallback the message moved to


# Version 1 and version 2 side by side, through the API and the session's worker.

@pytest.fixture(scope="module")
def api(settings: Settings, workers: WorkerProcess) -> Iterator[httpx.Client]:
    with api_server(settings.model_copy(update={"api_token": TOKEN})) as url, client_of(url, TOKEN) as client:
        yield client


def submitted(api: httpx.Client, body: dict[str, Any]) -> str:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def manifest_of(settings: Settings, record: JobRecord) -> dict[str, Any]:
    return json.loads(open_store(settings).get_bytes(record.manifest_key))  # type: ignore[no-any-return]


def test_a_version_1_job_and_a_version_2_job_naming_tiny_sd_alt_run_side_by_side(
    api: httpx.Client, status: JobStatusStore, settings: Settings
) -> None:
    same = {"prompt": "a lighthouse at dusk", "kind": "image", "width": 64, "height": 64, "steps": 2, "seed": 21,
            "enhance_prompt": False}
    old_id = submitted(api, {**same, "schema_version": 1})
    new_id = submitted(api, {**same, "models": {"image": "tiny-sd-alt"}})
    video_id = submitted(api, {"schema_version": 1, "prompt": "a koi pond", "kind": "video", "width": 64,
                               "height": 64, "steps": 1, "num_frames": 4, "fps": 4, "frames_backend": "img2img"})

    old, new, video = (wait_until_finished(status, job_id, JOB_TIMEOUT_S) for job_id in (old_id, new_id, video_id))

    assert (old.state, new.state, video.state) == ("succeeded", "succeeded", "succeeded"), \
        (old.error, new.error, video.error)
    text, sd, alt = (revision(settings, model) for model in ("tiny:text", "tiny:image", "tiny:image-alt"))
    assert sd.startswith("sha256:") and alt.startswith("sha256:") and sd != alt
    assert old.models == {"image": f"tiny-sd@{sd}"} and new.models == {"image": f"tiny-sd-alt@{alt}"}
    assert video.models == {"prompt_enhance": f"tiny-text@{text}", "image": f"tiny-sd@{sd}",
                            "frames": f"img2img@img2img of tiny-sd@{sd}"}
    assert (old.spec["schema_version"], new.spec["schema_version"], new.spec["models"]) == \
        (1, 2, {"image": "tiny-sd-alt"})
    for record, version in ((old, 1), (new, 2), (video, 1)):
        manifest = manifest_of(settings, record)
        assert manifest["models"] == record.models and manifest["schema_version"] == version
    # The same prompt and seed; other weights, another picture.
    assert old.artifacts["image"]["sha256"] != new.artifacts["image"]["sha256"]


# A fleet split by model: a worker with --models serves only those models' queues.

@dataclass
class Fleet:
    settings: Settings
    broker: FramequeueBroker
    status: JobStatusStore
    artifacts_dir: Path

    def worker(self, name: str, *args: str) -> WorkerProcess:
        return WorkerProcess(settings_env(self.settings), self.artifacts_dir / f"worker-models-{name}.log",
                             "--processes", "1", "--threads", "2", *args)

    def registered(self) -> WorkerEntry:
        """The registry entry of the fleet's first worker, once it has registered."""
        def entry() -> WorkerEntry | None:
            found = [w for w in list_workers(self.status.client, self.settings.namespace) if not w.stale]
            return found[0] if len(found) == 1 else None

        return wait_for(entry, JOB_TIMEOUT_S, "the fleet's first worker to register", interval_s=0.2)

    def queued_job_ids(self, queue: str) -> list[str]:
        """The jobs of the messages ready on ``queue``."""
        return [ops.job_id_of(message_fields(body)) for body in
                self.status.client.hvals(f"{self.settings.namespace}:{queue}.msgs")]


@pytest.fixture(scope="module")
def fleet(settings: Settings, tiny_profile: Any, artifacts_dir: Path) -> Iterator[Fleet]:
    """A namespace of its own, and its first worker: ``--models tiny-text,tiny-sd,camera`` and the stages
    without models. Every key of the namespace is deleted afterwards."""
    own = settings.model_copy(update={"namespace": f"models-{uuid.uuid4().hex[:8]}"})
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    fleet = Fleet(own, build_broker(own), JobStatusStore(client, own.namespace), artifacts_dir)
    first = fleet.worker("first", "--models", ",".join(FIRST_MODELS), "--stages", ",".join(FIRST_STAGES))
    try:
        fleet.registered()
        yield fleet
    finally:
        first.stop()
        for key in client.scan_iter(match=f"{own.namespace}:*", count=1000):
            client.delete(key)


def test_a_worker_started_with_models_consumes_only_their_queues(fleet: Fleet, tiny: Catalog) -> None:
    entry = fleet.registered()

    assert entry.models["models"] == ",".join(sorted(FIRST_MODELS))
    assert sorted(entry.queues) == sorted(worker_queues(tiny, FIRST_STAGES, FIRST_MODELS))
    assert {"image.tiny-sd", "image_batch.tiny-sd", "prompt_enhance.tiny-text", "frames.camera", "video",
            "upload"} <= set(entry.queues)
    assert not [queue for queue in entry.queues if "tiny-sd-alt" in queue or "img2img" in queue]


def test_a_job_naming_a_model_no_worker_serves_waits_on_its_queue_while_others_go_through(
    fleet: Fleet, settings: Settings
) -> None:
    small = {"prompt": "a paper boat", "kind": JobKind.image, "width": 64, "height": 64, "steps": 1,
             "enhance_prompt": False}
    waiting = JobSpec(**small, models={"image": "tiny-sd-alt"})  # type: ignore[arg-type]
    served = JobSpec(schema_version=1, **small)  # type: ignore[arg-type]
    submit_job(fleet.broker, fleet.status, waiting)
    submit_job(fleet.broker, fleet.status, served)

    done = wait_until_finished(fleet.status, served.id, JOB_TIMEOUT_S)
    assert done.state == "succeeded", done.error
    assert done.models["image"].startswith("tiny-sd@")
    wait_for(lambda: waiting.id in fleet.queued_job_ids("image.tiny-sd-alt"), 30,
             "the waiting job's image message on image.tiny-sd-alt")
    record = fleet.status.get(waiting.id)
    assert record is not None and not record.finished and "prompt_enhance" in record.timings_s
    assert "image" not in record.attempts and "image" not in record.models
    assert fleet.status.client.llen(f"{fleet.settings.namespace}:image.tiny-sd-alt") == 1

    second = fleet.worker("second", "--models", "tiny-sd-alt")
    try:
        finished = wait_until_finished(fleet.status, waiting.id, JOB_TIMEOUT_S)
    finally:
        second.stop()
    assert finished.state == "succeeded", finished.error
    assert finished.models == {"image": f"tiny-sd-alt@{revision(settings, 'tiny:image-alt')}"}
    assert fleet.queued_job_ids("image.tiny-sd-alt") == []


def test_a_message_naming_a_model_the_workers_catalog_lacks_is_dead_lettered_naming_it(fleet: Fleet) -> None:
    spec = JobSpec(prompt="a paper boat", kind=JobKind.image, width=64, height=64, models={"image": "ghost"})
    fleet.status.create(spec, stage_plan(spec.kind))
    message: dramatiq.Message[Any] = dramatiq.Message(queue_name="image.tiny-sd", actor_name="image.tiny-sd",
                               args=({"job": spec.model_dump(mode="json"), "refs": {}},), kwargs={}, options={})
    fleet.broker.enqueue(message)

    record = wait_until_finished(fleet.status, spec.id, JOB_TIMEOUT_S)

    reason = "InvalidJob: the catalog cannot serve this job: models.image: no model 'ghost' in the catalog"
    assert record.state == "failed" and record.error.startswith(reason), record.error
    assert record.attempts == {"image": 1}
    [letter] = [letter for letter in ops.dead_letters(fleet.status, "image.tiny-sd") if letter.job_id == spec.id]
    assert letter.reason.startswith(reason) and letter.retries == 0
