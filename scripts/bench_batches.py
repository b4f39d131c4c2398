"""The batch part of `make bench` (called by scripts/bench.py).

(g) Submitting 10,000 batch items: wall time (pipelined records and messages) and Redis
    memory per queued job (INFO used_memory before and after, on a private server).
(h) An interactive no-op job's latency, idle and behind that 10,000-job batch backlog, on the
    same in-process worker (8 threads, no-op stages), same run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dramatiq

from queue_config.jobs import JobKind, JobSpec, Priority
from queue_config.settings import Settings
from queue_config.stages import STAGES
from scripts.bench import no_op_stages, wait_until
from workers.batches import batch_progress, cancel_batch, submit_lines
from workers.batches.files import parse_batch
from workers.broker import build_broker
from workers.jobs.submit import submit_job
from workers.redis_connection import redis_client
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors

ITEMS = 10_000


def interactive_latency_s(settings: Settings, runtime: Runtime, broker: dramatiq.Broker) -> float:
    spec = JobSpec(prompt="an urgent job", kind=JobKind.image, enhance_prompt=False)
    started = time.perf_counter()
    submit_job(broker, runtime.status, spec, catalog=runtime.catalog)
    wait_until(lambda: runtime.status.state_of(spec.id) == "succeeded", interval_s=0.002)
    return time.perf_counter() - started


def bench_batches(redis_url: str, data_dir: Path, *, threads: int) -> None:
    settings = Settings(redis_url=redis_url, namespace="bench-batch", data_dir=data_dir)
    client = redis_client(redis_url)
    text = "\n".join(json.dumps({"prompt": f"overnight item {n}", "kind": "image"}) for n in range(ITEMS))
    lines = parse_batch(text, batch_id="bench")
    broker = build_broker(settings)
    runtime = Runtime(settings)
    before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    summary = submit_lines(runtime.status, broker, "bench", "bench", lines, catalog=runtime.catalog)
    elapsed_s = time.perf_counter() - started
    per_job = (int(client.info("memory")["used_memory"]) - before) / summary["enqueued"]
    print(f"(g) {summary['enqueued']} batch items submitted in {elapsed_s:.2f} s "
          f"({summary['enqueued'] / elapsed_s:,.0f} items/s); Redis memory {per_job:,.0f} bytes per queued job "
          f"(job record + message + index)")

    declare_stage_actors(broker, no_op_stages(), lambda: runtime, catalog=runtime.catalog)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        behind = [interactive_latency_s(settings, runtime, broker) for _ in range(5)]
        left = batch_progress(runtime.status, "bench")["unfinished"]  # type: ignore[index]
        cancel_batch(runtime.status, broker, "bench")  # the rest of the backlog is skipped, not run
        backlog = STAGES["prompt_enhance"].actor_name(Priority.batch, runtime.catalog.defaults["prompt_enhance"])
        wait_until(lambda: client.llen(f"{settings.namespace}:{backlog}") == 0, interval_s=0.5)
        idle = [interactive_latency_s(settings, runtime, broker) for _ in range(5)]
    finally:
        worker.stop()
    median = sorted(behind)[2], sorted(idle)[2]
    print(f"(h) interactive no-op job: {median[0] * 1000:.0f} ms behind a batch backlog ({left} batch jobs still "
          f"queued after it), {median[1] * 1000:.0f} ms idle (medians of 5; ratio {median[0] / median[1]:.2f})")
