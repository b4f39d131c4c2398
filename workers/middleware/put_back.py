"""Putting a message back to wait, and failing one with a reason, from middleware or an actor.

A message that must wait (for quota, a key, a slot) is re-enqueued with a
delay equal to the wait and the original is skipped: no busy loop, and its
retry count is untouched. The reason is left on the thread for the job-status
middleware, which runs its skip hook on the same thread.
"""

from __future__ import annotations

import random
import threading
from typing import Any, NoReturn

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import SkipMessage

#: Spread of the delay, so that messages put back together do not all wake together.
JITTER_FRACTION = 0.1

_skip = threading.local()


class PutBack(SkipMessage):
    """The message was re-enqueued to wait ``delay_ms``."""


def put_back(
    broker: dramatiq.Broker,
    message: MessageProxy,
    delay_ms: int,
    reason: str,
    *,
    jitter: bool = True,
    options: dict[str, Any] | None = None,
) -> NoReturn:
    """Re-enqueue ``message`` to run after ``delay_ms`` (plus a little jitter) and skip this delivery.

    ``options`` are added to the re-enqueued message (e.g. a booked rate-limit slot).
    """
    if jitter:
        delay_ms = int(delay_ms * (1 + random.uniform(0, JITTER_FRACTION)))
    delay_ms = max(1, delay_ms)
    copy = message.copy(queue_name=q_name(message.queue_name), options=options or {})
    broker.enqueue(copy, delay=delay_ms)
    _skip.reason = f"waiting {delay_ms} ms: {reason}"
    raise PutBack(reason)


def fail_with_reason(message: MessageProxy, reason: str) -> NoReturn:
    """Fail ``message`` (it goes to the dead-letter queue) and say why."""
    message.fail()
    _skip.reason = reason
    raise SkipMessage(reason)


def take_skip_reason() -> str:
    """Why this thread's last message was put back or failed ("" if nobody said)."""
    reason = getattr(_skip, "reason", "")
    _skip.reason = ""
    return reason
