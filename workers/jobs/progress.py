"""Live progress of a running stage: steps done and a preview, in the job record and event stream.

The model calls a :class:`StageProgress` after every step; it writes at most once every
``min_interval_s`` (and always at the last step), so a stage pays a few small Redis writes
whatever its step rate. Each write sets ``progress.{stage}`` = ``"done/total"`` in the record and
appends a ``progress`` event to the stream (what SSE followers see; webhooks skip it). At most
every ``preview_interval_s`` it also keeps a small PNG preview of the forming image under the
job's preview key, which expires with the job. In a worker the writes are queued on the job-status
middleware's writer, so a step pays for none of them; they land after the stage's start and before
its end, as the stage made them. Progress is a courtesy: a write that fails is dropped and never
fails the stage.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from functools import partial

import redis
import torch
from dramatiq.logging import get_logger
from PIL import Image

from pipelines.progress import latent_preview
from workers.jobs.record import JobStatusStore
from workers.jobs.status_writer import StatusWriter

#: The longest side of a stored preview, in pixels.
PREVIEW_MAX_SIDE_PX = 128


def preview_key(status: JobStatusStore, job_id: str) -> str:
    """Where a job's newest preview PNG lies in Redis."""
    return f"{status.job_key(job_id)}:preview"


class StageProgress:
    """Reports one stage's steps for one job; pass it to the model as its ``progress`` hook.

    Parameters:
        writer: Queues the writes, for its thread to send (the worker's job-status writer); without
            one each write is sent at once, from the thread that reports the step.
    """

    def __init__(
        self,
        status: JobStatusStore,
        job_id: str,
        stage: str,
        *,
        min_interval_s: float = 0.5,
        preview_interval_s: float = 2.0,
        preview: Callable[[torch.Tensor], Image.Image] = latent_preview,
        clock: Callable[[], float] = time.monotonic,
        writer: StatusWriter | None = None,
    ) -> None:
        self.status = status
        self.job_id = job_id
        self.stage = stage
        self.min_interval_s = min_interval_s
        self.preview_interval_s = preview_interval_s
        self.preview = preview
        self.clock = clock
        self.writer = writer
        self.logger = get_logger(__name__, type(self))
        self._written_at = float("-inf")
        self._previewed_at = float("-inf")

    def __call__(self, done: int, total: int, latents: torch.Tensor | None = None) -> None:
        now = self.clock()
        last = done >= total
        if not last and now - self._written_at < self.min_interval_s:
            return
        self._written_at = now
        png = None
        if latents is not None and not last and now - self._previewed_at >= self.preview_interval_s:
            self._previewed_at = now
            png = _png(self.preview(latents))
        write = partial(self._write, done, total, png)
        if self.writer is not None:
            self.writer.submit(write)
            return
        try:
            pipe = self.status.client.pipeline(transaction=False)
            write(pipe)
            pipe.execute()
        except redis.RedisError as error:
            self.logger.debug("Progress of job %s not written: %s", self.job_id, error)

    def _write(self, done: int, total: int, png: bytes | None, pipe: redis.client.Pipeline) -> None:
        pipe.hset(self.status.job_key(self.job_id), f"progress.{self.stage}", f"{done}/{total}")
        if png is not None:
            pipe.set(preview_key(self.status, self.job_id), png, px=self.status.retention_ms)
        self.status.emit(self.job_id, "progress", client=pipe, stage=self.stage, step=str(done), total=str(total))


def _png(image: Image.Image) -> bytes:
    image.thumbnail((PREVIEW_MAX_SIDE_PX, PREVIEW_MAX_SIDE_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
