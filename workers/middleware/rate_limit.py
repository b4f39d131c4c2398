"""Per-model rate and concurrency limits, shared by every worker on every host.

Before a stage that calls a remote model runs, this middleware takes one of the
model's concurrency slots and one request from its per-minute budget (one
Redis round trip each). A message over the rate books the next free slot and
is put back with a delay equal to the wait; when it comes back it goes without
a second check, so waiting messages are served in turn. A message over the
concurrency limit is put back for a short while (slots free as calls end, at
no time anyone can know). No busy loop, no retry burned, and stage code never
sees any of it.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from queue_config.remote import ModelLimits
from queue_config.stages import model_of_actor
from workers.limits import RedisLimiter
from workers.middleware.put_back import put_back

#: How long a concurrency slot is held if its worker dies without releasing it.
DEFAULT_SLOT_LEASE_MS = 10 * 60_000
#: Requests a model may take at once beyond its steady rate.
DEFAULT_BURST = 1
#: How long a message over the concurrency limit waits before it asks again.
DEFAULT_SLOT_WAIT_MS = 250
#: Message option naming the rate-limit slot a put-back message has booked (and for which try).
BOOKED_SLOT_OPTION = "framequeue_booked_slot"


class ModelRateLimits(Middleware):
    """Applies ``limits_by_model[model]`` to the messages of catalog model ``model``'s queues."""

    def __init__(
        self,
        limiter: RedisLimiter,
        limits_by_model: dict[str, ModelLimits],
        *,
        slot_lease_ms: int = DEFAULT_SLOT_LEASE_MS,
        slot_wait_ms: int = DEFAULT_SLOT_WAIT_MS,
        burst: int = DEFAULT_BURST,
    ) -> None:
        self.limiter = limiter
        self.limits_by_model = limits_by_model
        self.slot_lease_ms = slot_lease_ms
        self.slot_wait_ms = slot_wait_ms
        self.burst = burst

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        limits = self.limits_by_model.get(model_of_actor(message.actor_name) or "")
        if limits is None:
            return
        name = f"{limits.provider}:{limits.model}"
        if limits.concurrency:
            wait_ms = self.limiter.acquire_wait_ms(name, limits.concurrency, message.message_id, self.slot_lease_ms)
            if wait_ms:
                reason = f"{name} has {limits.concurrency} calls in flight"
                put_back(broker, message, min(wait_ms, self.slot_wait_ms), reason)
        booking = f"{name}@{message.options.get('retries', 0)}"
        if limits.requests_per_minute and message.options.get(BOOKED_SLOT_OPTION) != booking:
            wait_ms = self.limiter.rate_wait_ms(name, limits.requests_per_minute, self.burst, reserve=True)
            if wait_ms:
                self._release(message)
                reason = f"{name} is at {limits.requests_per_minute:g} requests/min"
                put_back(broker, message, wait_ms, reason, jitter=False, options={BOOKED_SLOT_OPTION: booking})

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        self._release(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._release(message)

    def _release(self, message: MessageProxy) -> None:
        limits = self.limits_by_model.get(model_of_actor(message.actor_name) or "")
        if limits is not None and limits.concurrency:
            self.limiter.release(f"{limits.provider}:{limits.model}", message.message_id)
