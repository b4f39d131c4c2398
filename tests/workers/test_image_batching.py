"""Batched image renders: concurrent requests of one shape share a model call, each job keeps its own.

The unit tests drive :class:`ImageBatcher` from real threads with a fake model that records each
call and paints each image with its seed, so "who got which image" and "how many calls" are read
from the records. Threads are released together by a barrier and batches close when full (the
window is far longer than any test), so the number of calls does not depend on timing. The last
tests use the real tiny text-to-image model, alone and through an in-process dramatiq worker.
"""

from __future__ import annotations

import ctypes
import io
import math
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import ImageOutput, Interrupted, InvalidInputError, TextToImage
from pipelines.errors import ShouldStop, stop_if_asked
from pipelines.progress import StepProgress
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.servers import stage_worker, wait_for
from tests.workers.test_job_flow import wait_until_finished
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.submit import submit_job
from workers.runtime import Runtime
from workers.stages import STAGE_FUNCTIONS
from workers.stages.batching import ImageBatcher, RenderRequest

#: Long enough that a batch in these tests closes because it is full, never because time ran out.
NEVER_MS = 60_000.0


@dataclass(frozen=True)
class Call:
    prompts: list[str]
    seeds: list[int]
    shape: tuple[int, int, int]


class FakeModel:
    """Records each call; image i is a 1x1 grey of ``seeds[i] % 256``; a prompt "bad" fails the call."""

    def __init__(self, steps_hook: Callable[[int], object] = lambda step: None) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.steps_hook = steps_hook

    def __call__(self, prompts: list[str], seeds: list[int], width: int, height: int, steps: int,
                 negative_prompt: str | None = None, guidance_scale: float = 0.0,
                 should_stop: ShouldStop | None = None, progress: StepProgress | None = None) -> ImageOutput:
        with self.lock:
            self.calls.append(Call(list(prompts), list(seeds), (width, height, steps)))
        if "bad" in prompts:
            raise InvalidInputError("a bad prompt")
        latents = torch.tensor(seeds, dtype=torch.float32).reshape(-1, 1, 1, 1)
        for step in range(1, steps + 1):
            self.steps_hook(step)
            if progress is not None:
                progress(step, steps, latents)
            stop_if_asked(should_stop, f"step {step} of {steps}")
        return ImageOutput(images=[Image.new("L", (1, 1), seed % 256) for seed in seeds])


def seed_of(image: Image.Image) -> int:
    return int(image.getpixel((0, 0)))  # type: ignore[arg-type]


def request(seed: int, prompt: str = "a cat", size: int = 64, **fields: Any) -> RenderRequest:
    return RenderRequest(prompt, seed, size, size, 2, **fields)


def render_together(batcher: ImageBatcher, requests: list[RenderRequest]) -> list[Image.Image | BaseException]:
    """Each request rendered from a thread of its own, all released at once; an image or what it raised."""
    results: list[Image.Image | BaseException] = [RuntimeError("not run")] * len(requests)
    barrier = threading.Barrier(len(requests))

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = batcher.render(requests[index])
        except BaseException as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("threads", [4, 8, 12])
def test_concurrent_requests_share_one_call_per_four_and_each_gets_the_image_of_its_seed(threads: int) -> None:
    model = FakeModel()
    batcher = ImageBatcher(model, max_batch=4, window_ms=NEVER_MS)

    images = render_together(batcher, [request(seed) for seed in range(100, 100 + threads)])

    assert len(model.calls) == math.ceil(threads / 4)
    assert all(len(call.seeds) == 4 for call in model.calls)
    assert [seed_of(image) for image in images] == list(range(100, 100 + threads))  # type: ignore[arg-type]


def test_with_batching_off_each_request_is_its_own_call() -> None:
    model = FakeModel()
    images = render_together(ImageBatcher(model, max_batch=1), [request(seed) for seed in range(4)])

    assert sorted(call.seeds for call in model.calls) == [[0], [1], [2], [3]]
    assert [seed_of(image) for image in images] == [0, 1, 2, 3]  # type: ignore[arg-type]


def test_requests_of_different_shapes_never_share_a_call() -> None:
    model = FakeModel()
    batcher = ImageBatcher(model, max_batch=2, window_ms=NEVER_MS)
    requests = [request(1, size=64), request(2, size=128), request(3, size=64), request(4, size=128),
                request(5, size=64, negative_prompt="blur"), request(6, size=64, negative_prompt="blur")]

    images = render_together(batcher, requests)

    assert sorted((call.shape, sorted(call.seeds)) for call in model.calls) == [
        ((64, 64, 2), [1, 3]), ((64, 64, 2), [5, 6]), ((128, 128, 2), [2, 4])]
    assert [seed_of(image) for image in images] == [1, 2, 3, 4, 5, 6]  # type: ignore[arg-type]


def test_a_failing_batch_falls_back_to_single_calls_and_only_the_bad_request_fails() -> None:
    model = FakeModel()
    batcher = ImageBatcher(model, max_batch=4, window_ms=NEVER_MS)

    results = render_together(batcher, [request(1), request(2, prompt="bad"), request(3), request(4)])

    assert isinstance(results[1], InvalidInputError)
    assert [seed_of(results[index]) for index in (0, 2, 3)] == [1, 3, 4]  # type: ignore[arg-type]
    assert len(model.calls[0].seeds) == 4  # the batch, then each request alone
    assert sorted(call.seeds for call in model.calls[1:]) == [[1], [2], [3], [4]]


def test_a_lone_request_renders_alone_once_the_window_passes() -> None:
    model = FakeModel()
    batcher = ImageBatcher(model, max_batch=4, window_ms=20)

    first = render_together(batcher, [request(7)])  # a thread of its own: one that waited for ever would fail
    second = render_together(batcher, [request(8)])  # the first batch closed: the next opens its own

    assert [seed_of(first[0]), seed_of(second[0])] == [7, 8]  # type: ignore[arg-type]

    assert [call.seeds for call in model.calls] == [[7], [8]]


def test_while_the_model_is_busy_the_next_batch_keeps_gathering_past_its_window() -> None:
    gate = threading.Event()
    model = FakeModel(steps_hook=lambda step: gate.wait(60))
    batcher = ImageBatcher(model, max_batch=4, window_ms=0)
    first = threading.Thread(target=batcher.render, args=(request(1),), daemon=True)
    first.start()
    wait_for(lambda: model.calls, 60, "the first render to hold the model")
    later: list[list[Image.Image | BaseException]] = []
    threads = [threading.Thread(target=lambda seed=seed: later.append(render_together(batcher, [request(seed)])),
                                daemon=True) for seed in (2, 3, 4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(batcher._open[request(2).shape].requests) == 3, 60, "three requests to gather")

    gate.set()
    for thread in (first, *threads):
        thread.join(60)

    assert [sorted(call.seeds) for call in model.calls] == [[1], [2, 3, 4]]
    assert sorted(seed_of(result[0]) for result in later) == [2, 3, 4]  # type: ignore[arg-type]


def test_a_job_cancelled_mid_batch_stops_alone_and_the_others_get_their_images() -> None:
    cancelled: set[int] = set()
    model = FakeModel(steps_hook=lambda step: cancelled.add(2) if step == 1 else None)
    batcher = ImageBatcher(model, max_batch=3, window_ms=NEVER_MS)
    requests = [request(seed, should_stop=lambda seed=seed: seed in cancelled) for seed in (1, 2, 3)]

    results = render_together(batcher, requests)

    assert isinstance(results[1], Interrupted)
    assert [seed_of(results[0]), seed_of(results[2])] == [1, 3]  # type: ignore[arg-type]
    assert len(model.calls) == 1  # the batch ran to its end, and no one rendered again


def test_a_batch_whose_jobs_are_all_cancelled_stops_at_the_next_step() -> None:
    steps_run: list[int] = []
    model = FakeModel(steps_hook=steps_run.append)
    batcher = ImageBatcher(model, max_batch=2, window_ms=NEVER_MS)

    results = render_together(batcher, [request(seed, should_stop=lambda: True) for seed in (1, 2)])

    assert all(isinstance(result, Interrupted) for result in results)
    assert steps_run == [1]
    assert len(model.calls) == 1


def test_every_job_in_a_batch_is_told_each_step_with_its_own_latents() -> None:
    seen: dict[int, list[tuple[int, int, float]]] = {1: [], 2: []}

    def hook(seed: int) -> StepProgress:
        return lambda done, total, latents: seen[seed].append((done, total, float(latents[0, 0, 0, 0])))  # type: ignore[index]

    batcher = ImageBatcher(FakeModel(), max_batch=2, window_ms=NEVER_MS)
    render_together(batcher, [request(seed, progress=hook(seed)) for seed in (1, 2)])

    assert seen == {1: [(1, 2, 1.0), (2, 2, 1.0)], 2: [(1, 2, 2.0), (2, 2, 2.0)]}


class Stopped(BaseException):
    """Stands for dramatiq's time limit, which interrupts the thread that runs the batch."""


def test_when_the_thread_running_the_batch_is_interrupted_the_others_render_alone() -> None:
    model = FakeModel()
    calls_before_raise = {"count": 0}

    def interrupted_once(*args: Any, **kwargs: Any) -> ImageOutput:
        calls_before_raise["count"] += 1
        if calls_before_raise["count"] == 1:
            raise Stopped()
        return model(*args, **kwargs)

    results = render_together(ImageBatcher(interrupted_once, max_batch=3, window_ms=NEVER_MS),
                              [request(seed) for seed in (1, 2, 3)])

    assert sum(isinstance(result, Stopped) for result in results) == 1
    assert sorted(seed_of(result) for result in results if isinstance(result, Image.Image)) in ([1, 2], [1, 3], [2, 3])
    assert all(len(call.seeds) == 1 for call in model.calls)


def test_a_time_limit_reaches_a_thread_waiting_on_its_batch() -> None:
    gate = threading.Event()
    model = FakeModel(steps_hook=lambda step: gate.wait(60))
    batcher = ImageBatcher(model, max_batch=2, window_ms=NEVER_MS)
    results: dict[int, Image.Image | BaseException] = {}

    def run(seed: int) -> None:
        try:
            results[seed] = batcher.render(request(seed))
        except BaseException as error:
            results[seed] = error

    leader = threading.Thread(target=run, args=(1,), daemon=True)
    leader.start()
    wait_for(lambda: request(1).shape in batcher._open, 60, "the first request to open a batch")
    follower = threading.Thread(target=run, args=(2,), daemon=True)
    follower.start()
    wait_for(lambda: model.calls, 60, "the batch to reach the model")

    # What dramatiq's time limit does to a worker thread: an exception raised between its instructions.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(follower.ident or 0), ctypes.py_object(Stopped))
    follower.join(30)
    stopped_while_the_batch_ran = not follower.is_alive()
    gate.set()
    leader.join(60)

    assert stopped_while_the_batch_ran and isinstance(results[2], Stopped)
    assert seed_of(results[1]) == 1  # type: ignore[arg-type]


# The real tiny model.

#: Batched and single renders agree to this many levels of 255 per pixel. On CPU the float32
#: kernels may sum in another order for a batch: at 64x64 the images came out equal, at 128x128
#: some pixels one level apart.
PIXEL_TOLERANCE = 1


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def tiny_text_to_image(tiny_profile) -> TextToImage:  # type: ignore[no-untyped-def]
    return TextToImage.from_pretrained(tiny_profile.image_model, "cpu")


class CountingTextToImage:
    """The real model, noting how many prompts each call rendered."""

    def __init__(self, model: Callable[..., ImageOutput]) -> None:
        self.model = model
        self.batch_sizes: list[int] = []

    def __call__(self, prompts: list[str], *args: Any, **kwargs: Any) -> ImageOutput:
        self.batch_sizes.append(len(prompts))
        return self.model(prompts, *args, **kwargs)


@pytest.mark.parametrize("size", [64, 128])
def test_the_tiny_models_batched_images_match_its_single_call_images(
    tiny_text_to_image: TextToImage, size: int
) -> None:
    counting = CountingTextToImage(tiny_text_to_image)
    batcher = ImageBatcher(counting, max_batch=4, window_ms=NEVER_MS)
    requests = [RenderRequest(f"a lighthouse, take {seed}", seed, size, size, 2) for seed in (5, 6, 7, 8)]

    batched = render_together(batcher, requests)
    alone = [batcher.render_alone(one) for one in requests]

    assert counting.batch_sizes == [4, 1, 1, 1, 1]
    for together, single in zip(batched, alone, strict=True):
        assert np.abs(pixels(together) - pixels(single)).max() <= PIXEL_TOLERANCE  # type: ignore[arg-type]
    assert np.abs(pixels(alone[0]) - pixels(alone[1])).max() > PIXEL_TOLERANCE  # seeds do make other images


Worked = tuple[FramequeueBroker, Runtime, CountingTextToImage]


@pytest.fixture(scope="module")
def batching_worker(settings: Settings, tiny_profile) -> Iterator[Worked]:  # type: ignore[no-untyped-def]
    """An in-process dramatiq worker on the real Redis broker, 4 threads, batching up to 4 image renders."""
    own = settings.model_copy(update={"namespace": f"batching-{uuid.uuid4().hex[:8]}", "image_batch_max": 4,
                                      "image_batch_window_ms": 5_000.0})
    broker, runtime = build_broker(own), Runtime(own)
    batcher = runtime.image_batcher(runtime.catalog.defaults["image"])
    assert (batcher.max_batch, batcher.window_ms) == (4, 5_000.0)
    counting = CountingTextToImage(batcher.model)
    batcher.model = counting
    with stage_worker(broker, runtime, STAGE_FUNCTIONS):
        yield broker, runtime, counting


def test_eight_image_jobs_through_a_batching_worker_all_succeed_with_their_own_images(
    batching_worker: Worked,
) -> None:
    broker, runtime, counting = batching_worker
    specs = [JobSpec(prompt=f"a red kite over the sea, take {seed}", kind=JobKind.image, width=64, height=64,
                     steps=2, seed=seed, enhance_prompt=False) for seed in range(20, 28)]
    for spec in specs:
        submit_job(broker, runtime.status, spec)

    records = [wait_until_finished(runtime.status, spec.id, timeout_s=300) for spec in specs]

    assert [record.state for record in records] == ["succeeded"] * len(specs), [r.error for r in records]
    assert sum(counting.batch_sizes) == len(specs)  # each job's image rendered once
    assert max(counting.batch_sizes) > 1  # and some shared a call
    model = runtime.model(runtime.catalog.defaults["image"])
    for spec, record in zip(specs, records, strict=True):
        stored = Image.open(io.BytesIO(runtime.store.get_bytes(record.artifacts["image"]["key"])))
        single = model([spec.prompt], seeds=[spec.seed], width=64, height=64, steps=2).images[0]
        assert np.abs(pixels(stored) - pixels(single)).max() <= PIXEL_TOLERANCE
