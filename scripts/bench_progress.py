"""(q) Live progress's cost: each long stage's work with a real StageProgress, against ``progress=None``.

Issue #15 asks that live progress cost under 5% of a stage. Four pieces of work are timed, each
as its stage function runs it: the image stage's model call (tiny profile, warm), the frames
stage's camera backend and tiny image-to-video backend, and the video stage's H.264 encode (frames
counted to the hook as the stage counts them). Each is run with a fresh :class:`StageProgress`
against the benchmark's Redis (throttle and preview interval as deployed, its writes queued on a
:class:`StatusWriter` as a worker's are) and with ``progress=None``,
on the same inputs, in alternating rounds (the order flips each round; the camera and the encoder, which take tens of
ms, get five times the rounds); the overhead is the median over rounds of with / without - 1.
Beside it, the time spent inside the progress calls themselves (the hook is timed from outside),
which does not depend on run-to-run noise.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from pipelines import CameraMotionFrames, ImageToVideoFrames, TextToImage, encode_h264, resolve_profile
from pipelines.registry import default_device
from workers.jobs.progress import StageProgress, preview_key
from workers.jobs.record import JobStatusStore
from workers.jobs.status_writer import StatusWriter
from workers.redis_connection import redis_client
from workers.stages.generate import counted

SIDE_PX = 128
STEPS = 8
FRAMES = 16
FPS = 8
ROUNDS = 7
#: The camera and the encoder take tens of ms: they get this many times the rounds, for steadier medians.
CHEAP_ROUNDS_FACTOR = 5
SEED = 7
PROMPT = "a lighthouse on a cliff at dusk"
#: The issue's bound on what progress may add to a stage.
LIMIT = 0.05

#: One piece of stage work, given the hook it reports to (or None).
Work = Callable[[StageProgress | None], object]


class TimedProgress(StageProgress):
    """A StageProgress that adds up the seconds spent in its own calls."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.inside_s = 0.0
        self.calls = 0

    def __call__(self, done: int, total: int, latents: torch.Tensor | None = None) -> None:
        started = time.perf_counter()
        super().__call__(done, total, latents)
        self.inside_s += time.perf_counter() - started
        self.calls += 1


@dataclass(frozen=True)
class StageCost:
    """One piece of work's medians without and with progress, and what the progress calls took."""

    name: str
    without_s: float
    with_s: float
    #: Median over rounds of (with / without - 1), each round's pair run back to back.
    overhead: float
    inside_s: float
    calls: int
    writes: int
    previews: int


@dataclass(frozen=True)
class ProgressBench:
    device: str
    write_interval_s: float
    preview_interval_s: float
    costs: list[StageCost]


def measure(name: str, work: Work, status: JobStatusStore, writer: StatusWriter, stage: str,
            rounds: int) -> StageCost:
    """Median seconds of ``work`` without and with a fresh TimedProgress per run, alternating; the
    progress writes go through ``writer``, as a worker's do."""

    def timed(progress: StageProgress | None) -> float:
        started = time.perf_counter()
        work(progress)
        return time.perf_counter() - started

    def fresh() -> TimedProgress:
        return TimedProgress(status, uuid.uuid4().hex, stage, writer=writer)

    work(None)  # warm-up: first calls pay for allocations and lazy set-up
    work(fresh())
    without: list[float] = []
    with_: list[float] = []
    hooks: list[TimedProgress] = []
    for round_number in range(rounds):
        hook = fresh()
        if round_number % 2:
            with_.append(timed(hook))
            without.append(timed(None))
        else:
            without.append(timed(None))
            with_.append(timed(hook))
        hooks.append(hook)
    last = hooks[-1]
    writer.flush()
    events = status.client.xrange(status.events_key) or []
    writes = len([fields for _, fields in events
                  if fields and fields.get("job_id") == last.job_id and fields.get("event") == "progress"])
    previews = int(status.client.exists(preview_key(status, last.job_id)))
    ratios = [mine / theirs for mine, theirs in zip(with_, without, strict=True)]
    return StageCost(name, statistics.median(without), statistics.median(with_), statistics.median(ratios) - 1.0,
                     statistics.median(hook.inside_s for hook in hooks), last.calls, writes, previews)


def bench_progress(redis_url: str, data_dir: Path, *, rounds: int = ROUNDS, side_px: int = SIDE_PX,
                   steps: int = STEPS, frames: int = FRAMES) -> ProgressBench:
    device = default_device()
    profile = resolve_profile("tiny", data_dir / "models")
    status = JobStatusStore(redis_client(redis_url, decode_responses=True), f"bench-progress-{uuid.uuid4().hex[:6]}")
    writer = StatusWriter(status.client)  # a worker's job-status writer: the hook queues, its thread sends
    text_to_image = TextToImage.from_pretrained(profile.image_model, device)
    image_to_video = ImageToVideoFrames.from_pretrained(profile.video_model, device)
    camera = CameraMotionFrames()

    def render(progress: StageProgress | None) -> Image.Image:
        return text_to_image([PROMPT], seeds=[SEED], width=side_px, height=side_px, steps=steps,
                             progress=progress).images[0]

    key_image = render(None)
    clip = camera(key_image, num_frames=frames, fps=FPS, seed=SEED).frames

    writer.start()
    try:
        with tempfile.TemporaryDirectory(prefix="framequeue-bench-progress-") as tmp:
            out_path = Path(tmp) / "video.mp4"

            def encode(progress: StageProgress | None) -> object:
                return encode_h264(clip if progress is None else counted(clip, progress), width=side_px, height=side_px,
                                   fps=FPS, out_path=out_path)

            costs = [
                measure(f"image: model call, {steps} steps", render, status, writer, "image", rounds),
                measure(f"frames: camera, {frames} frames",
                        lambda progress: camera(key_image, num_frames=frames, fps=FPS, seed=SEED, progress=progress),
                        status, writer, "frames", rounds * CHEAP_ROUNDS_FACTOR),
                measure(f"frames: tiny SVD, {frames} frames, {steps} steps",
                        lambda progress: image_to_video(key_image, num_frames=frames, fps=FPS, seed=SEED, steps=steps,
                                                        progress=progress),
                        status, writer, "frames", rounds),
                measure(f"video: H.264 encode, {frames} frames", encode, status, writer, "video",
                        rounds * CHEAP_ROUNDS_FACTOR),
            ]
    finally:
        writer.stop()
    deployed = StageProgress(status, "", "")
    result = ProgressBench(device, deployed.min_interval_s, deployed.preview_interval_s, costs)
    print_report(result, rounds, side_px)
    return result


def print_report(result: ProgressBench, rounds: int, side_px: int) -> None:
    print(f"(q) progress overhead: each stage's work with a StageProgress on Redis (writes at most every "
          f"{result.write_interval_s} s, a preview at most every {result.preview_interval_s} s, queued on a status "
          f"writer's thread, as deployed) "
          f"against progress=None; tiny profile, {result.device}, {side_px}x{side_px}, "
          f"medians of {rounds} alternating rounds "
          f"({rounds * CHEAP_ROUNDS_FACTOR} for the camera and the encoder)")
    width = max(len(cost.name) for cost in result.costs)
    for cost in result.costs:
        verdict = "yes" if cost.overhead < LIMIT else "NO"
        print(f"    {cost.name:<{width}}  without {cost.without_s * 1000:8.1f} ms  with {cost.with_s * 1000:8.1f} ms  "
              f"overhead {cost.overhead * 100:+5.1f}% (under {LIMIT:.0%}: {verdict})  | inside the hook "
              f"{cost.inside_s * 1000:.2f} ms = {cost.inside_s / cost.without_s:.1%}, {cost.calls} calls, "
              f"{cost.writes} writes, {cost.previews} preview")
