"""Cached repeats: an identical job reuses earlier stage outputs, on a real Redis, S3 server and worker.

The worker runs in this process (a dramatiq worker on the real Redis broker, in a namespace of its
own) around the real stage functions, each wrapped to note the job it runs for: a stage served
from the cache never calls its function, so "it did not run" is read from those notes, not from
timings.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import dramatiq
import pytest
from prometheus_client.core import Metric

from pipelines import model_paths
from pipelines.model_paths import weights_revision
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.workers.test_job_flow import wait_until_finished
from workers.api.metrics import RedisCollector
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.messages import StageMessage
from workers.jobs.record import JobRecord, JobStatusStore
from workers.jobs.stage_cache import cache_counts, cache_key
from workers.jobs.submit import submit_job
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors
from workers.stages import STAGE_FUNCTIONS, StageFunction, StageOutcome
from workers.stages.cache_identity import stage_cache_of, stage_identity

CACHED = ("prompt_enhance", "image", "frames", "video")
ALWAYS_RUN = ("safety_check", "upload")


@dataclass
class CountingWorker:
    """A worker of its own, and which stages ran for which job."""

    broker: FramequeueBroker
    runtime: Runtime
    ran: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def counting(self, stage: str, function: StageFunction) -> StageFunction:
        def run(runtime: Runtime, message: StageMessage) -> StageOutcome:
            with self.lock:
                self.ran.append((stage, message.job.id))
            return function(runtime, message)

        return run

    def stages_run_for(self, job_id: str) -> set[str]:
        with self.lock:
            return {stage for stage, ran_for in self.ran if ran_for == job_id}

    def finish(self, spec: JobSpec) -> JobRecord:
        submit_job(self.broker, self.runtime.status, spec)
        record = wait_until_finished(self.runtime.status, spec.id)
        assert record.state == "succeeded", record.error
        return record

    def result_bytes(self, record: JobRecord) -> bytes:
        return self.runtime.store.get_bytes(record.result_key)


@pytest.fixture(scope="module")
def worker(settings: Settings, tiny_profile) -> Iterator[CountingWorker]:  # type: ignore[no-untyped-def]
    own = settings.model_copy(update={"namespace": f"cache-{uuid.uuid4().hex[:8]}"})
    broker, runtime = build_broker(own), Runtime(own)
    counting = CountingWorker(broker, runtime)
    functions = {stage: counting.counting(stage, function) for stage, function in STAGE_FUNCTIONS.items()}
    declare_stage_actors(broker, functions, lambda: runtime, stage_cache=stage_cache_of)
    dramatiq_worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    dramatiq_worker.start()
    try:
        yield counting
    finally:
        dramatiq_worker.stop()
        broker.close()


def video_spec(prompt: str, **fields: object) -> JobSpec:
    return JobSpec(prompt=prompt, kind=JobKind.video, width=64, height=64, steps=1, num_frames=4, fps=4,
                   seed=11, **fields)  # type: ignore[arg-type]


def again(spec: JobSpec, **changes: object) -> JobSpec:
    """The same spec under a new job id (and any ``changes``)."""
    return spec.model_copy(update={"id": uuid.uuid4().hex, **changes})


def test_a_repeated_job_is_served_from_the_cache_byte_for_byte_and_its_model_stages_do_not_run(
    worker: CountingWorker,
) -> None:
    first = video_spec("a lighthouse keeper's cat")
    first_record = worker.finish(first)
    before = cache_counts(worker.runtime.status.client, worker.runtime.settings.namespace)

    repeat = again(first)
    record = worker.finish(repeat)

    assert first_record.cached == {} and worker.stages_run_for(first.id) == set(record.stages)
    assert record.cached == {stage: first.id for stage in CACHED}
    assert worker.stages_run_for(repeat.id) == set(ALWAYS_RUN)
    assert record.attempts == {stage: 1 for stage in record.stages}
    assert worker.result_bytes(record) == worker.result_bytes(first_record)
    assert record.artifacts["video"] == first_record.artifacts["video"]
    after = cache_counts(worker.runtime.status.client, worker.runtime.settings.namespace)
    assert {stage: after[(stage, "hit")] - before[(stage, "hit")] for stage in CACHED} == dict.fromkeys(CACHED, 1)


def test_a_job_that_says_cache_false_runs_every_stage_and_makes_the_same_bytes(worker: CountingWorker) -> None:
    first = video_spec("a windmill at noon")
    first_record = worker.finish(first)

    uncached = again(first, cache=False)
    record = worker.finish(uncached)

    assert record.cached == {} and worker.stages_run_for(uncached.id) == set(record.stages)
    assert worker.result_bytes(record) == worker.result_bytes(first_record)


def test_a_different_seed_misses_from_the_first_stage_on(worker: CountingWorker) -> None:
    first = video_spec("a kettle on a stove")
    worker.finish(first)

    reseeded = again(first, seed=first.seed + 1)
    record = worker.finish(reseeded)

    assert record.cached == {} and worker.stages_run_for(reseeded.id) == set(record.stages)


def test_a_cached_output_deleted_from_storage_is_made_again(worker: CountingWorker, settings: Settings) -> None:
    first = JobSpec(prompt="a heron in reeds", kind=JobKind.image, width=64, height=64, steps=1, seed=5)
    first_record = worker.finish(first)
    image_key = first_record.artifacts["image"]["key"]
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    s3.delete_object(Bucket=settings.s3_bucket, Key=image_key)
    assert not worker.runtime.store.exists(image_key)

    repeat = again(first)
    record = worker.finish(repeat)

    assert record.cached == {"prompt_enhance": first.id}
    assert worker.stages_run_for(repeat.id) == {"image", *ALWAYS_RUN}
    assert record.artifacts["image"]["sha256"] == first_record.artifacts["image"]["sha256"]
    assert worker.runtime.store.exists(record.artifacts["image"]["key"])
    third = worker.finish(again(first))
    assert third.cached == {"prompt_enhance": first.id, "image": repeat.id}


def test_the_hits_and_misses_are_on_the_metrics(worker: CountingWorker) -> None:
    first = JobSpec(prompt="a lantern by a canal", kind=JobKind.image, width=64, height=64, steps=1)
    worker.finish(first)
    worker.finish(again(first))
    counts = cache_counts(worker.runtime.status.client, worker.runtime.settings.namespace)

    families: list[Metric] = list(RedisCollector(worker.runtime.status, 3000).collect())

    family = next(family for family in families if family.name == "framequeue_stage_cache")
    exported = {(s.labels["stage"], s.labels["result"]): s.value for s in family.samples if s.name.endswith("_total")}
    assert exported == counts and counts[("image", "hit")] >= 1 and counts[("image", "miss")] >= 1


def test_the_key_follows_the_safety_policy_and_ignores_which_job_holds_the_bytes(settings: Settings) -> None:
    spec = JobSpec(prompt="a tern", kind=JobKind.image)
    digest = "ab" + "0" * 62
    message = StageMessage(job=spec, refs={"prompt": f"jobs/{spec.id}/prompt/ab/{digest}.txt"})
    elsewhere = StageMessage(job=again(spec), refs={"prompt": f"jobs/another/prompt/ab/{digest}.txt"})
    identity = stage_identity(Runtime(settings), "image", "tiny-sd")
    stricter = stage_identity(Runtime(settings.model_copy(update={"safety_threshold": 0.5})), "image", "tiny-sd")
    other_model = stage_identity(Runtime(settings), "image", "tiny-sd-alt")

    assert cache_key("image", message, identity) == cache_key("image", elsewhere, identity)
    assert cache_key("image", message, identity) != cache_key("image", message, stricter)
    assert cache_key("image", message, identity) != cache_key("image", message, other_model)
    assert cache_key("upload", message, identity) is None and cache_key("safety_check", message, identity) is None
    assert cache_key("image", message.with_refs(prompt="noop/prompt"), identity) is None


def test_a_message_written_before_the_cache_field_reads_as_cached() -> None:
    payload = {"job": {"prompt": "a tern", "kind": "image", "schema_version": 1}, "refs": {}}

    assert StageMessage.parse(payload).job.cache is True
    assert JobSpec(prompt="a tern", cache=False).model_dump(exclude_defaults=True)["cache"] is False


@pytest.mark.usefixtures("workers")
def test_the_worker_command_serves_a_repeat_from_the_cache(broker: FramequeueBroker, status: JobStatusStore) -> None:
    first = JobSpec(prompt="a snail on a fence post", kind=JobKind.image, width=64, height=64, steps=1, seed=3)
    submit_job(broker, status, first)
    assert wait_until_finished(status, first.id).state == "succeeded"

    repeat = again(first)
    submit_job(broker, status, repeat)
    record = wait_until_finished(status, repeat.id)

    assert record.state == "succeeded" and record.cached == {"prompt_enhance": first.id, "image": first.id}


def test_a_hub_model_is_named_with_the_revision_its_cache_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = tmp_path / "models--stabilityai--sd-turbo" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("b261bac6fd2cf515557d5d0707481eafa0485ec2\n")
    monkeypatch.setattr(model_paths, "HF_HUB_CACHE", str(tmp_path))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"first")

    assert weights_revision("stabilityai/sd-turbo") == "stabilityai/sd-turbo@b261bac6fd2cf515557d5d0707481eafa0485ec2"
    assert weights_revision("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    first = weights_revision(str(weights))
    weights_revision.cache_clear()
    (weights / "model.safetensors").write_bytes(b"other")
    assert first.startswith("sha256:") and weights_revision(str(weights)) != first
