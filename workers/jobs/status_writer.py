"""Batches job-status writes from every worker thread into shared Redis pipelines.

A worker thread that records a stage start or finish hands the write to this
writer; a background thread sends whatever has gathered in one pipeline every
few milliseconds. Per message that saves the round trips that would otherwise
cost a no-op stage a third of its throughput. Progress writes (running,
timings, retry events) are fire-and-forget; a final state or a dead-letter
reason is a write its thread waits for, so it is in Redis before the message
is acked, and after the progress writes queued before it. A waited write is
sent at once, with whatever has gathered: a worker thread never sits out the
gathering time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
from dramatiq.logging import get_logger
from redis.commands.core import Script
from redis.exceptions import NoScriptError

#: Longest a write waits before it is sent.
DEFAULT_FLUSH_INTERVAL_MS = 5
#: Most writes sent in one pipeline.
DEFAULT_MAX_BATCH = 500

Write = Callable[["redis.client.Pipeline"], object]


def pipelined_script(path: Path) -> Script:
    """The Lua script in ``path``, for writes queued on a writer's pipeline: bound to no client, it runs on
    the pipeline it is called with, by its hash, and the writer loads it where Redis lacks it."""
    return Script(cast(Any, None), path.read_bytes())


@dataclass
class _Queued:
    write: Write
    #: Set once the write is sent, for a thread that waits for it.
    sent: threading.Event | None = None
    errors: list[Exception] = field(default_factory=list)


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
        self._pending: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        #: Set when a thread waits for a write: the batch is sent without gathering more.
        self._waited_for = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, write: Write, *, wait: bool = False) -> None:
        """Queue ``write`` (a function that adds commands to a pipeline).

        Parameters:
          wait: block until it is in Redis.

        Raises:
          redis.RedisError: with ``wait``, when Redis did not take the write.
        """
        if self._thread is None:
            self._send([_Queued(write)], raise_errors=True)
            return
        queued = _Queued(write, threading.Event() if wait else None)
        self._pending.put(queued)
        if queued.sent is not None:
            self._waited_for.set()
            queued.sent.wait()
            if queued.errors:
                raise queued.errors[0]

    def flush(self) -> None:
        """Block until every write queued before this call is in Redis (or has failed)."""
        self.submit(lambda pipe: None, wait=True)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="framequeue-status-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Send what is queued, then stop the thread."""
        if self._thread is not None:
            self._pending.put(None)
            self._waited_for.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._pending.get()]
            if batch[0] is not None:
                self._waited_for.wait(self.flush_interval_s)  # let the other threads' writes gather
                self._waited_for.clear()
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            self._send([queued for queued in batch if queued is not None], raise_errors=False)

    def _execute(self, pipe: redis.client.Pipeline) -> list[object]:
        """Send ``pipe``, its scripts by their hashes without asking Redis first whether it knows them
        (redis-py would, a round trip per batch); when it does not (it restarted), load them and send
        again the calls that did not run: a script Redis lacked ran nothing."""
        scripts, commands = list(pipe.scripts), list(pipe.command_stack)
        pipe.scripts.clear()
        results = pipe.execute(raise_on_error=False)
        unknown = [position for position, result in enumerate(results) if isinstance(result, NoScriptError)]
        if unknown:
            for script in scripts:
                self.client.script_load(script.script)
            again = self.client.pipeline(transaction=False)
            for position in unknown:
                args, options = commands[position]
                again.execute_command(*args, **options)
            for position, result in zip(unknown, again.execute(raise_on_error=False), strict=True):
                results[position] = result
        return results

    def _send(self, batch: list[_Queued], *, raise_errors: bool) -> None:
        if not batch:
            return
        pipe = self.client.pipeline(transaction=False)
        for queued in batch:
            self._queue_on(pipe, queued)
        try:
            results = self._execute(pipe)
            failures = [result for result in results if isinstance(result, Exception)]
        except Exception as error:  # a Redis error, or a bug: either way every waiter hears it
            failures = [error]
        for failure in failures:
            self.logger.error("A job-status write failed: %s", failure)
        for queued in batch:
            queued.errors.extend(failures)
            if queued.sent is not None:
                queued.sent.set()
        if raise_errors:
            for queued in batch:
                if queued.errors:
                    raise queued.errors[0]

    def _queue_on(self, pipe: redis.client.Pipeline, queued: _Queued) -> None:
        """Add ``queued``'s commands to ``pipe``. A write that raises (a bug, a value it cannot encode) adds
        none of them and fails alone: the writes batched with it are sent, and this thread goes on."""
        stacked = len(pipe.command_stack)
        try:
            queued.write(pipe)
        except Exception as error:  # its submitter is told; the writer must not die of it
            del pipe.command_stack[stacked:]
            self.logger.error("A job-status write could not be queued", exc_info=True)
            queued.errors.append(error)
