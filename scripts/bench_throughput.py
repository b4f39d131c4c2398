"""(a) Throughput of six no-op stages: framequeue against bare dramatiq, in worker processes.

Each round runs, on the same Redis and in the same run, a chain of six plain dramatiq actors (a
queue each) and framequeue's broker, job-status middleware and stage actors over no-op stage
functions, with the same worker processes of the same threads. For each it measures:

- jobs/s with 1 and with 2 worker processes, drain-only (every job submitted before the workers
  are let go) and with the producer submitting while the workers run;
- submissions/s of one producer: bare ``actor.send``, framequeue's ``submit_job`` (one job per
  round trip: record and first message in one script), and ``accept_jobs`` of 100 jobs at a time
  (the records and messages of a chunk pipelined in one round trip).

A worker process imports, declares its actors and says it is ready, then waits for the go; the
clock starts at the go (drain-only) or the first submission (concurrent) and stops when the last
job's last stage has run, counted in Redis by both pipelines alike. Ratios are framequeue over bare
dramatiq in the same round; the medians of the rounds are printed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from scripts.bench import DEPTH, NothingFound, bare_actors, done_key, no_op_stages, wait_until
from workers.broker import build_broker
from workers.jobs.submit import accept_jobs, submit_job
from workers.redis_connection import redis_client
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Jobs submitted per ``accept_jobs`` call in the pipelined submission measure.
CHUNK = 100


def _pipeline(kind: str, url: str, namespace: str, data_dir: Path) -> tuple[dramatiq.Broker, Callable[[int], object],
                                                                          Callable[[list[int]], object]]:
    """The broker of ``kind`` ("bare" or "framequeue") with its actors declared, and its two ways to submit
    (one job; a list of jobs at once)."""
    client = redis_client(url)
    if kind == "bare":
        broker = RedisBroker(client=client, namespace=namespace)
        first = bare_actors(broker, client, namespace)[0]
        return broker, lambda number: first.send(str(number)), lambda numbers: [first.send(str(n)) for n in numbers]
    settings = Settings(redis_url=url, namespace=namespace, data_dir=data_dir)
    fq_broker = build_broker(settings)
    runtime = Runtime(settings)
    declare_stage_actors(fq_broker, no_op_stages(lambda: client.incr(done_key(namespace))), lambda: runtime,
                         catalog=runtime.catalog)

    def spec(number: int) -> JobSpec:
        return JobSpec(prompt=f"benchmark job {number}", kind=JobKind.video, enhance_prompt=False, width=64, height=64)

    def submit_one(number: int) -> None:
        # (a) times the queue; (l) times the prompt screen.
        submit_job(fq_broker, runtime.status, spec(number), screen=NothingFound(), catalog=runtime.catalog)

    def submit_many(numbers: list[int]) -> None:
        accept_jobs(fq_broker, runtime.status, [spec(n) for n in numbers], screen=NothingFound(),
                    catalog=runtime.catalog)

    return fq_broker, submit_one, submit_many


def run_worker(kind: str, url: str, namespace: str, data_dir: Path, threads: int) -> None:
    """A worker process of ``kind``: ready, then waiting for the go, then working until SIGTERM."""
    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    broker, _, _ = _pipeline(kind, url, namespace, data_dir)
    control = redis_client(url)
    control.rpush(f"{namespace}:bench-ready", 1)
    control.blpop([f"{namespace}:bench-go"])
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    worker.start()
    stopping.wait()
    worker.stop()


def jobs_per_s(kind: str, url: str, namespace: str, data_dir: Path, *, jobs: int, processes: int, threads: int,
               concurrent: bool) -> tuple[float, float]:
    """(jobs/s through ``processes`` workers, submissions/s of the producer while it submitted)."""
    _, submit_one, _ = _pipeline(kind, url, namespace, data_dir)
    client = redis_client(url)
    command = [sys.executable, "-m", "scripts.bench_throughput", "worker", kind, url, namespace, str(data_dir),
               str(threads)]
    workers = [subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.DEVNULL) for _ in range(processes)]
    try:
        wait_until(lambda: client.llen(f"{namespace}:bench-ready") >= processes, timeout_s=120, interval_s=0.05)
        if concurrent:
            client.rpush(f"{namespace}:bench-go", *[1] * processes)
        started = time.perf_counter()
        for number in range(jobs):
            submit_one(number)
        submitted = time.perf_counter() - started
        if not concurrent:
            started = time.perf_counter()
            client.rpush(f"{namespace}:bench-go", *[1] * processes)
        wait_until(lambda: int(client.get(done_key(namespace)) or 0) >= jobs, interval_s=0.01)
        return jobs / (time.perf_counter() - started), jobs / submitted
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)


def submissions_per_s(kind: str, url: str, namespace: str, data_dir: Path, jobs: int) -> float:
    """One producer, no workers: jobs accepted per second, ``CHUNK`` at a time."""
    _, _, submit_many = _pipeline(kind, url, namespace, data_dir)
    started = time.perf_counter()
    for start in range(0, jobs, CHUNK):
        submit_many(list(range(start, min(jobs, start + CHUNK))))
    return jobs / (time.perf_counter() - started)


def _ratio_line(label: str, bare: list[float], ours: list[float], unit: str) -> str:
    ratios = [mine / theirs for mine, theirs in zip(ours, bare, strict=True)]
    return (f"    {label}: bare dramatiq {statistics.median(bare):7.1f} {unit}, framequeue "
            f"{statistics.median(ours):7.1f} {unit}, ratio {statistics.median(ratios):.2f} "
            f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")


def bench_throughput(url: str, data_dir: Path, *, jobs: int = 500, threads: int = 8, rounds: int = 3) -> None:
    print(f"(a) no-op pipeline, {DEPTH} stages, {jobs} jobs, worker processes of {threads} threads each, "
          f"medians of {rounds} alternating rounds")
    settings = [(processes, concurrent) for processes in (1, 2) for concurrent in (False, True)]
    results: dict[tuple[str, int, bool], list[float]] = {}
    producer: dict[str, list[float]] = {"bare": [], "framequeue": []}
    pipelined: dict[str, list[float]] = {"bare": [], "framequeue": []}
    for round_number in range(rounds):
        for processes, concurrent in settings:
            for kind in ("bare", "framequeue"):
                namespace = f"bench-a-{kind}-{round_number}-{processes}-{int(concurrent)}"
                rate, submitted = jobs_per_s(kind, url, namespace, data_dir, jobs=jobs, processes=processes,
                                             threads=threads, concurrent=concurrent)
                results.setdefault((kind, processes, concurrent), []).append(rate)
                if not concurrent and processes == 1:
                    producer[kind].append(submitted)
        for kind in ("bare", "framequeue"):
            pipelined[kind].append(submissions_per_s(kind, url, f"bench-a-submit-{kind}-{round_number}", data_dir,
                                                     jobs * 4))
    for processes, concurrent in settings:
        label = f"jobs/s, {processes} process{'es' if processes > 1 else ''}, " + (
            "producer concurrent" if concurrent else "drain-only")
        print(_ratio_line(label, results[("bare", processes, concurrent)],
                          results[("framequeue", processes, concurrent)], "jobs/s"))
    print(_ratio_line("submissions/s, one producer, one at a time (bare: actor.send; framequeue: submit_job)",
                      producer["bare"], producer["framequeue"], "/s"))
    print(_ratio_line(f"submissions/s, one producer, {CHUNK} at a time (bare: {CHUNK} sends; framequeue: "
                      "accept_jobs, pipelined)", pipelined["bare"], pipelined["framequeue"], "/s"))


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        kind, url, namespace, data_dir, threads = sys.argv[2:7]
        run_worker(kind, url, namespace, Path(data_dir), int(threads))
        return
    import tempfile

    from workers.embedded_redis import private_redis_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="framequeue-bench-") as tmp, private_redis_server(Path(tmp)) as url:
        bench_throughput(url, Path(tmp) / "data", jobs=args.jobs, threads=args.threads, rounds=args.rounds)


if __name__ == "__main__":
    main()
