"""(j) One job alone: milliseconds per stage hop, framequeue against bare dramatiq.

Each runs a six-stage chain of no-op steps on one in-process worker (8 threads, a 100 ms worker
timeout, as ``framequeue worker`` sets it), idle between jobs. With a queue per stage (as
framequeue has), every hop finds the next stage's queue empty and its consumer waiting: bare
dramatiq's consumer polls (the timeout bounds its sleep), framequeue's is woken by the enqueue
(workers/consumer.py). Bare dramatiq with all six actors on one queue is the anchor that polls
least. Medians of 30 jobs each.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from scripts.bench import DEPTH, NothingFound, no_op_stages, wait_until
from workers.broker import build_broker
from workers.jobs.submit import accept_jobs
from workers.redis_connection import redis_client
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors

JOBS = 30
#: Idle time between two lone jobs: long enough for every consumer to go back to waiting.
IDLE_S = 0.3


def _ms_per_hop(broker: dramatiq.Broker, send: Callable[[int], Callable[[], bool]]) -> float:
    """Median ms per hop over JOBS lone jobs; ``send(n)`` starts job n and returns its "finished" test."""
    worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=100)
    worker.start()
    hops = []
    try:
        time.sleep(1.0)
        for number in range(JOBS):
            started = time.perf_counter()
            finished = send(number)
            wait_until(finished, timeout_s=60, interval_s=0.0005)
            hops.append((time.perf_counter() - started) * 1000 / DEPTH)
            time.sleep(IDLE_S)
    finally:
        worker.stop()
        broker.close()
    return statistics.median(hops)


def bare_ms_per_hop(redis_url: str, *, one_queue: bool) -> float:
    namespace = f"bench-hops-bare-{int(one_queue)}"
    broker = RedisBroker(client=redis_client(redis_url), namespace=namespace)
    client = redis_client(redis_url, decode_responses=True)
    actors: list[dramatiq.Actor] = []

    def make(position: int) -> dramatiq.Actor:
        def step(job: str) -> None:
            if position + 1 < DEPTH:
                actors[position + 1].send(job)
            else:
                client.set(f"{namespace}:done:{job}", 1)

        queue = "hop" if one_queue else f"hop_{position}"
        return dramatiq.actor(step, actor_name=f"hop_{position}", queue_name=queue, broker=broker)

    actors.extend(make(position) for position in range(DEPTH))

    def send(number: int) -> Callable[[], bool]:
        actors[0].send(str(number))
        return lambda: bool(client.exists(f"{namespace}:done:{number}"))

    return _ms_per_hop(broker, send)


def framequeue_ms_per_hop(redis_url: str, data_dir: Path, *, namespace: str = "bench-hops-fq",
                          middleware: Sequence[dramatiq.Middleware] = ()) -> float:
    """Median ms per hop of lone jobs through framequeue's broker and actors, with ``middleware`` added."""
    settings = Settings(redis_url=redis_url, namespace=namespace, data_dir=data_dir)
    broker = build_broker(settings)
    for extra in middleware:
        broker.add_middleware(extra)
    runtime = Runtime(settings)
    declare_stage_actors(broker, no_op_stages(), lambda: runtime, catalog=runtime.catalog)

    def send(number: int) -> Callable[[], bool]:
        spec = JobSpec(prompt=f"a lone job {number}", kind=JobKind.video, enhance_prompt=False, width=64, height=64)
        # The hops, not the prompt screen.
        accept_jobs(broker, runtime.status, [spec], screen=NothingFound(), catalog=runtime.catalog)
        return lambda: runtime.status.state_of(spec.id) == "succeeded"

    return _ms_per_hop(broker, send)


def bench_hops(redis_url: str, data_dir: Path) -> None:
    per_stage = bare_ms_per_hop(redis_url, one_queue=False)
    one_queue = bare_ms_per_hop(redis_url, one_queue=True)
    ours = framequeue_ms_per_hop(redis_url, data_dir)
    print(f"(j) one job alone, {DEPTH} stages, idle worker, median ms per hop: framequeue {ours:.1f} (woken by the "
          f"enqueue; job record and events included); bare dramatiq {per_stage:.1f} with a queue per stage "
          f"(polling), {one_queue:.1f} with one queue; ratios framequeue/bare {ours / per_stage:.2f} and "
          f"{ours / one_queue:.2f}")
