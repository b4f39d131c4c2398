"""Batched image renders: the image stage's worker threads share one model call per shape.

Each worker thread hands :meth:`ImageBatcher.render` one :class:`RenderRequest` and blocks.
The first request of a shape (size, steps, negative prompt, guidance) opens a batch and waits
up to ``window_ms`` for more of the same shape, or until ``max_batch`` have joined; then that
thread makes ONE call of the model for all of them and hands each thread its own image. While an
earlier batch holds the model, the next stays open past its window and keeps gathering. No
thread of its own: the opening thread renders, the others wait on the batch.

Each job keeps its own seed (the model seeds one generator per image), its own output, and its
own status and retry, since each thread returns or raises for its job alone:

- A batch call that raises (anything but all jobs being cancelled) is not retried as a batch:
  each thread renders its own request alone, so one bad request fails only its own job.
- Cancellation: the model is asked to stop only when every job in the batch is cancelled; a job
  cancelled while the others go on raises :class:`~pipelines.Interrupted` in its own thread once
  the batch is done, and its image is dropped.
- Progress: every step is reported to every job of the batch, each with its own latents.
- Device time: a batch's time on the GPU is split evenly between its jobs' meters
  (pipelines/metering.py), each request carrying the meter of the thread that made it.

Batched and single renders of the same request agree to within one level of 255 per pixel, not
always bit for bit: CPU float kernels may sum in a different order for a batch than for one image
(tests/workers/test_image_batching.py checks the bound).

The batcher holds one model, so "the same model" is part of every shape; with one image model per
deployment, ``image_batch_max`` and ``image_batch_window_ms`` (queue_config/settings.py) are that
model's setting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from pipelines import ImageOutput, Interrupted
from pipelines.errors import ShouldStop
from pipelines.metering import Meter, current_meter, on_device
from pipelines.progress import StepProgress
from pipelines.text_to_image import DEFAULT_GUIDANCE_SCALE

#: Default longest wait of a lone request for company, in ms.
DEFAULT_WINDOW_MS = 50.0
#: Longest a waiting thread stays blocked in one call, in s: dramatiq's time limit interrupts a
#: thread between Python instructions, never inside a blocking wait.
WAIT_SLICE_S = 1.0
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


@dataclass
class _Batch:
    requests: list[RenderRequest] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    #: One per request once done: an image, an exception for that job, or None (render alone).
    results: list[Image.Image | BaseException | None] = field(default_factory=list)


class ImageBatcher:
    """Gathers concurrent renders of one shape into one call of ``model``.

    Parameters:
        model: A :class:`pipelines.TextToImage` (or anything called the same way).
        max_batch: The most requests in one call; 1 turns batching off (each renders alone).
        window_ms: How long the first request of a batch waits for others, in ms.
        device: Where the model runs; on CUDA each call's time is metered as its jobs' device time.
    """

    def __init__(self, model: Callable[..., ImageOutput], *, max_batch: int = 1,
                 window_ms: float = DEFAULT_WINDOW_MS, device: str = "cpu") -> None:
        self.model = model
        self.max_batch = max_batch
        self.window_ms = window_ms
        self.device = device
        self._lock = threading.Lock()
        #: Held by the batch being rendered: one model call at a time per process (as the model's own lock).
        self._turn = threading.Lock()
        self._open: dict[Shape, _Batch] = {}

    def render(self, request: RenderRequest) -> Image.Image:
        """This request's image, rendered alone or in a batch of its shape.

        Raises:
            Interrupted: when the request's job was cancelled (alone, or once its batch is done).
            Exception: whatever rendering it alone raised.
        """
        if self.max_batch <= 1:
            return self.render_alone(request)
        batch, slot = self._join(request)
        if slot == 0:
            self._lead(batch)
        else:
            while not batch.done.wait(WAIT_SLICE_S):
                pass  # waits in slices: a thread blocked in C for good would never see its time limit
        result = batch.results[slot] if len(batch.results) > slot else None
        if result is None:
            return self.render_alone(request)
        if isinstance(result, BaseException):
            raise result
        if request.cancelled():
            raise Interrupted(f"step {request.steps} of {request.steps} (its batch went on for other jobs)")
        return result

    def render_alone(self, request: RenderRequest) -> Image.Image:
        with on_device(self.device, [request.meter]):
            output = self.model(
                [request.prompt], seeds=[request.seed], width=request.width, height=request.height,
                steps=request.steps, negative_prompt=request.negative_prompt, guidance_scale=request.guidance_scale,
                should_stop=request.should_stop, progress=request.progress,
            )
        return output.images[0]

    def _join(self, request: RenderRequest) -> tuple[_Batch, int]:
        with self._lock:
            batch = self._open.get(request.shape)
            if batch is None:
                batch = self._open[request.shape] = _Batch()
            batch.requests.append(request)
            if len(batch.requests) >= self.max_batch:
                del self._open[request.shape]
                batch.full.set()
            return batch, len(batch.requests) - 1

    def _lead(self, batch: _Batch) -> None:
        """Wait out the window and the model's turn, close the batch and render it.

        The batch stays open while the model is busy with an earlier one, so under load batches
        fill up instead of queueing at the model half-empty. Every waiter is released, whatever
        happens.
        """
        try:
            batch.full.wait(self.window_ms / 1000)
            while not self._turn.acquire(timeout=WAIT_SLICE_S):
                pass
            try:
                self._close(batch)
                batch.results = self._results(list(batch.requests))
            finally:
                self._turn.release()
        finally:
            self._close(batch)
            batch.done.set()  # results left unset (the leader was interrupted): each renders alone

    def _close(self, batch: _Batch) -> None:
        with self._lock:
            shape = batch.requests[0].shape
            if self._open.get(shape) is batch:
                del self._open[shape]

    def _results(self, requests: list[RenderRequest]) -> list[Image.Image | BaseException | None]:
        if len(requests) == 1:  # the leader alone: as if there were no batcher, but in its turn
            try:
                return [self.render_alone(requests[0])]
            except Exception as error:  # raised again in the leader's thread, for its own job
                return [error]
        first = requests[0]
        try:
            with on_device(self.device, [request.meter for request in requests]):
                output = self.model(
                    [request.prompt for request in requests], seeds=[request.seed for request in requests],
                    width=first.width, height=first.height, steps=first.steps, negative_prompt=first.negative_prompt,
                    guidance_scale=first.guidance_scale, should_stop=lambda: all(r.cancelled() for r in requests),
                    progress=_each(requests),
                )
        except Interrupted as stopped:
            return [Interrupted(stopped.where) for _ in requests]  # every job was cancelled; one error each
        except Exception:
            return [None] * len(requests)
        return list(output.images)


def _each(requests: list[RenderRequest]) -> StepProgress:
    """One progress hook that tells each request's hook, with that request's own latents."""

    def report(done: int, total: int, latents: torch.Tensor | None) -> None:
        for index, request in enumerate(requests):
            if request.progress is not None:
                own: Any = None if latents is None else latents[index:index + 1]
                request.progress(done, total, own)

    return report
