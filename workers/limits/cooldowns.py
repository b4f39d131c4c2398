"""Provider failures in a row of each catalog model, and its cooldown, shared by every worker through Redis.

A model whose provider answered 5xx or timed out ``failures_before`` times in a row, counted over
every worker and host, cools down for ``cooldown_ms``: while it does, its messages move to the
next model of their fallback chain without trying it (workers/middleware/fallback.py). A success
resets the count and ends the cooldown. LiteLLM's router cools a deployment down the same way
(``allowed_fails``, ``cooldown_time``).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import redis

_LUA = (Path(__file__).parent / "cooldown.lua").read_text()
#: How long a model's failure count outlives its cooldown; a success resets it sooner.
FAILURES_KEPT_MS = 10 * 60_000


class ModelCooldowns:
    """Counts each model's provider failures in a row, and says which models are cooling down.

    Parameters:
        client: A Redis client that decodes responses to str.
        namespace: Prefix of every key.
    """

    def __init__(self, client: redis.Redis, namespace: str = "framequeue") -> None:
        self.client = client
        self.namespace = namespace
        self._failed = client.register_script(_LUA)

    def _keys(self, model: str) -> tuple[str, str]:
        return f"{self.namespace}:model:{model}:failures", f"{self.namespace}:model:{model}:cooldown"

    def failed(self, model: str, reason: str, *, failures_before: int, cooldown_ms: int) -> bool:
        """Count one provider failure of ``model`` (one round trip); True if the model is now cooling down.

        ``reason`` (no secret in it) is kept with the cooldown, for the messages it moves.
        """
        _, cooling = self._failed(keys=list(self._keys(model)),
                                  args=[failures_before, cooldown_ms, cooldown_ms + FAILURES_KEPT_MS, reason])
        return bool(cooling)

    def succeeded(self, model: str) -> None:
        """``model`` served: its count starts again from zero and any cooldown ends."""
        self.client.delete(*self._keys(model))

    def cooling_down(self, model: str) -> str | None:
        """Why ``model`` is cooling down (the failure that started it), or None when it is not."""
        return cast("str | None", self.client.get(self._keys(model)[1]))

    def failures(self, model: str) -> int:
        """``model``'s provider failures in a row."""
        return int(cast("str | None", self.client.get(self._keys(model)[0])) or 0)
