"""framequeue's benchmark: `make bench`. Prints numbers; asserts nothing.

(a) Throughput of a six-stage pipeline of no-op stages through framequeue's
    broker, job-status middleware and actor shell, against a bare dramatiq
    pipeline of the same depth, in worker processes, on the same Redis in the
    same run, printed as ratios (scripts/bench_throughput.py); and (a2) the CPU
    per job of each, with framequeue's job-status middleware out as a third
    run, to show how the gap divides.
(b) Latency of one tiny-profile video job, per stage, cold (fresh worker,
    models loading) and warm.
(c) Peak RSS of the worker processes during (b).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import dramatiq  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
from dramatiq.brokers.redis import RedisBroker  # noqa: E402

from queue_config.jobs import JobKind, JobSpec  # noqa: E402
from queue_config.safety_policy import Check, SafetyFinding  # noqa: E402
from queue_config.settings import Settings  # noqa: E402
from queue_config.stages import STAGES, stage_plan  # noqa: E402
from workers.broker import FramequeueBroker, build_broker  # noqa: E402
from workers.embedded_redis import private_redis_server  # noqa: E402
from workers.jobs.record import TERMINAL_STATES, JobStatusStore  # noqa: E402
from workers.jobs.submit import submit_job  # noqa: E402
from workers.middleware import JobStatusMiddleware  # noqa: E402
from workers.redis_connection import redis_client  # noqa: E402
from workers.remote import add_remote_middleware  # noqa: E402
from workers.runtime import Runtime  # noqa: E402
from workers.stage_actor import declare_stage_actors  # noqa: E402
from workers.stages import StageFunction, StageOutcome  # noqa: E402

DEPTH = len(stage_plan(JobKind.video))


def wait_until(condition, timeout_s: float = 600.0, interval_s: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark run did not finish")
        time.sleep(interval_s)


def done_key(namespace: str) -> str:
    """The counter the last stage of a benchmark pipeline increments."""
    return f"{namespace}:bench-done"


def bare_actors(broker: dramatiq.Broker, client: redis.Redis, namespace: str) -> list[dramatiq.Actor]:
    """A chain of DEPTH plain dramatiq actors, a queue each, each sending to the next; the last counts."""
    actors: list[dramatiq.Actor] = []

    def make(position: int) -> dramatiq.Actor:
        def step(job_id: str) -> None:
            if position + 1 < DEPTH:
                actors[position + 1].send(job_id)
            else:
                client.incr(done_key(namespace))

        return dramatiq.actor(step, actor_name=f"bare_{position}", queue_name=f"bare_{position}", broker=broker)

    actors.extend(make(position) for position in range(DEPTH))
    return actors


def bare_dramatiq_jobs_per_s(redis_url: str, jobs: int, threads: int, namespace: str) -> float:
    """Jobs through ``bare_actors`` in this process."""
    client = redis_client(redis_url)
    broker = RedisBroker(client=client, namespace=namespace)
    first = bare_actors(broker, client, namespace)[0]
    for number in range(jobs):
        first.send(str(number))
    return _drain(broker, threads, lambda: int(client.get(done_key(namespace)) or 0) >= jobs, jobs)


def timed_jobs_s(broker: FramequeueBroker, runtime: Runtime, spec_of: Callable[[int], JobSpec], *, jobs: int,
                 threads: int, on_warm: Callable[[], object] = lambda: None) -> float:
    """Seconds ``jobs`` jobs (``spec_of(0..jobs-1)``) take to succeed through the real stage functions on one
    in-process worker of ``threads``, after a warm-up of ``threads`` jobs that loads the models (then
    ``on_warm`` is called, e.g. to forget the warm-up's model calls)."""
    from workers.stages import STAGE_FUNCTIONS

    declare_stage_actors(broker, STAGE_FUNCTIONS, lambda: runtime, catalog=runtime.catalog)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()

    def finish(specs: list[JobSpec]) -> float:
        started = time.perf_counter()
        for spec in specs:
            submit_job(broker, runtime.status, spec, catalog=runtime.catalog)
        wait_until(lambda: all(runtime.status.state_of(spec.id) in TERMINAL_STATES for spec in specs),
                   interval_s=0.02)
        elapsed_s = time.perf_counter() - started
        states = {runtime.status.state_of(spec.id) for spec in specs}
        assert states == {"succeeded"}, states
        return elapsed_s

    try:
        finish([spec_of(10_000 + seed) for seed in range(threads)])
        on_warm()
        return finish([spec_of(seed) for seed in range(jobs)])
    finally:
        worker.stop()
        broker.close()


def speedup(one_by_one: Callable[[], object], together: Callable[[], object], rounds: int) -> float:
    """How many times faster ``together`` runs than ``one_by_one`` (median of ``rounds``, after a warm-up)."""
    def seconds(run: Callable[[], object]) -> float:
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    together()
    return statistics.median(seconds(one_by_one) / seconds(together) for _ in range(rounds))


def alternating_medians(run_round: Callable[[int], tuple[float, ...]], settings: Sequence[int],
                        rounds: int) -> dict[int, tuple[float, ...]]:
    """Each setting's median results over ``rounds`` rounds that run every setting in turn, so that a busy
    spell on the machine falls on every setting."""
    runs: dict[int, list[tuple[float, ...]]] = {setting: [] for setting in settings}
    for _ in range(rounds):
        for setting in settings:
            runs[setting].append(run_round(setting))
    return {setting: tuple(statistics.median(values) for values in zip(*results, strict=True))
            for setting, results in runs.items()}


class NothingFound:
    """A prompt screen that finds nothing, for sections that time the queue rather than the screen ((l) times it)."""

    def screen_many(self, texts: Sequence[str], check: Check = Check.prompt) -> list[list[SafetyFinding]]:
        return [[] for _ in texts]


def no_op_stages(on_last: Callable[[], object] = lambda: None) -> dict[str, StageFunction]:
    """Stage functions that do nothing but hand on a reference (and finish the job at upload, calling ``on_last``)."""

    def no_op(stage: str) -> StageFunction:
        final = "succeeded" if stage == "upload" else ""

        def run(_runtime: Runtime, _message: object) -> StageOutcome:
            if final:
                on_last()
            return StageOutcome(refs={stage: f"noop/{stage}"}, final_state=final)

        return run

    return {stage: no_op(stage) for stage in STAGES}


def framequeue_jobs_per_s(
    settings: Settings,
    jobs: int,
    threads: int,
    *,
    functions: dict[str, StageFunction] | None = None,
    kind: JobKind = JobKind.video,
    remote_middleware: bool = False,
    status_middleware: bool = True,
) -> float:
    """Jobs through framequeue's broker, middleware and actor shell, running ``functions`` (no-ops).

    Without ``status_middleware`` nothing records a job's state, so the last no-op stage counts instead.
    """
    broker = build_broker(settings)
    runtime = Runtime(settings)
    if remote_middleware:
        add_remote_middleware(broker, runtime)
    status = runtime.status
    if not status_middleware:
        broker.middleware[:] = [m for m in broker.middleware if not isinstance(m, JobStatusMiddleware)]
        functions = no_op_stages(lambda: status.client.incr(done_key(settings.namespace)))
    declare_stage_actors(broker, functions or no_op_stages(), lambda: runtime, catalog=runtime.catalog)
    ids = []
    for number in range(jobs):
        spec = JobSpec(prompt=f"benchmark job {number}", kind=kind, enhance_prompt=False, width=64, height=64)
        # (a) times the queue; (l) times the screen.
        submit_job(broker, status, spec, screen=NothingFound(), catalog=runtime.catalog)
        ids.append(spec.id)

    if not status_middleware:
        return _drain(broker, threads, lambda: int(status.client.get(done_key(settings.namespace)) or 0) >= jobs, jobs)
    pending = list(ids)

    def all_succeeded() -> bool:
        # This check shares the worker's process (and its CPU count): one command a check while the last
        # job is unfinished, then one pipeline over those not yet seen succeeded.
        if status.client.hget(status.job_key(pending[-1]), "state") != "succeeded":
            return False
        pipe = status.client.pipeline(transaction=False)
        for job_id in pending:
            pipe.hget(status.job_key(job_id), "state")
        pending[:] = [job_id for job_id, state in zip(pending, pipe.execute(), strict=True) if state != "succeeded"]
        return not pending

    return _drain(broker, threads, all_succeeded, jobs)


def _drain(broker: dramatiq.Broker, threads: int, finished, jobs: int, interval_s: float = 0.02) -> float:  # type: ignore[no-untyped-def]
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    redis_server = next((p for p in psutil.Process().children(recursive=True) if "redis" in p.name()), None)
    cpu_before, redis_before = time.process_time(), _cpu_s(redis_server)
    started = time.perf_counter()
    worker.start()
    wait_until(finished, interval_s=interval_s)
    elapsed = time.perf_counter() - started
    LAST_DRAIN_CPU_MS_PER_JOB[:] = [(time.process_time() - cpu_before) * 1000 / jobs,
                                    (_cpu_s(redis_server) - redis_before) * 1000 / jobs]
    worker.stop()
    broker.close()
    return jobs / elapsed


#: CPU ms per job of the last ``_drain``: [this process (workers and all), the Redis server (0 if not ours)].
LAST_DRAIN_CPU_MS_PER_JOB: list[float] = [0.0, 0.0]


def _cpu_s(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system


def bench_cpu_split(redis_url: str, jobs: int, threads: int, data_dir: Path) -> None:
    """(a2) Where a job's time goes, in-process: CPU per job of bare dramatiq, framequeue without its
    job-status middleware (the actor shell, messages and wake-ups) and framequeue whole. CPU, unlike
    jobs/s, barely moves when other work shares the machine."""
    runs = {"bare dramatiq": lambda: bare_dramatiq_jobs_per_s(redis_url, jobs, threads, "bench-split-bare")}
    settings = Settings(redis_url=redis_url, namespace="bench-split-fq", data_dir=data_dir)
    runs["framequeue without job status"] = lambda: framequeue_jobs_per_s(
        settings.model_copy(update={"namespace": "bench-split-shell"}), jobs, threads, status_middleware=False)
    runs["framequeue"] = lambda: framequeue_jobs_per_s(settings, jobs, threads)
    cells = []
    for label, run in runs.items():
        rate = run()
        worker_ms, redis_ms = LAST_DRAIN_CPU_MS_PER_JOB
        cells.append(f"{label} {worker_ms:.2f} + {redis_ms:.2f} ms ({rate:.0f} jobs/s)")
    print(f"(a2) CPU per job, one in-process worker of {threads} threads, {jobs} jobs drained, worker process + "
          f"Redis server: " + "; ".join(cells))


def bench_latency(redis_url: str, data_dir: Path) -> None:
    settings = Settings(redis_url=redis_url, namespace="bench-latency", data_dir=data_dir, model_profile="tiny")
    from pipelines import resolve_profile

    started = time.perf_counter()
    resolve_profile("tiny", data_dir / "models")
    print(f"(b) tiny profile ready in {time.perf_counter() - started:.1f} s (built on first use, then cached)")
    env = {**os.environ, "REDIS_URL": redis_url, "FRAMEQUEUE_NAMESPACE": settings.namespace,
           "FRAMEQUEUE_DATA_DIR": str(data_dir), "FRAMEQUEUE_MODEL_PROFILE": "tiny", "HF_HUB_OFFLINE": "1"}
    worker = subprocess.Popen([sys.executable, "-m", "workers.cli", "worker", "--processes", "1", "--threads", "1"],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = _PeakRss(worker.pid)
    peak.start()
    status = JobStatusStore(redis_client(redis_url, decode_responses=True), settings.namespace)
    broker = build_broker(settings)
    try:
        booting = time.perf_counter()
        # A worker's consumers register a heartbeat on their first fetch: then it is up.
        wait_until(lambda: status.client.zcard(f"{settings.namespace}:__heartbeats__") > 0, interval_s=0.05)
        print(f"    worker up in {time.perf_counter() - booting:.2f} s (process start, imports; no model loaded yet)")
        for label, seed in (("cold", 1), ("warm", 2)):
            spec = JobSpec(prompt="a lighthouse on a cliff at dusk", kind=JobKind.video, width=256, height=256,
                           num_frames=24, fps=12, seed=seed)
            submitted = time.perf_counter()
            submit_job(broker, status, spec)
            wait_until(lambda job_id=spec.id: status.state_of(job_id) in TERMINAL_STATES, interval_s=0.05)
            wall = time.perf_counter() - submitted
            record = status.get(spec.id)
            assert record is not None
            stages = "  ".join(f"{stage} {record.timings_s.get(stage, 0):.2f}" for stage in record.stages)
            print(f"    {label}: {record.state} in {wall:.2f} s (256x256, 24 frames) | per stage (s): {stages}")
    finally:
        worker.terminate()
        worker.wait(60)
        peak.stop()
    print(f"(c) worker peak RSS: {peak.peak_bytes / 2**20:.0f} MiB summed over the worker's processes")


class _PeakRss(threading.Thread):
    """Samples the summed RSS of a process tree every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_bytes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            try:
                tree = [self.root, *self.root.children(recursive=True)]
                self.peak_bytes = max(self.peak_bytes, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                continue

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def main() -> None:
    # dramatiq logs a warning for every message put back to wait: thousands here.
    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limiter-window-s", type=float, default=60.0, help="how long (d) measures accuracy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="framequeue-bench-") as tmp, private_redis_server(Path(tmp)) as url:
        data_dir = Path(tmp) / "data"
        print(f"redis-server {url} (private, started by the benchmark)")
        from scripts.bench_throughput import bench_throughput

        bench_throughput(url, data_dir, jobs=args.jobs, threads=args.threads, rounds=args.rounds)
        bench_cpu_split(url, args.jobs * 2, args.threads, data_dir)
        from scripts.bench_hops import bench_hops

        bench_hops(url, data_dir)
        from scripts.bench_registry import bench_registry

        bench_registry(url, data_dir)
        bench_latency(url, data_dir)
        from scripts.bench_remote import bench_remote

        bench_remote(url, data_dir, threads=args.threads, limiter_window_s=args.limiter_window_s)
        from scripts.bench_batches import bench_batches

        bench_batches(url, data_dir, threads=args.threads)
        from scripts.bench_retention import bench_retention

        bench_retention(data_dir, threads=args.threads)
        from scripts.bench_prompt_screen import bench_prompt_screen

        bench_prompt_screen()
        from scripts.bench_cache import bench_cache

        bench_cache(url, data_dir)
        from scripts.bench_batching import bench_batching

        bench_batching(url, data_dir)
        from scripts.bench_models import bench_models

        bench_models(url, data_dir)
        from scripts.bench_fair_share import bench_fair_share

        bench_fair_share(url, data_dir, threads=args.threads)
        from scripts.bench_progress import bench_progress

        bench_progress(url, data_dir)


if __name__ == "__main__":
    main()
