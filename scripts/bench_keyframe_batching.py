"""(n2) Batched img2img keyframes: video jobs/s with the frames stage batching 1, 4 and 8 keyframes per call.

Run from :func:`scripts.bench_batching.bench_batching`, after (n). An in-process worker (8 threads, the
real stages, no stage cache, local storage) runs video jobs of the tiny profile on the CPU whose frames
are made by img2img (128x128, 17 frames: keyframes 4 frames apart, 4 of them rendered per job; 4 steps,
of which the default strength 0.35 runs 1 per keyframe; no prompt rewrite), all submitted at once, with
``image_batch_max`` 1, 4 and 8 in turn (window 50 ms). The image stage's own batcher is held at 1 in
every setting, so that only the keyframes' batching changes. Each setting gets a runtime of its own and
a warm-up round that loads the models. Two rates per setting: whole jobs/s (submission of the first to
the end of the last) and keyframe renders/s of the model alone (from the first keyframe call's start to
the last one's end).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import PIL.Image

from pipelines import Img2ImgFrames, TextToImage, resolve_profile
from pipelines.errors import ShouldStop
from pipelines.frames_img2img import Keyframe
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from scripts.bench import alternating_medians, speedup, timed_jobs_s
from workers.broker import build_broker
from workers.runtime import Runtime
from workers.stages.keyframe_batching import KeyframeModel

BATCH_SIZES = (1, 4, 8)
JOBS = 32
THREADS = 8
SIDE_PX = 128
NUM_FRAMES = 17
STEPS = 4
ROUNDS = 3
WINDOW_MS = 50.0


class TimedKeyframes:
    """The real img2img model, noting each keyframe call's start, end and batch size."""

    def __init__(self, model: KeyframeModel) -> None:
        self.model = model
        self.calls: list[tuple[float, float, int]] = []
        self.lock = threading.Lock()

    def render_keyframe(self, keyframe: Keyframe) -> PIL.Image.Image:
        return self._timed(1, lambda: [self.model.render_keyframe(keyframe)])[0]

    def render_keyframes(self, keyframes: Sequence[Keyframe], should_stop: ShouldStop | None = None,
                         where: str = "") -> list[PIL.Image.Image]:
        return self._timed(len(keyframes), lambda: self.model.render_keyframes(keyframes, should_stop, where))

    def _timed(self, size: int, render: Callable[[], list[PIL.Image.Image]]) -> list[PIL.Image.Image]:
        started = time.perf_counter()
        images = render()
        with self.lock:
            self.calls.append((started, time.perf_counter(), size))
        return images


def spec_of(seed: int) -> JobSpec:
    return JobSpec(prompt=f"a lantern festival on a river, take {seed}", kind=JobKind.video, width=SIDE_PX,
                   height=SIDE_PX, num_frames=NUM_FRAMES, fps=8, steps=STEPS, seed=seed, enhance_prompt=False,
                   models={"frames": "img2img"})


def run_round(redis_url: str, data_dir: Path, batch_max: int) -> tuple[float, float, float]:
    """Jobs/s, keyframe renders/s and the mean keyframe batch of one timed round at ``batch_max``."""
    settings = Settings(redis_url=redis_url, namespace=f"bench-keyframes-{uuid.uuid4().hex[:6]}", data_dir=data_dir,
                        model_profile="tiny", device="cpu", image_batch_max=batch_max, image_batch_window_ms=WINDOW_MS)
    broker, runtime = build_broker(settings), Runtime(settings)
    runtime.image_batcher(runtime.catalog.defaults["image"]).max_batch = 1  # only the keyframes batch
    batcher = runtime.keyframe_batcher("img2img")
    timed = TimedKeyframes(batcher.model)
    batcher.model = timed
    elapsed_s = timed_jobs_s(broker, runtime, spec_of, jobs=JOBS, threads=THREADS, on_warm=timed.calls.clear)
    renders = sum(size for _, _, size in timed.calls)
    model_s = max(end for _, end, _ in timed.calls) - min(start for start, _, _ in timed.calls)
    return JOBS / elapsed_s, renders / model_s, renders / len(timed.calls)


def model_alone_speedup(data_dir: Path, batch: int) -> float:
    """How much faster the tiny img2img model renders ``batch`` keyframes in one call than one by one
    (median of 3)."""
    profile = resolve_profile("tiny", data_dir / "models")
    model = Img2ImgFrames.from_text_to_image(TextToImage.from_pretrained(profile.image_model, "cpu"))
    start = PIL.Image.new("RGB", (SIDE_PX, SIDE_PX), (90, 120, 150))
    keyframes = [Keyframe(start, f"a lantern festival on a river, take {seed}", seed, STEPS, 0.35)
                 for seed in range(batch)]

    def one_by_one() -> None:
        for keyframe in keyframes:
            model.render_keyframe(keyframe)

    return speedup(one_by_one, lambda: model.render_keyframes(keyframes), ROUNDS)


def bench_keyframe_batching(redis_url: str, data_dir: Path) -> None:
    results = alternating_medians(lambda batch_max: run_round(redis_url, data_dir, batch_max), BATCH_SIZES, ROUNDS)
    jobs_1, renders_1, _ = results[1]
    print(f"(n2) batched img2img keyframes: {JOBS} tiny-profile video jobs ({SIDE_PX}x{SIDE_PX}, {NUM_FRAMES} frames "
          f"from 4 rendered keyframes, {STEPS} steps at strength 0.35, CPU) with frames by img2img, one worker of "
          f"{THREADS} threads, window {WINDOW_MS:.0f} ms, the image stage at batch 1, medians of {ROUNDS} "
          f"alternating rounds")
    for batch_max, (jobs_s, renders_s, mean_batch) in results.items():
        print(f"    image_batch_max={batch_max}: {jobs_s:.1f} jobs/s ({jobs_s / jobs_1:.2f}x batch 1), "
              f"keyframes {renders_s:.1f} renders/s ({renders_s / renders_1:.2f}x), mean batch {mean_batch:.1f}")
    speedups = ", ".join(f"{batch}: {model_alone_speedup(data_dir, batch):.2f}x" for batch in BATCH_SIZES[1:])
    print(f"    the img2img model alone, one call of N keyframes against N calls of one: {speedups}")


if __name__ == "__main__":  # this section alone: python -m scripts.bench_keyframe_batching
    import logging
    import tempfile

    from workers.embedded_redis import private_redis_server

    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="framequeue-bench-") as tmp, private_redis_server(Path(tmp)) as url:
        bench_keyframe_batching(url, Path(tmp) / "data")
