"""The retention part of `make bench` (called by scripts/bench.py).

(i) A soak: 10,000 no-op image jobs submitted at once and run to ``succeeded`` by an in-process
    worker, on a Redis of their own with a 2 s retention. Redis memory (INFO used_memory) before,
    at the peak (sampled while they run) and after the retention has passed and one reconciler
    pass has trimmed: what Redis holds per job at the peak, and whether it comes back to where it
    was (after/before near 1: flat however many jobs have run).
"""

from __future__ import annotations

import time
from pathlib import Path

import dramatiq
import redis

from queue_config.catalog import Catalog
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from scripts.bench import NothingFound, no_op_stages, wait_until
from workers.broker import FramequeueBroker, build_broker
from workers.embedded_redis import private_redis_server
from workers.jobs.reconciler import Reconciler
from workers.jobs.record import JobStatusStore
from workers.jobs.retention import Trimmed
from workers.jobs.submit import accept_jobs
from workers.middleware import JobStatusMiddleware
from workers.redis_connection import redis_client
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors

JOBS = 10_000
#: Jobs run (and left to expire) before the "before" reading, so that it includes what any run
#: leaves for good (loaded scripts, declared queues, the worker's heartbeat).
WARM_UP_JOBS = 100
RETENTION_S = 2.0
#: Jobs accepted per pipeline.
CHUNK = 500


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def soak(
    client: redis.Redis, broker: FramequeueBroker, status: JobStatusStore, jobs: int, label: str, catalog: Catalog
) -> tuple[int, Trimmed]:
    """Submit ``jobs`` no-op jobs, wait until all have finished and expired, run one reconciler pass.

    Returns the peak of used_memory seen meanwhile, and what the pass trimmed.
    """
    specs = [JobSpec(prompt=f"{label} job {n}", kind=JobKind.image, enhance_prompt=False, width=64, height=64)
             for n in range(jobs)]
    peak = 0
    for start in range(0, jobs, CHUNK):
        accept_jobs(broker, status, specs[start : start + CHUNK], screen=NothingFound(), catalog=catalog)
        peak = max(peak, used_memory(client))

    chunks = [[status.job_key(spec.id) for spec in specs[start : start + CHUNK]] for start in range(0, jobs, CHUNK)]

    def finished_and_expired() -> bool:
        nonlocal peak
        peak = max(peak, used_memory(client))
        return not client.zcard(status.active_key) and not any(client.exists(*keys) for keys in chunks)

    wait_until(finished_and_expired, interval_s=0.05)
    return peak, Reconciler(status, broker).run_once().trimmed


def bench_retention(data_dir: Path, *, threads: int) -> None:
    with private_redis_server(data_dir.parent) as redis_url:
        settings = Settings(redis_url=redis_url, namespace="bench-retention", data_dir=data_dir,
                            retention_s=RETENTION_S)
        client = redis_client(redis_url)
        broker = build_broker(settings)
        runtime = Runtime(settings)
        # build_broker gives the job-status middleware a store with the default retention.
        for middleware in broker.middleware:
            if isinstance(middleware, JobStatusMiddleware):
                middleware.store.retention_s = settings.retention_s
        declare_stage_actors(broker, no_op_stages(), lambda: runtime, catalog=runtime.catalog)
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
        worker.start()
        try:
            soak(client, broker, runtime.status, WARM_UP_JOBS, "warm-up", runtime.catalog)
            before = used_memory(client)
            started = time.perf_counter()
            peak, trimmed = soak(client, broker, runtime.status, JOBS, "soak", runtime.catalog)
            elapsed_s = time.perf_counter() - started
            after = used_memory(client)
        finally:
            worker.stop()
            broker.close()
    print(f"(i) {JOBS} no-op jobs run, expired ({RETENTION_S:g} s retention) and trimmed in {elapsed_s:.1f} s: "
          f"Redis used_memory {before:,} bytes before, {peak:,} at the peak ({(peak - before) / JOBS:,.0f} bytes "
          f"per job), {after:,} after (after/before {after / before:.3f}; the pass trimmed {trimmed.index_entries:,} "
          f"index entries and {trimmed.events:,} events)")

