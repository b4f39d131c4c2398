"""The fair-share part of `make bench` (called by scripts/bench.py).

(p) Tenants on one fleet, through the fair-share dispatcher (workers/jobs/fair_share.py) and an
    in-process worker whose stages each take ``STAGE_S``:
    - tenant b's interactive job latency, idle and while tenant a has a 10,000-job interactive
      backlog, same run (medians of 5; the target ratio is at most 1.5);
    - two batch tenants weighted 1 and 3, each with more work than the fleet finishes in a minute:
      the share of the jobs finished in that minute (after both submitted) that each got, against
      its weight's share.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dramatiq

from queue_config.jobs import JobKind, JobSpec, Priority
from queue_config.settings import Settings
from queue_config.tenants import Tenant
from scripts.bench import NothingFound, no_op_stages, wait_until
from workers.broker import build_broker
from workers.jobs.fair_share import FairShareDispatcher, pending_depths, weights_from_tenants
from workers.jobs.submit import accept_jobs
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors
from workers.stages import StageFunction
from workers.tenants.store import TenantStore

BACKLOG = 10_000
#: What each stage takes: enough for a backlog to mean waiting, short enough to run in seconds.
STAGE_S = 0.01
WEIGHTS = {"light": 1.0, "heavy": 3.0}
#: Each batch tenant's jobs: more than the fleet finishes in the measured minute.
BATCH_JOBS = 15_000


def timed_stages() -> dict[str, StageFunction]:
    """The no-op stages, each taking ``STAGE_S``."""

    def slow(run: StageFunction) -> StageFunction:
        def timed(runtime: Runtime, message: object) -> object:
            time.sleep(STAGE_S)
            return run(runtime, message)

        return timed  # type: ignore[return-value]

    return {stage: slow(run) for stage, run in no_op_stages().items()}


class Fleet:
    """An in-process worker and a dispatcher on one namespace."""

    def __init__(self, redis_url: str, data_dir: Path, namespace: str, threads: int) -> None:
        self.settings = Settings(redis_url=redis_url, namespace=namespace, data_dir=data_dir)
        self.broker = build_broker(self.settings)
        self.runtime = Runtime(self.settings)
        self.status = self.runtime.status
        declare_stage_actors(self.broker, timed_stages(), lambda: self.runtime, catalog=self.runtime.catalog)
        self.worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=100)
        self.dispatcher = FairShareDispatcher(self.status, weights_from_tenants(self.status.client, namespace),
                                              window=threads)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.dispatcher.run_forever, args=(self.stop,), daemon=True)

    def __enter__(self) -> Fleet:
        self.worker.start()
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.worker.stop()
        self.broker.close()

    def submit(self, specs: list[JobSpec]) -> None:
        for start in range(0, len(specs), 1000):
            accept_jobs(self.broker, self.status, specs[start : start + 1000], screen=NothingFound(),
                        catalog=self.runtime.catalog, emit=False)

    def latency_s(self, tenant: str) -> float:
        spec = JobSpec(prompt="an urgent job", kind=JobKind.image, enhance_prompt=False, tenant=tenant)
        started = time.perf_counter()
        self.submit([spec])
        wait_until(lambda: self.status.state_of(spec.id) == "succeeded", interval_s=0.002)
        return time.perf_counter() - started


def job(tenant: str, number: int, priority: Priority = Priority.interactive) -> JobSpec:
    return JobSpec(prompt=f"{tenant} job {number}", kind=JobKind.image, enhance_prompt=False, tenant=tenant,
                   priority=priority)


def bench_fair_share(redis_url: str, data_dir: Path, *, threads: int, window_s: float = 60.0) -> None:
    with Fleet(redis_url, data_dir, "bench-fair", threads) as fleet:
        idle = sorted(fleet.latency_s("b") for _ in range(5))
        fleet.submit([job("a", n) for n in range(BACKLOG)])
        wait_until(lambda: fleet.status.client.scard(f"bench-fair:fair:admitted:{_first_queue(fleet)}") > 0)
        behind = sorted(fleet.latency_s("b") for _ in range(5))
        left = sum(pending_depths(fleet.status.client, "bench-fair").values())
    print(f"(p) tenant b's interactive job ({STAGE_S * 1000:.0f} ms stages, window {threads}): "
          f"{behind[2] * 1000:.0f} ms behind tenant a's {BACKLOG:,}-job backlog ({left:,} still pending after it), "
          f"{idle[2] * 1000:.0f} ms idle (medians of 5; ratio {behind[2] / idle[2]:.2f}, target <= 1.5)")

    store = TenantStore(_client(redis_url), "bench-share")
    for tenant, weight in WEIGHTS.items():
        store.put(Tenant(id=tenant, weight=weight))
    with Fleet(redis_url, data_dir, "bench-share", threads) as fleet:
        specs = [job(tenant, n, Priority.batch) for n in range(BATCH_JOBS) for tenant in WEIGHTS]
        fleet.submit(specs)
        before = _finished_by_tenant(fleet, specs)
        time.sleep(window_s)  # the measured window: whatever finishes in it counts
        after = _finished_by_tenant(fleet, specs)
        finished = {tenant: after[tenant] - before[tenant] for tenant in WEIGHTS}
    total = sum(finished.values()) or 1
    shares = ", ".join(f"{tenant} (weight {WEIGHTS[tenant]:g}) {finished[tenant]} jobs = {finished[tenant] / total:.1%}"
                       f" against {WEIGHTS[tenant] / sum(WEIGHTS.values()):.1%}" for tenant in WEIGHTS)
    print(f"(p) two batch tenants over {window_s:g} s: {shares}")


def _first_queue(fleet: Fleet) -> str:
    from queue_config.stages import STAGES

    model = fleet.runtime.catalog.defaults["prompt_enhance"]
    return STAGES["prompt_enhance"].actor_name(Priority.interactive, model)


def _client(redis_url: str):  # type: ignore[no-untyped-def]
    from workers.redis_connection import redis_client

    return redis_client(redis_url, decode_responses=True)


def _finished_by_tenant(fleet: Fleet, specs: list[JobSpec]) -> dict[str, int]:
    pipe = fleet.status.client.pipeline(transaction=False)
    for spec in specs:
        pipe.hget(fleet.status.job_key(spec.id), "state")
    counts = dict.fromkeys(WEIGHTS, 0)
    for spec, state in zip(specs, pipe.execute(), strict=True):
        if state == "succeeded" and spec.tenant:
            counts[spec.tenant] += 1
    return counts


if __name__ == "__main__":  # this section alone: python -m scripts.bench_fair_share [window_s]
    import logging
    import sys
    import tempfile

    from workers.embedded_redis import private_redis_server

    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="framequeue-bench-") as tmp, private_redis_server(Path(tmp)) as url:
        bench_fair_share(url, Path(tmp) / "data", threads=8, window_s=float(sys.argv[1]) if sys.argv[1:] else 60.0)
