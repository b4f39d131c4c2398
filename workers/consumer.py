"""The Redis consumer of framequeue's broker: woken by enqueues, and it dead-letters poison instead of dying on it."""

from __future__ import annotations

import time
from pathlib import Path

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers import redis as dramatiq_redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.logging import get_logger
from dramatiq.middleware import Middleware

#: Options dramatiq's middleware reads as numbers (ms, counts); a message with anything else there is poison.
NUMERIC_OPTIONS = ("eta", "retries", "max_retries", "max_age", "time_limit", "min_backoff", "max_backoff")
#: The types of a dramatiq message's fields, as they arrive in JSON.
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "queue_name": str, "actor_name": str, "args": (list, tuple), "kwargs": dict, "options": dict,
    "message_id": str, "message_timestamp": int,
}
#: Wake-up tokens kept per queue at most: enough to wake every idle consumer of a burst, and
#: bounded when nobody is idle to take them.
WAKE_TOKENS_KEPT = 64
#: Longest wait of a consumer with nothing outstanding, in ms: what arrives without a wake token (a dead
#: worker's messages put back) is found within it. A stopping worker wakes its consumers instead of
#: waiting it out (``WakeOnShutdown``).
IDLE_WAIT_MS = 1000
#: How long a token pushed to wake a stopping worker's consumer is kept, when that consumer has gone already.
STOP_TOKEN_TTL_MS = 60_000


def wake_key(namespace: str, queue_name: str) -> str:
    """The list an enqueue onto ``queue_name`` pushes a token to, and its idle consumers block on."""
    return f"{namespace}:__wake__.{queue_name}"


def stop_key(namespace: str, queue_name: str, broker_id: str) -> str:
    """The list that wakes only the consumer of ``queue_name`` in the worker ``broker_id``, when it stops."""
    return f"{wake_key(namespace, queue_name)}@{broker_id}"


def around_dramatiq_dispatch(script: str) -> bytes:
    """The Lua of ``script`` (a file beside this module) after dramatiq's dispatch script, wrapped as it is
    in the function ``dramatiq_dispatch(KEYS, ARGV)``, so that framequeue's additions run in the same call
    and the queue is written exactly as the installed dramatiq writes it (workers/enqueue.lua, fetch.lua)."""
    return b"".join([b"local function dramatiq_dispatch(KEYS, ARGV)\n", dramatiq_redis._scripts["dispatch"],
                     b"\nend\n", Path(__file__).with_name(script).read_bytes()])


def dispatch_args(broker: RedisBroker, command: str, queue_name: str, *args: object) -> list[object]:
    """The arguments dramatiq's dispatch script takes for ``command`` on ``queue_name``, built as
    ``RedisBroker`` builds them, for the framequeue scripts that run it (``around_dramatiq_dispatch``)."""
    return [command, current_millis(), queue_name, broker.broker_id, broker.heartbeat_timeout, broker.dead_message_ttl,
            broker._should_do_maintenance(command), broker._max_unpack_size(), *args]


#: The id of a message in this worker's ack set for a queue whose body is ARGV[1] (any id whose body is gone,
#: when ARGV[2] is "gone"), or false. KEYS: [the ack set, the queue's message hash].
_FIND_FETCHED_LUA = """
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local body = redis.call('HGET', KEYS[2], id)
  if (body == false and ARGV[2] == 'gone') or body == ARGV[1] then return id end
end
return false
"""


def read_message(data: bytes, queue_name: str) -> dramatiq.Message | str:
    """The message in ``data``, fetched from ``queue_name``; or, when it cannot be handled, why not."""
    try:
        fields = dramatiq.get_encoder().decode(data)
    except Exception as error:
        cause = error.error if isinstance(error, DecodeError) else error
        return f"not a message: {type(cause).__name__}: {cause}"
    if not isinstance(fields, dict):
        return f"not a message: a {type(fields).__name__}, not an object"
    unknown = sorted(set(fields) - set(_FIELD_TYPES))
    missing = [name for name in ("queue_name", "actor_name", "args", "kwargs", "options") if name not in fields]
    wrong = [name for name, kind in _FIELD_TYPES.items() if name in fields and not _is(fields[name], kind)]
    problems = [f"{what}: {', '.join(names)}" for what, names in
                (("missing", missing), ("unknown fields", unknown), ("of the wrong type", wrong)) if names]
    if problems:
        return f"not a message: {'; '.join(problems)}"
    options = fields["options"]
    if not isinstance(options.get("redis_message_id"), str):
        return "not a message: no redis_message_id option, so it could never be acknowledged"
    odd = [name for name in NUMERIC_OPTIONS if options.get(name) is not None and not _is(options[name], (int, float))]
    if odd:
        return f"not a message: options that should be numbers: {', '.join(odd)}"
    if fields["queue_name"] != queue_name:
        return f"not a message of this queue: it names queue {fields['queue_name']!r}"
    return dramatiq.Message(**{**fields, "args": tuple(fields["args"])})


def _is(value: object, kind: type | tuple[type, ...]) -> bool:
    """``isinstance``, except that a bool is no number here (JSON's ``true`` is not a count)."""
    return isinstance(value, kind) and not isinstance(value, bool)


class FramequeueConsumer(_RedisConsumer):
    """dramatiq's Redis consumer, woken by enqueues, which dead-letters what it fetched and cannot hand on.

    dramatiq's consumer finds an idle queue empty and sleeps before it looks again, so a message
    enqueued meanwhile waits up to the worker timeout (framequeue's ``queue_poll_max_ms``) at every
    stage hop. Here a consumer whose last fetch emptied its queue blocks on the queue's wake list
    instead (``BLPOP``), and every enqueue pushes a token onto it (workers/enqueue.lua): the next
    fetch follows at once. A token pushed while no one waited is found by the next wait, so none is
    missed; the fetch that empties a queue drops its tokens, pushed for messages it has just taken
    (workers/fetch.lua), so a hop costs one wait and one fetch. The wait is bounded by the poll
    timeout while the thread has duties (acknowledgements, delayed messages coming due), and by
    ``IDLE_WAIT_MS`` when it has none, for what arrives without a token (dramatiq's requeue of a
    dead worker's messages).

    dramatiq decodes each fetched body in ``__next__``; one that is not a message raises out of it,
    and the consumer thread restarts: the rest of its prefetch is dropped from memory while the ids
    stay in this worker's ack set, so those messages wait until the worker restarts, and the poison
    is handed out again. Here a body that ``read_message`` rejects is nacked under its broker-side id
    (found in the ack set by its body): dramatiq's nack moves the raw body onto the queue's dead-letter
    set, the nack hooks run with a stand-in message whose id is that broker-side id and which carries
    a ``DecodeError`` saying why, and the consumer goes on with its next prefetched message.
    """

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.logger = get_logger(__name__, type(self))
        self._find_fetched = broker.client.register_script(_FIND_FETCHED_LUA)
        self._fetch_script = broker.client.register_script(around_dramatiq_dispatch("fetch.lua"))
        self._keys = [f"{broker.namespace}:__acks__.{broker.broker_id}.{queue_name}",
                      f"{broker.namespace}:{queue_name}.msgs"]
        self._wake_key = wake_key(broker.namespace, queue_name)
        self._stop_key = stop_key(broker.namespace, queue_name, broker.broker_id)
        #: Whether this consumer's last fetch left the queue empty (and dropped its stale wake tokens).
        self._drained = False
        #: Whether its worker is shutting down: then it waits no longer than the poll timeout.
        self._stopping = False

    def __next__(self) -> MessageProxy | None:
        # dramatiq's own loop (brokers/redis.py), but for what it does with each body it fetched.
        try:
            while True:
                if self.message_cache:
                    self.misses = 0
                    message = self._take(self.message_cache.pop(0))
                    if message is not None:
                        return message
                    continue
                if self.outstanding_message_count < self.prefetch:
                    if not self._drained:
                        wanted = self.prefetch - self.outstanding_message_count
                        self.message_cache, self._drained = self._fetch(wanted)
                        if self.message_cache:
                            continue
                    # Our last fetch emptied the queue: nothing is worth fetching before a token comes.
                    self.broker.client.blpop([self._wake_key, self._stop_key], timeout=self._wait_ms() / 1000)
                    self._drained = False
                else:  # full: only acknowledgements free a place, and this thread sends them
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                    time.sleep(backoff_ms / 1000)
                return None
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None

    def wake_to_stop(self) -> None:
        """Cut short this consumer's idle wait for good, as its worker shuts down: dramatiq stops a consumer
        thread by a flag it reads between waits, so a worker's stop would otherwise last ``IDLE_WAIT_MS``."""
        self._stopping = True
        pipe = self.broker.client.pipeline(transaction=False)
        pipe.lpush(self._stop_key, 1)
        pipe.pexpire(self._stop_key, STOP_TOKEN_TTL_MS)
        pipe.execute()

    def _fetch(self, count: int) -> tuple[list[bytes | None], bool]:
        """Up to ``count`` message bodies, as dramatiq's fetch takes them, and whether the queue is empty now
        (then its stale wake tokens are gone too: workers/fetch.lua)."""
        namespace = self.broker.namespace
        keys = [namespace, f"{namespace}:{self.queue_name}", self._wake_key]
        empty, bodies = self._fetch_script(keys=keys, args=dispatch_args(self.broker, "fetch", self.queue_name, count))
        return bodies, bool(empty)

    def _wait_ms(self) -> float:
        """How long an idle wait may last: the poll timeout while this thread has duties (acknowledgements to
        send, delayed messages coming due) or its worker is stopping, else ``IDLE_WAIT_MS``, since every
        enqueue wakes it; and always less than the client's read timeout (redis-py's default is 5 s), which
        would fail a longer wait."""
        busy = self.outstanding_message_count or self._stopping
        wait_ms = self.timeout if busy else max(self.timeout, IDLE_WAIT_MS)
        read_timeout_s = self.broker.client.connection_pool.connection_kwargs.get("socket_timeout")
        return min(wait_ms, read_timeout_s * 1000 * 0.8) if read_timeout_s else wait_ms

    def _take(self, data: bytes | None) -> MessageProxy | None:
        """The fetched message for a worker thread, or None when it was poison (now dead-lettered)."""
        found = read_message(data, self.queue_name) if data is not None else "its body is gone"
        if isinstance(found, dramatiq.Message):
            self.queued_message_ids.add(found.message_id)
            return MessageProxy(found)
        self._dead_letter(data, found)
        return None

    def _dead_letter(self, data: bytes | None, reason: str) -> None:
        """Nack the fetched message whose body is ``data``, with hooks that see ``reason`` as a DecodeError."""
        redis_id = self._find_fetched(keys=self._keys, args=[data or b"", "gone" if data is None else ""])
        if redis_id is None:  # requeued meanwhile, as a dead worker's: whoever fetches it next deals with it
            self.logger.warning("Poison fetched from queue %r is no longer ours: %s.", self.queue_name, reason)
            return
        stand_in = MessageProxy(dramatiq.Message(
            queue_name=self.queue_name, actor_name="", args=(), kwargs={},
            options={"redis_message_id": redis_id.decode()}, message_id=redis_id.decode(),
        ))
        self.logger.error("Dead-lettering message %s of queue %r: %s.", stand_in.message_id, self.queue_name, reason)
        if data is None:  # nothing to dead-letter: the nack only drops its id from the ack set
            self.nack(stand_in)
            return
        stand_in.fail()
        stand_in.stuff_exception(DecodeError(reason, data, None))
        self.broker.emit_before("nack", stand_in)
        self.nack(stand_in)
        self.broker.emit_after("nack", stand_in)


class WakeOnShutdown(Middleware):
    """Wakes each of a stopping worker's consumers from its idle wait (``FramequeueConsumer.wake_to_stop``),
    so that a worker stops as soon as its running messages are done, not a full idle wait later."""

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        for thread in worker.consumers.values():
            consumer = thread.consumer
            if not isinstance(consumer, FramequeueConsumer):
                continue
            try:
                consumer.wake_to_stop()
            except redis.RedisError as error:  # Redis is away: the consumer's wait ends with its connection
                consumer.logger.warning("Could not wake the consumer of queue %r to stop: %s.",
                                        consumer.queue_name, error)
