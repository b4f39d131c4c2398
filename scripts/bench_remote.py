"""The remote-provider part of `make bench` (called by scripts/bench.py).

(d) The rate limiter: cost of one check (one Redis round trip; PING is the
    anchor) and how many requests it lets through over a window, against the
    configured rate.
(e) Image jobs against the provider simulator with 1, 2 and 4 keys, each key
    with its own quota: throughput should grow with the keys.
(f) Cost of the key-rotation and rate-limit middleware on no-op stages,
    against the same pipeline without them, in the same run.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

from pipelines.remote import KeyConfig, ProviderSimulator
from queue_config.jobs import JobKind
from queue_config.settings import Settings
from scripts.bench import framequeue_jobs_per_s, no_op_stages
from workers.limits import RedisLimiter
from workers.redis_connection import redis_client
from workers.stages import STAGE_FUNCTIONS

SIM_KEYS = [f"bench-key-{n}" for n in range(4)]
#: Each simulated key's quota, and what the pool is told it is.
KEY_REQUESTS_PER_MINUTE = 240
#: How many image jobs per key (e) runs: about ten seconds of each key's quota.
JOBS_PER_KEY = 40


def write_config(path: Path, base_url: str, *, keys_env: str, model_limits: bool) -> Path:
    limits = """
[[limits]]
provider = "sim"
model = "sim-image"
requests_per_minute = 1000000
concurrency = 10000
""" if model_limits else ""
    routes = "".join(f'\n[stages.{stage}]\nprovider = "sim"\nmodel = "sim-image"\n' for stage in ("image",))
    path.write_text(f"""
[providers.sim]
kind = "openai"
base_url = "{base_url}"
keys_env = "{keys_env}"
key_strategy = "least_used"
key_requests_per_minute = {KEY_REQUESTS_PER_MINUTE}
{limits}{routes}""")
    return path


def bench_limiter(redis_url: str, window_s: float) -> None:
    client = redis_client(redis_url)
    limiter = RedisLimiter(client, "bench-limiter")
    calls = 3000
    started = time.perf_counter()
    for _ in range(calls):
        client.ping()
    ping_us = (time.perf_counter() - started) / calls * 1e6
    started = time.perf_counter()
    for _ in range(calls):
        limiter.rate_wait_ms("cost", requests_per_minute=1e9)
    check_us = (time.perf_counter() - started) / calls * 1e6
    print(f"(d) limiter: {check_us:.0f} µs per check, one round trip (PING {ping_us:.0f} µs: "
          f"{check_us / ping_us:.2f}x)")

    rate, burst, allowed = 300, 1, [0]
    deadline = time.monotonic() + window_s

    def hammer() -> None:
        while time.monotonic() < deadline:
            wait_ms = limiter.rate_wait_ms("accuracy", requests_per_minute=rate, burst=burst)
            if wait_ms:
                time.sleep(min(wait_ms / 1000, max(0.0, deadline - time.monotonic())))
            else:
                allowed[0] += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    most = rate * window_s / 60 + burst + 1
    print(f"    accuracy: {allowed[0]} requests let through in {window_s:.0f} s at {rate}/min by 4 threads "
          f"(the limit allows {most:.0f}: {allowed[0] / most:.3f} of it)")


def bench_keys(redis_url: str, data_dir: Path, threads: int, simulator: ProviderSimulator) -> None:
    print(f"(e) image jobs via the simulator (50 ms latency), each key {KEY_REQUESTS_PER_MINUTE}/min, "
          f"{threads} threads")
    functions = {**no_op_stages(), "prompt_enhance": STAGE_FUNCTIONS["prompt_enhance"],
                 "image": STAGE_FUNCTIONS["image"]}
    for key_count in (1, 2, 4):
        os.environ["FRAMEQUEUE_KEYS_BENCH"] = ",".join(SIM_KEYS[:key_count])
        config = write_config(data_dir / f"keys-{key_count}.toml", simulator.base_url,
                              keys_env="FRAMEQUEUE_KEYS_BENCH", model_limits=False)
        settings = Settings(redis_url=redis_url, namespace=f"bench-keys-{key_count}", data_dir=data_dir,
                            remote_config=config)
        jobs = JOBS_PER_KEY * key_count
        rate = framequeue_jobs_per_s(settings, jobs, threads, functions=functions, kind=JobKind.image,
                                     remote_middleware=True)
        print(f"    {key_count} key(s): {rate:6.2f} jobs/s over {jobs} jobs "
              f"(quota allows {key_count * KEY_REQUESTS_PER_MINUTE / 60:.0f}/s)")


def bench_middleware_cost(redis_url: str, data_dir: Path, threads: int, simulator: ProviderSimulator) -> None:
    os.environ["FRAMEQUEUE_KEYS_BENCH"] = ",".join(SIM_KEYS)
    config = write_config(data_dir / "cost.toml", simulator.base_url, keys_env="FRAMEQUEUE_KEYS_BENCH",
                          model_limits=True)
    jobs, ratios = 300, []
    for round_number in range(3):
        plain = Settings(redis_url=redis_url, namespace=f"bench-plain-{round_number}", data_dir=data_dir)
        gated = plain.model_copy(update={"namespace": f"bench-gated-{round_number}", "remote_config": config})
        without = framequeue_jobs_per_s(plain, jobs, threads)
        with_gates = framequeue_jobs_per_s(gated, jobs, threads, remote_middleware=True)
        ratios.append(with_gates / without)
        print(f"    round {round_number + 1}: without {without:6.1f} jobs/s, with {with_gates:6.1f} jobs/s")
    print(f"(f) key-rotation + rate-limit middleware on a no-op `image` stage (1 of 6 stages gated): "
          f"median ratio with/without {statistics.median(ratios):.2f}")


def bench_remote(redis_url: str, data_dir: Path, *, threads: int, limiter_window_s: float) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    bench_limiter(redis_url, limiter_window_s)
    keys = {key: KeyConfig(requests_per_minute=KEY_REQUESTS_PER_MINUTE) for key in SIM_KEYS}
    with ProviderSimulator(keys, latency_ms=50) as simulator:
        bench_keys(redis_url, data_dir, threads, simulator)
        bench_middleware_cost(redis_url, data_dir, threads, simulator)
