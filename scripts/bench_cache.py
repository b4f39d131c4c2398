"""(m) Cached repeats: one tiny-profile video job, computed, then the same spec again under a new id.

An in-process worker (2 threads) runs the real stages with the stage cache, on the local store. A
warm-up job loads every model first. Each round submits a spec with a new seed (every cacheable
stage misses and runs) and then the same spec under another job id (prompt_enhance, image, frames
and video are served from the cache; safety_check and upload run). Wall time is from submission
until the record says succeeded; medians over the rounds. The cached job's time is split into the
stages that still run, the four cache lookups, and the rest: hops and record keeping.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

import dramatiq

from queue_config.catalog import Catalog
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from scripts.bench import wait_until
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.record import TERMINAL_STATES, JobRecord, JobStatusStore
from workers.jobs.submit import submit_job
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors
from workers.stages import STAGE_FUNCTIONS
from workers.stages.cache_identity import stage_cache_of

ROUNDS = 3
ALWAYS_RUN = ("safety_check", "upload")


def spec_of(seed: int, **fields: object) -> JobSpec:
    return JobSpec(prompt="a lighthouse on a cliff at dusk", kind=JobKind.video, width=256, height=256,
                   num_frames=24, fps=12, seed=seed, **fields)  # type: ignore[arg-type]


def run_s(broker: FramequeueBroker, status: JobStatusStore, spec: JobSpec, catalog: Catalog) -> tuple[float, JobRecord]:
    """Wall seconds from submission to the job's end, and its record."""
    started = time.perf_counter()
    submit_job(broker, status, spec, catalog=catalog)
    wait_until(lambda: status.state_of(spec.id) in TERMINAL_STATES, interval_s=0.005)
    elapsed_s = time.perf_counter() - started
    record = status.get(spec.id)
    assert record is not None and record.state == "succeeded", record
    return elapsed_s, record


def bench_cache(redis_url: str, data_dir: Path) -> None:
    settings = Settings(redis_url=redis_url, namespace=f"bench-cache-{uuid.uuid4().hex[:6]}", data_dir=data_dir,
                        model_profile="tiny")
    broker, runtime = build_broker(settings), Runtime(settings)
    declare_stage_actors(broker, STAGE_FUNCTIONS, lambda: runtime, catalog=runtime.catalog,
                         stage_cache=stage_cache_of)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    uncached_s: list[float] = []
    cached_s: list[float] = []
    split: list[tuple[float, float]] = []
    try:
        run_s(broker, runtime.status, spec_of(seed=1000, cache=False), runtime.catalog)  # warm-up: loads the models
        for seed in range(ROUNDS):
            first = spec_of(seed)
            elapsed_s, _ = run_s(broker, runtime.status, first, runtime.catalog)
            uncached_s.append(elapsed_s)
            again = first.model_copy(update={"id": uuid.uuid4().hex})
            elapsed_s, record = run_s(broker, runtime.status, again, runtime.catalog)
            assert set(record.cached) == {"prompt_enhance", "image", "frames", "video"}, record.cached
            cached_s.append(elapsed_s)
            running = sum(record.timings_s[stage] for stage in ALWAYS_RUN)
            lookups = sum(record.timings_s[stage] for stage in record.cached)
            split.append((running, lookups))
    finally:
        worker.stop()
        broker.close()
    uncached, cached = statistics.median(uncached_s), statistics.median(cached_s)
    running, lookups = split[cached_s.index(cached)] if cached in cached_s else split[0]
    print(f"(m) a repeated tiny-profile video job (256x256, 24 frames, 4 steps), medians of {ROUNDS}: "
          f"uncached {uncached * 1000:.0f} ms, cached {cached * 1000:.0f} ms "
          f"(uncached/cached {uncached / cached:.1f}x)")
    print(f"    cached job: safety_check + upload {running * 1000:.0f} ms, the four cache lookups "
          f"{lookups * 1000:.1f} ms, hops and record keeping {(cached - running - lookups) * 1000:.0f} ms "
          f"(the median round)")
