"""(k) What the worker registry costs a message: its two hooks, and a lone job's stage hops.

The registry (workers/middleware/registry.py) lists each running message in its worker's entry:
one HSET when it starts, one HDEL when it ends, which the worker thread only queues for a
background writer (a ``StatusWriter``). Timed two ways on the same Redis: the two hooks alone
(median microseconds per message over 5,000 messages: the cost on the worker thread), and a lone
six-stage job's median ms per hop through framequeue's broker and actors with the registry and
without it (as in (j)), alternating, in the same run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import dramatiq
from dramatiq.broker import MessageProxy

from queue_config.catalog import catalog_of
from queue_config.settings import Settings
from queue_config.stages import STAGES
from scripts.bench_hops import framequeue_ms_per_hop
from workers.broker import build_broker
from workers.middleware.registry import WorkerRegistry

HOOK_MESSAGES = 5_000
ROUNDS = 3


def hooks_us_per_message(redis_url: str, data_dir: Path) -> float:
    """Median µs of the registry's before- and after-process hooks for one message, on a booted worker."""
    settings = Settings(redis_url=redis_url, namespace="bench-registry-hooks", data_dir=data_dir)
    broker = build_broker(settings)
    registry = WorkerRegistry()
    broker.add_middleware(registry)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    timings = []
    queue = STAGES["image"].actor_name(model=catalog_of(settings).defaults["image"])
    try:
        for number in range(HOOK_MESSAGES):
            payload = {"job": {"id": f"job-{number}", "kind": "image"}}
            message = MessageProxy(dramatiq.Message(queue_name=queue, actor_name=queue, args=(payload,),
                                                    kwargs={}, options={}))
            started = time.perf_counter()
            registry.before_process_message(broker, message)
            registry.after_process_message(broker, message, result=None)
            timings.append((time.perf_counter() - started) * 1e6)
    finally:
        worker.stop()
        broker.close()
    return statistics.median(timings)


def bench_registry(redis_url: str, data_dir: Path) -> None:
    hooks_us = hooks_us_per_message(redis_url, data_dir)
    with_registry, without = [], []
    for round_number in range(ROUNDS):
        without.append(framequeue_ms_per_hop(redis_url, data_dir, namespace=f"bench-registry-0-{round_number}"))
        with_registry.append(framequeue_ms_per_hop(redis_url, data_dir, namespace=f"bench-registry-1-{round_number}",
                                                   middleware=[WorkerRegistry()]))
    ours, bare = statistics.median(with_registry), statistics.median(without)
    print(f"(k) worker registry: its hooks take {hooks_us:.0f} µs of a worker thread per message (one HSET and one "
          f"HDEL queued for its writer); a lone job's "
          f"median ms per hop {ours:.2f} with it, {bare:.2f} without ({ours - bare:+.2f} ms; medians of {ROUNDS} "
          f"alternating rounds)")


if __name__ == "__main__":
    import logging
    import tempfile

    from workers.embedded_redis import private_redis_server

    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="framequeue-bench-") as tmp, private_redis_server(Path(tmp)) as url:
        bench_registry(url, Path(tmp) / "data")
