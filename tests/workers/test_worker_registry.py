"""The worker registry with real worker processes: who serves what, what each is running, who died.

Two workers of a namespace of their own, one for the GPU stages and one for the CPU stages (one
process, one thread each), on the session's settings: heartbeat timeout 3 s, so an entry goes
stale 3 s after its last beat and expires 6 s after it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from queue_config.catalog import catalog_of
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import CPU_STAGES, GPU_STAGES, STAGES
from tests.conftest import settings_env
from tests.servers import WorkerProcess, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.broker import build_broker
from workers.jobs.record import JobStatusStore
from workers.jobs.submit import submit_job
from workers.middleware.registry import framequeue_version
from workers.ops.workers import WorkerEntry, list_workers, live_workers_by_stage

#: A worker process boots slowly on a busy machine (torch, the tiny models).
BOOT_TIMEOUT_S = 180
JOB_TIMEOUT_S = 600


class Fleet:
    """A GPU-stage worker and a CPU-stage worker on a namespace of their own."""

    def __init__(self, settings: Settings, artifacts_dir: Path) -> None:
        self.settings = settings.model_copy(update={"namespace": f"framequeue-fleet-{uuid.uuid4().hex[:8]}"})
        self.client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        env = {**settings_env(self.settings), "FRAMEQUEUE_NAMESPACE": self.settings.namespace}
        self.gpu = WorkerProcess(env, artifacts_dir / "worker-registry-gpu.log", "--processes", "1", "--threads", "1",
                                 "--stages", ",".join(GPU_STAGES))
        self.cpu = WorkerProcess(env, artifacts_dir / "worker-registry-cpu.log", "--processes", "1", "--threads", "1",
                                 "--stages", ",".join(CPU_STAGES))

    def entries(self) -> list[WorkerEntry]:
        return list_workers(self.client, self.settings.namespace)

    def serving(self, stages: tuple[str, ...]) -> WorkerEntry | None:
        return next((entry for entry in self.entries() if entry.stages == tuple(sorted(stages))), None)

    def stop(self) -> None:
        self.gpu.stop()
        self.cpu.stop()
        for key in self.client.scan_iter(match=f"{self.settings.namespace}:*", count=1000):
            self.client.delete(key)


@pytest.fixture
def fleet(settings: Settings, tiny_profile: object, artifacts_dir: Path) -> Iterator[Fleet]:
    fleet = Fleet(settings, artifacts_dir)
    try:
        wait_for(lambda: fleet.serving(GPU_STAGES) and fleet.serving(CPU_STAGES), BOOT_TIMEOUT_S,
                 "both workers to register")
        yield fleet
    finally:
        fleet.stop()


def slow_image_job() -> JobSpec:
    """An image job whose image stage takes a while on the tiny profile (many diffusion steps)."""
    return JobSpec(prompt="a slow heron", kind=JobKind.image, width=192, height=192, steps=50, enhance_prompt=False)


def test_each_worker_process_lists_its_host_pid_stages_models_and_version(fleet: Fleet) -> None:
    gpu, cpu = fleet.serving(GPU_STAGES), fleet.serving(CPU_STAGES)
    assert gpu is not None and cpu is not None
    catalog = catalog_of(fleet.settings)
    gpu_models = sorted(model.id for stage in GPU_STAGES for model in catalog.of_stage(stage))
    # A model stage has an interactive and a batch queue per model of the catalog.
    assert gpu.queues == tuple(sorted(queue for stage in GPU_STAGES for model in catalog.of_stage(stage)
                                      for queue in STAGES[stage].queue_names(model.id)))
    assert len(gpu.queues) == 2 * len(gpu_models) and all("." in queue for queue in gpu.queues)
    assert gpu.models["models"] == ",".join(gpu_models)
    assert cpu.models["models"] == ",".join(sorted(model.id for model in catalog.of_stage("prompt_enhance")))
    for entry in (gpu, cpu):
        assert entry.host == socket.gethostname() and not entry.stale
        os.kill(entry.pid, 0)  # a live process of this host
        assert entry.pid not in (os.getpid(), fleet.gpu.process.pid, fleet.cpu.process.pid)
        assert entry.threads == 1 and entry.version == framequeue_version() and entry.started_at > 0
        assert entry.models["profile"] == "tiny" and entry.models["device"] == "cpu"
    assert gpu.pid != cpu.pid
    assert live_workers_by_stage(fleet.client, fleet.settings.namespace) == dict.fromkeys(STAGES, 1)


def test_a_running_job_is_listed_under_its_worker_until_it_ends(fleet: Fleet) -> None:
    status = JobStatusStore(fleet.client, fleet.settings.namespace)
    spec = slow_image_job()
    submit_job(build_broker(fleet.settings), status, spec)

    def running_on_gpu_worker() -> WorkerEntry | None:
        entry = fleet.serving(GPU_STAGES)
        return entry if entry and any(job.job_id == spec.id for job in entry.current_jobs) else None

    entry = wait_for(running_on_gpu_worker, JOB_TIMEOUT_S, "the job to be listed as running", interval_s=0.02)
    [job] = entry.current_jobs
    assert job.stage == "image" and job.message_id and job.since >= entry.started_at
    wait_until_finished(status, spec.id, JOB_TIMEOUT_S)
    wait_for(lambda: all(not entry.current_jobs for entry in fleet.entries()), 30, "no job listed as running")


def test_a_killed_worker_turns_stale_then_expires_and_a_stopped_one_leaves_at_once(fleet: Fleet) -> None:
    cpu = fleet.serving(CPU_STAGES)
    assert cpu is not None
    fleet.cpu.stop()
    # Stopped cleanly, the process removed its own entry before it exited: it never lingers.
    assert [entry.stages for entry in fleet.entries()] == [tuple(sorted(GPU_STAGES))]

    gpu = fleet.serving(GPU_STAGES)
    assert gpu is not None and not gpu.stale
    fleet.gpu.kill()
    stale = wait_for(lambda: (entry := fleet.serving(GPU_STAGES)) and entry.stale and entry, 60,
                     "the killed worker to be marked stale", interval_s=0.1)
    assert stale.pid == gpu.pid and stale.age_s > fleet.settings.heartbeat_timeout_ms / 1000
    assert live_workers_by_stage(fleet.client, fleet.settings.namespace)["image"] == 0
    wait_for(lambda: not fleet.entries(), 60, "the killed worker's entry to expire")
    assert not fleet.client.exists(f"{fleet.settings.namespace}:workers")


def test_a_message_run_before_the_worker_finished_booting_is_listed(settings: Settings) -> None:
    """dramatiq starts a worker's threads before ``after_worker_boot``: one may run a message first."""
    import types

    import dramatiq

    from workers.middleware.registry import WorkerRegistry

    isolated = settings.model_copy(update={"namespace": f"registry-boot-{uuid.uuid4().hex[:8]}"})
    broker = build_broker(isolated)
    registry = WorkerRegistry(describe_models=lambda queues: {}, interval_ms=60_000, stale_after_ms=30_000,
                              ttl_ms=60_000)
    worker = types.SimpleNamespace(consumers={"video": None}, worker_threads=1)
    message = dramatiq.Message(queue_name="video", actor_name="video", args=({"job": {"id": "early-job"}},),
                               kwargs={}, options={})

    registry.before_worker_boot(broker, worker)  # type: ignore[arg-type]
    registry.before_process_message(broker, message)  # type: ignore[arg-type]
    registry.after_worker_boot(broker, worker)  # type: ignore[arg-type]
    try:
        listed = wait_for(lambda: [job.job_id for entry in list_workers(
            redis.Redis.from_url(isolated.redis_url, decode_responses=True), isolated.namespace)
            for job in entry.current_jobs], 10, "the early job in the registry")
    finally:
        registry.after_worker_shutdown(broker, worker)  # type: ignore[arg-type]

    assert listed == ["early-job"]
