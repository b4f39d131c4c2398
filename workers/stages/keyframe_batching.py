"""Batched img2img keyframes: the frames stage's worker threads share one img2img call per shape.

The img2img frames backend (pipelines/frames_img2img.py) grows each keyframe from the one before, one
img2img call per keyframe. Its jobs hand each :class:`~pipelines.frames_img2img.Keyframe` to
:meth:`KeyframeBatcher.render`, which blocks: keyframes of one shape (size, steps, strength, guidance,
negative prompt) from concurrent jobs on the same model, up to ``max_batch`` within ``window_ms``, are
rendered by ONE call of :meth:`Img2ImgFrames.render_keyframes`: a batch of images and prompts, one
generator per image, seeded by its own job's seed and keyframe index. The keyframe's index is not part
of the shape: jobs that are at different keyframes share a call as well as jobs in step.

Gathering, the fall back to single calls when a batch call raises, cancellation (a job cancelled
while its batch goes on stops alone once the call is done) and the split of device time are
:class:`workers.stages.gathering.Batcher`'s, as for the image stage. Progress needs nothing here:
the backend reports each keyframe from its job's own thread once its image is back, and the frames
between keyframes are made there too.

Batched and single keyframes agree to within one level of 255 per pixel, as batched images do
(tests/workers/test_keyframe_batching.py checks the bound). ``image_batch_max`` and
``image_batch_window_ms`` (queue_config/settings.py) set this batcher too: an img2img maker renders
with its base image model's components.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import PIL.Image

from pipelines.errors import ShouldStop
from pipelines.frames_img2img import Keyframe, KeyframeShape
from pipelines.metering import Meter, current_meter
from workers.stages.gathering import DEFAULT_WINDOW_MS, Batcher


class KeyframeModel(Protocol):
    """What renders keyframes: :class:`pipelines.Img2ImgFrames`, or a stand-in in tests."""

    def render_keyframe(self, keyframe: Keyframe) -> PIL.Image.Image: ...

    def render_keyframes(self, keyframes: Sequence[Keyframe], should_stop: ShouldStop | None = None,
                         where: str = "") -> list[PIL.Image.Image]: ...


@dataclass(frozen=True)
class KeyframeRequest:
    """One job's keyframe and the usage meter of the thread that asked for it."""

    keyframe: Keyframe
    meter: Meter | None = field(default_factory=current_meter, compare=False)

    @property
    def shape(self) -> KeyframeShape:
        return self.keyframe.shape

    def cancelled(self) -> bool:
        return self.keyframe.should_stop is not None and self.keyframe.should_stop()


class KeyframeBatcher(Batcher[KeyframeRequest, PIL.Image.Image]):
    """Gathers concurrent keyframes of one shape into one img2img call of ``model``.

    Parameters:
        model: The :class:`pipelines.Img2ImgFrames` whose keyframes are batched.
        max_batch: The most keyframes in one call; 1 turns batching off (each renders alone).
        window_ms: How long the first keyframe of a batch waits for others, in ms.
        device: Where the model runs; on CUDA each call's time is metered as its jobs' device time.
    """

    def __init__(self, model: KeyframeModel, *, max_batch: int = 1, window_ms: float = DEFAULT_WINDOW_MS,
                 device: str = "cpu") -> None:
        super().__init__(max_batch=max_batch, window_ms=window_ms, device=device)
        self.model = model

    def render(self, keyframe: Keyframe) -> PIL.Image.Image:
        """``keyframe``'s image, rendered alone or in a batch of its shape; the backend's ``render_keyframe``.

        Raises:
            Interrupted: when the keyframe's job was cancelled (alone, or once its batch is done).
            Exception: whatever rendering it alone raised.
        """
        return self.submit(KeyframeRequest(keyframe))

    def call_alone(self, request: KeyframeRequest) -> PIL.Image.Image:
        return self.model.render_keyframe(request.keyframe)

    def call_together(self, requests: list[KeyframeRequest], should_stop: ShouldStop) -> list[PIL.Image.Image]:
        return self.model.render_keyframes([request.keyframe for request in requests], should_stop)

    def went_on_without(self, request: KeyframeRequest) -> str:
        return f"the last step{request.keyframe.where} (its batch went on for other jobs)"
