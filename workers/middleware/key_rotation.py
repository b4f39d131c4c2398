"""Holds back messages of stages whose provider has no usable key right now.

The key pool itself (``workers/keys``) picks a key for each request, cools a
key down on 429, disables it on 401/403 and fails over within the same
attempt. This middleware is its gate: before a remote stage runs it peeks at
the pool (one round trip); when every key is at its quota or cooling down,
the message is put back until the soonest one is usable; when every key is
disabled, the message moves to its model's next fallback (workers/middleware/fallback.py),
or fails with that reason when it has none.
"""

from __future__ import annotations

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from queue_config.stages import model_of_actor
from workers.errors import NoUsableKey
from workers.keys import KeyPool
from workers.middleware.fallback import ModelFallbacks
from workers.middleware.put_back import fail_with_reason, put_back


class KeyRotation(Middleware):
    """Gates each remote catalog model on its provider's pool: ``pools_by_model[model]``.

    ``fallbacks`` moves the message of a model whose provider has no usable key to its next model.
    """

    def __init__(self, pools_by_model: dict[str, KeyPool], *, fallbacks: ModelFallbacks | None = None) -> None:
        self.pools_by_model = pools_by_model
        self.fallbacks = fallbacks

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        pool = self.pools_by_model.get(model_of_actor(message.actor_name) or "")
        if pool is None:
            return
        try:
            wait_ms = pool.wait_ms()
        except NoUsableKey as error:
            if self.fallbacks is not None:
                self.fallbacks.fall_back(broker, message, f"NoUsableKey: {error}")
            fail_with_reason(message, f"NoUsableKey: {error}")
        if wait_ms:
            put_back(broker, message, wait_ms, f"every {pool.provider} key is at its quota or cooling down")
