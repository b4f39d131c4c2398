"""Batches job-progress writes from every worker thread into shared Redis pipelines.

A worker thread that records a stage start or finish hands the write to this
writer and carries on; a background thread sends whatever has gathered in one
pipeline every few milliseconds. Per message that saves the round trips that
would otherwise cost a no-op stage about half its throughput. Only progress
goes this way (running, timings, artifacts, retry events): final states and
dead-letter reasons are written synchronously, before the message is acked.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import redis
from dramatiq.logging import get_logger

#: Longest a progress write waits before it is sent.
DEFAULT_FLUSH_INTERVAL_MS = 5
#: Most writes sent in one pipeline.
DEFAULT_MAX_BATCH = 500

Write = Callable[["redis.client.Pipeline"], object]


class StatusWriter:
    """Sends queued writes in batches from one background thread.

    Until ``start()`` (and after ``stop()``) writes go straight to Redis, so a
    process that runs no worker (the CLI, a test) behaves synchronously.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        flush_interval_ms: int = DEFAULT_FLUSH_INTERVAL_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.logger = get_logger(__name__, type(self))
        self.client = client
        self.flush_interval_s = flush_interval_ms / 1000
        self.max_batch = max_batch
        self._pending: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, write: Write) -> None:
        """Queue ``write`` (a function that adds commands to a pipeline)."""
        if self._thread is None:
            pipe = self.client.pipeline(transaction=False)
            write(pipe)
            pipe.execute()
        else:
            self._pending.put(write)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="framequeue-status-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Send what is queued, then stop the thread."""
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._pending.get()]
            if batch[0] is not None:
                time.sleep(self.flush_interval_s)  # let the other threads' writes gather
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            self._send([write for write in batch if write is not None])

    def _send(self, batch: list[Write]) -> None:
        if not batch:
            return
        pipe = self.client.pipeline(transaction=False)
        for write in batch:
            write(pipe)
        try:
            for result in pipe.execute(raise_on_error=False):
                if isinstance(result, Exception):
                    self.logger.error("A job-status write failed: %s", result)
        except redis.RedisError:
            self.logger.exception("Lost %d job-status writes: Redis did not take them.", len(batch))
