"""Each worker process describes itself in Redis, so an operator can see who serves what.

On boot a worker process writes its entry (host, pid, the stages and queues it consumes, the
models it runs them with, threads, start time, framequeue's version) and refreshes it from a
daemon thread; each message it runs is listed in the entry while it runs. Those two writes per
message go through a ``StatusWriter``, so the worker thread only queues them: they reach Redis
within milliseconds, batched with other threads' writes, and add no round trip to a message. A
clean shutdown removes the entry; a process that dies leaves it to go stale and then expire. The
keys and the reader are in ``workers.ops.workers``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from uuid import uuid4

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.logging import get_logger
from dramatiq.middleware import Middleware

from queue_config.settings import Settings
from queue_config.stages import stage_of_actor
from workers.jobs.messages import job_id_in
from workers.jobs.status_writer import StatusWriter
from workers.ops.workers import JOB_FIELD_PREFIX, entry_key, index_key

#: Milliseconds between two heartbeats of a worker process's entry.
DEFAULT_INTERVAL_MS = 5_000
#: An entry is listed stale once its heartbeat is this old (the broker's heartbeat timeout is
#: the usual choice: dramatiq gives a silent worker's messages to others after it).
DEFAULT_STALE_AFTER_MS = 60_000
#: An entry without a heartbeat for this long expires.
DEFAULT_TTL_MS = 120_000

_BEAT_LUA = (Path(__file__).parent / "worker_beat.lua").read_text()


def framequeue_version() -> str:
    """The installed framequeue's version, as each worker reports it."""
    try:
        return metadata.version("framequeue")
    except metadata.PackageNotFoundError:
        return "unknown"


def worker_registry(settings: Settings, describe_models: Callable[[Sequence[str]], dict[str, str]]) -> WorkerRegistry:
    """The registry middleware timed by the broker's heartbeat timeout: stale after it, gone after twice it."""
    timeout_ms = settings.heartbeat_timeout_ms
    return WorkerRegistry(describe_models=describe_models, interval_ms=min(DEFAULT_INTERVAL_MS, timeout_ms // 4),
                          stale_after_ms=timeout_ms, ttl_ms=2 * timeout_ms)


class WorkerRegistry(Middleware):
    """Keeps this worker process's entry in the registry: written at boot, beaten, removed at shutdown.

    Parameters:
        describe_models: Called once at boot with the queues the process serves; returns what it
            runs them with (``workers.ops.workers.WorkerEntry.models``).
        interval_ms: Milliseconds between heartbeats.
        stale_after_ms: Heartbeat age after which readers mark the entry stale.
        ttl_ms: Heartbeat age after which the entry expires; keep it above ``stale_after_ms`` so a
            dead worker is seen stale before it vanishes.
    """

    def __init__(
        self,
        *,
        describe_models: Callable[[Sequence[str]], dict[str, str]] = lambda queues: {},
        interval_ms: int = DEFAULT_INTERVAL_MS,
        stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
        ttl_ms: int = DEFAULT_TTL_MS,
    ) -> None:
        self.logger = get_logger(__name__, type(self))
        self.describe_models = describe_models
        self.interval_ms = interval_ms
        self.stale_after_ms = stale_after_ms
        self.ttl_ms = ttl_ms
        self.worker_id = ""
        self._fields: list[str] = []
        self._writer: StatusWriter | None = None
        self._stopped = threading.Event()
        self._beater: threading.Thread | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Name the entry and start its writer before the worker's threads start: dramatiq runs
        ``after_worker_boot`` once they have, and one may already be running a message by then."""
        self.client: redis.Redis = broker.client  # type: ignore[attr-defined]
        namespace: str = broker.namespace  # type: ignore[attr-defined]
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid4().hex[:8]}"
        self.index, self.entry = index_key(namespace), entry_key(namespace, self.worker_id)
        self._writer = StatusWriter(self.client)
        self._writer.start()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        host, pid = socket.gethostname(), os.getpid()
        queues = sorted({q_name(queue) for queue in worker.consumers})
        stages = sorted({stage_of_actor(queue) for queue in queues})
        description: dict[str, Any] = {
            "host": host, "pid": pid, "stages": json.dumps(stages), "queues": json.dumps(queues),
            "models": json.dumps(self.describe_models(queues)), "threads": worker.worker_threads,
            "started_at": time.time(), "version": framequeue_version(), "stale_after_ms": self.stale_after_ms,
        }
        self._fields = [str(part) for pair in description.items() for part in pair]
        self._beat_script = self.client.register_script(_BEAT_LUA)
        try:
            self._beat()
        except redis.RedisError as error:
            self.logger.warning("Worker registry not written at boot: %s", error)
        self._stopped.clear()
        self._beater = threading.Thread(target=self._beat_until_stopped, name="worker-registry", daemon=True)
        self._beater.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopped.set()
        if self._beater is not None:
            self._beater.join()
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(self.index, self.worker_id)
            pipe.delete(self.entry)
            pipe.execute()
        except redis.RedisError:
            self.logger.warning("Could not remove worker %s from the registry; it will expire.", self.worker_id)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if self._writer is None:
            return
        job = {"job_id": job_id_in(message.args), "stage": stage_of_actor(message.actor_name), "since": time.time()}
        field, value = JOB_FIELD_PREFIX + message.message_id, json.dumps(job)
        self._writer.submit(lambda pipe: pipe.hset(self.entry, field, value))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if self._writer is not None:
            field = JOB_FIELD_PREFIX + message.message_id
            self._writer.submit(lambda pipe: pipe.hdel(self.entry, field))

    after_skip_message = after_process_message

    def _beat(self) -> None:
        self._beat_script(keys=[self.index, self.entry], args=[self.worker_id, self.ttl_ms, *self._fields])

    def _beat_until_stopped(self) -> None:
        while not self._stopped.wait(self.interval_ms / 1000):
            try:
                self._beat()
            except redis.RedisError as error:
                self.logger.warning("Worker registry heartbeat failed: %s", error)
