"""Batched img2img keyframes: concurrent frames jobs of one shape share each keyframe's call, each keeps its own.

Each job is :class:`Img2ImgFrames` called from a thread of its own with the batcher's ``render`` as its
keyframe renderer, as the frames stage calls it; the threads are released together by a barrier and
batches close when full (the window is far longer than any test), so how many calls are made does not
depend on timing. The model is the real tiny img2img model (random weights, built offline), behind a
wrapper that notes the size of each call and can fail or cancel on cue. The last test runs video jobs
through an in-process dramatiq worker.

Keyframes are compared, not the frames between them: those are optical flow between keyframes, which
turns a one-level difference in a keyframe into a few levels (up to 15 seen at 128x128).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import PIL.Image
import pytest

from pipelines import Interrupted, InvalidInputError, TextToImage
from pipelines.errors import ShouldStop
from pipelines.frames_img2img import Img2ImgFrames, Keyframe
from pipelines.progress import StepProgress
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from tests.servers import stage_worker
from tests.workers.test_job_flow import wait_until_finished
from tests.workers.test_progress import progress_events
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.submit import submit_job
from workers.runtime import Runtime
from workers.stages import STAGE_FUNCTIONS
from workers.stages.codecs import frames_from_bytes, image_from_bytes
from workers.stages.keyframe_batching import KeyframeBatcher

#: Long enough that a batch in these tests closes because it is full, never because time ran out.
NEVER_MS = 60_000.0
#: Batched and single keyframes agree to this many levels of 255 per pixel, the image batching bound.
PIXEL_TOLERANCE = 1
#: A keyframe every 4 frames: 9 frames have keyframes 0, 4 and 8, two of them rendered; 5 frames one.
EVERY = 4
#: The schedule of each keyframe; at the default strength 0.35 two of its steps run.
STEPS = 6


class CountingKeyframes:
    """The real img2img model, noting how many keyframes each call rendered.

    A keyframe whose prompt holds "bad" fails any call it is in (a stand-in for a request the model
    refuses); ``on_batch`` is told each batch call's keyframes before they render.
    """

    def __init__(self, model: Img2ImgFrames, on_batch: Callable[[Sequence[Keyframe]], object] = lambda _: None) -> None:
        self.model = model
        self.on_batch = on_batch
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def render_keyframe(self, keyframe: Keyframe) -> PIL.Image.Image:
        self._note([keyframe])
        return self.model.render_keyframe(keyframe)

    def render_keyframes(self, keyframes: Sequence[Keyframe], should_stop: ShouldStop | None = None,
                         where: str = "") -> list[PIL.Image.Image]:
        self._note(keyframes)
        self.on_batch(keyframes)
        return self.model.render_keyframes(keyframes, should_stop, where)

    def _note(self, keyframes: Sequence[Keyframe]) -> None:
        with self.lock:
            self.sizes.append(len(keyframes))
        if any("bad" in keyframe.prompt for keyframe in keyframes):
            raise InvalidInputError("a bad prompt")


@dataclass(frozen=True)
class Clip:
    """One frames job: where it starts, its prompt and seed, and its own stop question and progress."""

    start: PIL.Image.Image
    prompt: str
    seed: int
    num_frames: int = 9
    should_stop: ShouldStop | None = None
    progress: StepProgress | None = None

    def frames(self, model: Img2ImgFrames, render_keyframe: Callable[[Keyframe], PIL.Image.Image] | None = None,
               ) -> np.ndarray:
        return model(self.start, self.prompt, num_frames=self.num_frames, fps=8, seed=self.seed, steps=STEPS,
                     keyframe_every=EVERY, should_stop=self.should_stop, progress=self.progress,
                     render_keyframe=render_keyframe).frames


def frames_together(model: Img2ImgFrames, batcher: KeyframeBatcher,
                    clips: list[Clip]) -> list[np.ndarray | BaseException]:
    """Each clip made from a thread of its own through ``batcher``, all released at once: its frames, or
    what it raised."""
    results: list[np.ndarray | BaseException] = [RuntimeError("not run")] * len(clips)
    barrier = threading.Barrier(len(clips))

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = clips[index].frames(model, batcher.render)
        except BaseException as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(len(clips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def keyframes_of(frames: np.ndarray | BaseException) -> np.ndarray:
    assert isinstance(frames, np.ndarray), frames
    return frames[::EVERY].astype(np.int16)


def close(first: np.ndarray | BaseException, second: np.ndarray | BaseException) -> bool:
    return bool(np.abs(keyframes_of(first) - keyframes_of(second)).max() <= PIXEL_TOLERANCE)


@pytest.fixture(scope="module")
def tiny_text_to_image(tiny_profile) -> TextToImage:  # type: ignore[no-untyped-def]
    return TextToImage.from_pretrained(tiny_profile.image_model, "cpu")


@pytest.fixture(scope="module")
def img2img(tiny_text_to_image: TextToImage) -> Img2ImgFrames:
    return Img2ImgFrames.from_text_to_image(tiny_text_to_image)


def start_images(text_to_image: TextToImage, size: int, count: int) -> list[PIL.Image.Image]:
    return text_to_image([f"a pond, take {seed}" for seed in range(count)], seeds=list(range(count)), width=size,
                         height=size, steps=2).images


@pytest.mark.parametrize("size", [64, 128])
def test_batched_keyframes_match_single_call_keyframes_and_each_job_is_told_its_progress(
    img2img: Img2ImgFrames, tiny_text_to_image: TextToImage, size: int
) -> None:
    counting = CountingKeyframes(img2img)
    told: dict[int, list[tuple[int, int]]] = {seed: [] for seed in (5, 6, 7, 8)}

    def progress_of(seed: int) -> StepProgress:
        return lambda done, total, latents: told[seed].append((done, total))

    clips = [Clip(start, f"koi in a pond, take {seed}", seed, progress=progress_of(seed))
             for seed, start in zip(told, start_images(tiny_text_to_image, size, 4), strict=True)]

    batched = frames_together(img2img, KeyframeBatcher(counting, max_batch=4, window_ms=NEVER_MS), clips)

    total = 3 + 9  # keyframes and frames, counted together
    assert told == {seed: [(done, total) for done in range(1, total + 1)] for seed in told}
    assert counting.sizes == [4, 4]  # keyframes 4 and 8 of the four jobs, one call each
    alone = [replace(clip, progress=None).frames(img2img) for clip in clips]
    assert all(close(together, single) for together, single in zip(batched, alone, strict=True))
    assert not close(alone[0], alone[1])  # the jobs' keyframes do differ


def test_each_job_keeps_its_own_seed_in_a_batch(img2img: Img2ImgFrames, tiny_text_to_image: TextToImage) -> None:
    start = start_images(tiny_text_to_image, 64, 1)[0]
    counting = CountingKeyframes(img2img)
    clips = [Clip(start, "koi in a pond", seed) for seed in (1, 1, 2)]  # the same image and prompt

    frames = frames_together(img2img, KeyframeBatcher(counting, max_batch=3, window_ms=NEVER_MS), clips)

    assert counting.sizes == [3, 3]
    assert close(frames[0], frames[1])  # the same seed: the same frames
    assert not close(frames[0], frames[2])  # another seed: other frames
    assert close(frames[2], clips[2].frames(img2img))  # and those of its seed


def test_with_batching_off_each_keyframe_is_its_own_call_as_without_a_batcher(
    img2img: Img2ImgFrames, tiny_text_to_image: TextToImage
) -> None:
    counting = CountingKeyframes(img2img)
    starts = start_images(tiny_text_to_image, 64, 3)
    clips = [Clip(start, f"koi, take {seed}", seed) for seed, start in enumerate(starts)]

    frames = frames_together(img2img, KeyframeBatcher(counting, max_batch=1), clips)

    assert counting.sizes == [1] * 6
    for made, clip in zip(frames, clips, strict=True):
        assert np.array_equal(made, clip.frames(img2img))  # type: ignore[arg-type]  # bit for bit


def test_a_failing_batch_falls_back_to_single_calls_and_only_the_bad_job_fails(
    img2img: Img2ImgFrames, tiny_text_to_image: TextToImage
) -> None:
    counting = CountingKeyframes(img2img)
    prompts = ["a heron", "a bad heron", "a crane", "a stork"]
    clips = [Clip(start, prompt, seed, num_frames=5)
             for seed, (prompt, start) in enumerate(zip(prompts, start_images(tiny_text_to_image, 64, 4), strict=True))]

    results = frames_together(img2img, KeyframeBatcher(counting, max_batch=4, window_ms=NEVER_MS), clips)

    assert isinstance(results[1], InvalidInputError)
    assert all(close(results[index], clips[index].frames(img2img)) for index in (0, 2, 3))
    assert counting.sizes == [4, 1, 1, 1, 1]  # the batch, then each job's keyframe alone


def test_a_job_cancelled_mid_batch_stops_alone_and_the_others_get_their_frames(
    img2img: Img2ImgFrames, tiny_text_to_image: TextToImage
) -> None:
    cancelled: set[int] = set()
    counting = CountingKeyframes(img2img, on_batch=lambda keyframes: cancelled.add(2))  # while the batch renders

    def stop_of(seed: int) -> ShouldStop:
        return lambda: seed in cancelled

    clips = [Clip(start, f"an otter, take {seed}", seed, num_frames=5, should_stop=stop_of(seed))
             for seed, start in zip((1, 2, 3), start_images(tiny_text_to_image, 64, 3), strict=True)]

    results = frames_together(img2img, KeyframeBatcher(counting, max_batch=3, window_ms=NEVER_MS), clips)

    assert isinstance(results[1], Interrupted) and "its batch went on for other jobs" in str(results[1])
    cancelled.clear()
    assert close(results[0], clips[0].frames(img2img)) and close(results[2], clips[2].frames(img2img))
    assert counting.sizes == [3]  # the batch ran to its end, and no one rendered again


def test_keyframes_of_other_shapes_never_share_a_call(img2img: Img2ImgFrames, tiny_text_to_image: TextToImage) -> None:
    small, large = start_images(tiny_text_to_image, 64, 1)[0], start_images(tiny_text_to_image, 128, 1)[0]
    counting = CountingKeyframes(img2img)
    clips = [Clip(small, "a fox", 1, num_frames=5), Clip(large, "a fox", 2, num_frames=5),
             Clip(small, "a wolf", 3, num_frames=5), Clip(large, "a wolf", 4, num_frames=5)]

    # Room for all four in one batch: only the shapes keep them apart, and each batch closes when its
    # window ends (long enough for the four threads to arrive).
    frames = frames_together(img2img, KeyframeBatcher(counting, max_batch=4, window_ms=3_000.0), clips)

    assert counting.sizes == [2, 2]
    assert all(close(made, clip.frames(img2img)) for made, clip in zip(frames, clips, strict=True))


def test_a_keyframes_shape_counts_its_negative_prompt_only_where_guidance_uses_it() -> None:
    def keyframe(guidance: float, negative: str | None, seed: int = 1) -> Keyframe:
        return Keyframe(PIL.Image.new("RGB", (64, 64)), "a fox", seed, STEPS, 0.35, guidance, negative)

    assert keyframe(0.0, "blur").shape == keyframe(0.0, None, seed=2).shape  # the seed (and index) never count
    assert keyframe(4.0, "blur").shape != keyframe(4.0, None).shape


def test_one_call_refuses_keyframes_of_two_shapes(img2img: Img2ImgFrames) -> None:
    keyframes = [Keyframe(PIL.Image.new("RGB", (side, side)), "a fox", 1, STEPS, 0.35) for side in (64, 128)]

    with pytest.raises(InvalidInputError, match="one shape"):
        img2img.render_keyframes(keyframes)


# Through a worker.

Worked = tuple[FramequeueBroker, Runtime, CountingKeyframes]


@pytest.fixture(scope="module")
def keyframe_worker(settings: Settings, tiny_profile) -> Iterator[Worked]:  # type: ignore[no-untyped-def]
    """An in-process dramatiq worker on the real Redis broker, 4 threads, batching up to 4 renders and keyframes."""
    own = settings.model_copy(update={"namespace": f"keyframes-{uuid.uuid4().hex[:8]}", "image_batch_max": 4,
                                      "image_batch_window_ms": 5_000.0})
    broker, runtime = build_broker(own), Runtime(own)
    batcher = runtime.keyframe_batcher("img2img")
    assert (batcher.max_batch, batcher.window_ms) == (4, 5_000.0)
    counting = CountingKeyframes(batcher.model)  # type: ignore[arg-type]
    batcher.model = counting
    with stage_worker(broker, runtime, STAGE_FUNCTIONS):
        yield broker, runtime, counting


def test_four_img2img_video_jobs_through_a_batching_worker_succeed_with_their_own_frames(
    keyframe_worker: Worked,
) -> None:
    broker, runtime, counting = keyframe_worker
    specs = [JobSpec(prompt=f"a paper lantern on a river, take {seed}", kind=JobKind.video, width=64, height=64,
                     num_frames=9, fps=8, steps=STEPS, seed=seed, enhance_prompt=False, models={"frames": "img2img"})
             for seed in range(40, 44)]
    for spec in specs:
        submit_job(broker, runtime.status, spec, catalog=runtime.catalog)

    records = [wait_until_finished(runtime.status, spec.id, timeout_s=300) for spec in specs]

    assert [record.state for record in records] == ["succeeded"] * len(specs), [r.error for r in records]
    assert sum(counting.sizes) == 2 * len(specs)  # each job's two keyframes rendered once
    assert max(counting.sizes) > 1  # and some shared a call
    model = runtime.model("img2img")
    for spec, record in zip(specs, records, strict=True):
        stored = frames_from_bytes(runtime.store.get_bytes(record.artifacts["frames"]["key"]))
        start = image_from_bytes(runtime.store.get_bytes(record.artifacts["image"]["key"]))
        assert close(stored, Clip(start, spec.prompt, spec.seed).frames(model))
        frames_progress = [(step, total) for stage, step, total in progress_events(runtime.status, spec.id)
                           if stage == "frames"]
        assert frames_progress[-1] == ("12", "12")
