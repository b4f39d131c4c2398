"""(n) Batched model calls: image jobs/s with the image stage batching 1, 4 and 8 renders per call.

An in-process worker (8 threads, the real stages, no stage cache, local storage) runs image jobs of
the tiny profile on the CPU (128x128, 4 steps, no prompt rewrite), all submitted at once, with
``image_batch_max`` 1, 4 and 8 in turn (window 50 ms); each setting gets a runtime of its own and a
warm-up round that loads the models. Two rates per setting: whole jobs/s (submission of the first to
the end of the last) and image renders/s of the model alone (from the first model call's start to
the last one's end: the image stage's share, without the small stages around it).

(n2), the img2img frames' keyframes batched the same way, follows from scripts/bench_keyframe_batching.py.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines import ImageOutput, TextToImage, resolve_profile
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from scripts.bench import alternating_medians, speedup, timed_jobs_s
from scripts.bench_keyframe_batching import bench_keyframe_batching
from workers.broker import build_broker
from workers.runtime import Runtime

BATCH_SIZES = (1, 4, 8)
JOBS = 32
THREADS = 8
SIDE_PX = 128
STEPS = 4
ROUNDS = 3


class TimedModel:
    """The real model, noting each call's start, end and batch size."""

    def __init__(self, model: Callable[..., ImageOutput]) -> None:
        self.model = model
        self.calls: list[tuple[float, float, int]] = []
        self.lock = threading.Lock()

    def __call__(self, prompts: list[str], *args: Any, **kwargs: Any) -> ImageOutput:
        started = time.perf_counter()
        output = self.model(prompts, *args, **kwargs)
        with self.lock:
            self.calls.append((started, time.perf_counter(), len(prompts)))
        return output


def spec_of(seed: int) -> JobSpec:
    return JobSpec(prompt=f"a harbour at dawn, take {seed}", kind=JobKind.image, width=SIDE_PX, height=SIDE_PX,
                   steps=STEPS, seed=seed, enhance_prompt=False)


def run_round(redis_url: str, data_dir: Path, batch_max: int) -> tuple[float, float, float]:
    """Jobs/s, model renders/s and the mean batch size of one timed round at ``batch_max``."""
    settings = Settings(redis_url=redis_url, namespace=f"bench-batching-{uuid.uuid4().hex[:6]}", data_dir=data_dir,
                        model_profile="tiny", device="cpu", image_batch_max=batch_max, image_batch_window_ms=50.0)
    broker, runtime = build_broker(settings), Runtime(settings)
    batcher = runtime.image_batcher(runtime.catalog.defaults["image"])
    timed = TimedModel(batcher.model)
    batcher.model = timed
    elapsed_s = timed_jobs_s(broker, runtime, spec_of, jobs=JOBS, threads=THREADS, on_warm=timed.calls.clear)
    model_s = max(end for _, end, _ in timed.calls) - min(start for start, _, _ in timed.calls)
    return JOBS / elapsed_s, JOBS / model_s, statistics.mean(size for _, _, size in timed.calls)


def model_alone_speedup(data_dir: Path, batch: int) -> float:
    """How much faster the tiny model renders ``batch`` images in one call than one by one (median of 3)."""
    profile = resolve_profile("tiny", data_dir / "models")
    model = TextToImage.from_pretrained(profile.image_model, "cpu")
    prompts, seeds = [f"a harbour at dawn, take {seed}" for seed in range(batch)], list(range(batch))

    def one_by_one() -> None:
        for prompt, seed in zip(prompts, seeds, strict=True):
            model([prompt], seeds=[seed], width=SIDE_PX, height=SIDE_PX, steps=STEPS)

    return speedup(one_by_one, lambda: model(prompts, seeds=seeds, width=SIDE_PX, height=SIDE_PX, steps=STEPS),
                   ROUNDS)


def bench_batching(redis_url: str, data_dir: Path) -> None:
    results = alternating_medians(lambda batch_max: run_round(redis_url, data_dir, batch_max), BATCH_SIZES, ROUNDS)
    jobs_1, renders_1, _ = results[1]
    print(f"(n) batched image renders: {JOBS} tiny-profile image jobs ({SIDE_PX}x{SIDE_PX}, {STEPS} steps, CPU), "
          f"one worker of {THREADS} threads, window 50 ms, medians of {ROUNDS} alternating rounds")
    for batch_max, (jobs_s, renders_s, mean_batch) in results.items():
        print(f"    image_batch_max={batch_max}: {jobs_s:.1f} jobs/s ({jobs_s / jobs_1:.2f}x batch 1), "
              f"model {renders_s:.1f} renders/s ({renders_s / renders_1:.2f}x), mean batch {mean_batch:.1f}")
    speedups = ", ".join(f"{batch}: {model_alone_speedup(data_dir, batch):.2f}x" for batch in BATCH_SIZES[1:])
    print(f"    the model alone, one call of N against N calls of one: {speedups}")
    bench_keyframe_batching(redis_url, data_dir)
