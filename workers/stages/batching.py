"""Batched image renders: the image stage's worker threads share one model call per shape.

Each worker thread hands :meth:`ImageBatcher.render` one :class:`RenderRequest` and blocks. Requests
of one shape (size, steps, negative prompt, guidance) that arrive within ``window_ms`` of the first,
up to ``max_batch``, are rendered by ONE call of the model, and each thread gets its own image. The
gathering, the fall back to single renders when a batch call raises, cancellation and the split of
device time are :class:`workers.stages.gathering.Batcher`'s, shared with the img2img keyframes
(workers/stages/keyframe_batching.py).

What is the image's own: each job keeps its own seed (the model seeds one generator per image) and
its own output; every step is reported to every job of the batch, each with its own latents.

Batched and single renders of the same request agree to within one level of 255 per pixel, not
always bit for bit: CPU float kernels may sum in a different order for a batch than for one image
(tests/workers/test_image_batching.py checks the bound).

The batcher holds one model, so "the same model" is part of every shape; with one image model per
deployment, ``image_batch_max`` and ``image_batch_window_ms`` (queue_config/settings.py) are that
model's setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from pipelines import ImageOutput
from pipelines.errors import ShouldStop
from pipelines.metering import Meter, current_meter
from pipelines.progress import StepProgress
from pipelines.text_to_image import DEFAULT_GUIDANCE_SCALE
from workers.stages.gathering import DEFAULT_WINDOW_MS, Batcher

#: Shape key: (width, height, steps, negative prompt, guidance scale).
Shape = tuple[int, int, int, str | None, float]


@dataclass(frozen=True)
class RenderRequest:
    """One job's image: what to render and the job's own stop question and progress hook.

    ``should_stop`` is asked from whichever thread runs the batch, so it must name its job
    rather than read thread-local state (see ``workers.jobs.cancellations.cancellation_check``).
    """

    prompt: str
    seed: int
    width: int
    height: int
    steps: int
    negative_prompt: str | None = None
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    should_stop: ShouldStop | None = None
    progress: StepProgress | None = None
    #: The job's usage meter: that of the thread that made the request, whichever thread renders it.
    meter: Meter | None = field(default_factory=current_meter, compare=False)

    @property
    def shape(self) -> Shape:
        return (self.width, self.height, self.steps, self.negative_prompt, self.guidance_scale)

    def cancelled(self) -> bool:
        return self.should_stop is not None and self.should_stop()


class ImageBatcher(Batcher[RenderRequest, Image.Image]):
    """Gathers concurrent renders of one shape into one call of ``model``.

    Parameters:
        model: A :class:`pipelines.TextToImage` (or anything called the same way).
        max_batch: The most requests in one call; 1 turns batching off (each renders alone).
        window_ms: How long the first request of a batch waits for others, in ms.
        device: Where the model runs; on CUDA each call's time is metered as its jobs' device time.
    """

    def __init__(self, model: Callable[..., ImageOutput], *, max_batch: int = 1,
                 window_ms: float = DEFAULT_WINDOW_MS, device: str = "cpu") -> None:
        super().__init__(max_batch=max_batch, window_ms=window_ms, device=device)
        self.model = model

    def render(self, request: RenderRequest) -> Image.Image:
        """This request's image, rendered alone or in a batch of its shape.

        Raises:
            Interrupted: when the request's job was cancelled (alone, or once its batch is done).
            Exception: whatever rendering it alone raised.
        """
        return self.submit(request)

    def render_alone(self, request: RenderRequest) -> Image.Image:
        """This request's image from a model call of its own."""
        return self.alone(request)

    def call_alone(self, request: RenderRequest) -> Image.Image:
        output = self.model(
            [request.prompt], seeds=[request.seed], width=request.width, height=request.height,
            steps=request.steps, negative_prompt=request.negative_prompt, guidance_scale=request.guidance_scale,
            should_stop=request.should_stop, progress=request.progress,
        )
        return output.images[0]

    def call_together(self, requests: list[RenderRequest], should_stop: ShouldStop) -> list[Image.Image]:
        first = requests[0]
        output = self.model(
            [request.prompt for request in requests], seeds=[request.seed for request in requests],
            width=first.width, height=first.height, steps=first.steps, negative_prompt=first.negative_prompt,
            guidance_scale=first.guidance_scale, should_stop=should_stop, progress=_each(requests),
        )
        return list(output.images)

    def went_on_without(self, request: RenderRequest) -> str:
        return f"step {request.steps} of {request.steps} (its batch went on for other jobs)"


def _each(requests: list[RenderRequest]) -> StepProgress:
    """One progress hook that tells each request's hook, with that request's own latents."""

    def report(done: int, total: int, latents: torch.Tensor | None) -> None:
        for index, request in enumerate(requests):
            if request.progress is not None:
                own: Any = None if latents is None else latents[index:index + 1]
                request.progress(done, total, own)

    return report
