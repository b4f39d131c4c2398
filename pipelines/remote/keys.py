"""API keys: how they are named in logs and errors, and who chooses which key a request uses.

Clients never store keys. A stage backend hands its :class:`KeyProvider` a function that
makes one request with a given key; the provider decides which key(s) to try and in what
order. The Redis key pool (rotation, cooldowns, failover across workers) implements that
protocol elsewhere; :class:`StaticKeyProvider` is the simple in-process one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from pipelines.remote.errors import KeyRejected, ProviderError, RateLimited

T = TypeVar("T")

#: How many hex characters of the key's sha256 make its fingerprint.
FINGERPRINT_HEX_CHARS = 12

logger = logging.getLogger(__name__)


def key_fingerprint(key: str) -> str:
    """Return the first 12 hex characters of the key's sha256: safe to log, stable, not reversible."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:FINGERPRINT_HEX_CHARS]


class KeyProvider(Protocol):
    """Chooses the key(s) for one request to ``provider``'s ``model``.

    ``call`` runs ``request(key)`` with a key it picks, may retry it with other keys when
    ``request`` raises :class:`RateLimited` or :class:`KeyRejected`, and returns the first
    result. Any other error is the request's own and should propagate unchanged.
    """

    def call(self, provider: str, model: str, request: Callable[[str], T]) -> T: ...


class StaticKeyProvider:
    """Tries a fixed list of keys in order, failing over on rate limits and rejected keys.

    A key that is rejected (401/403) is not tried again by this provider; a rate-limited key
    is tried again on the next call. For unit tests and single-process use: it shares no
    state across processes and waits for nothing.

    Parameters:
        keys: The keys, most preferred first. The same keys serve every provider and model.

    Raises:
        ValueError: When ``keys`` is empty.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("StaticKeyProvider needs at least one key")
        self._keys = list(keys)
        self._rejected: dict[str, KeyRejected] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        prints = ", ".join(key_fingerprint(key) for key in self._keys)
        return f"StaticKeyProvider(fingerprints=[{prints}])"

    def call(self, provider: str, model: str, request: Callable[[str], T]) -> T:
        """Return ``request(key)`` for the first key that is neither rate-limited nor rejected.

        Raises:
            RateLimited: When every usable key was rate-limited; the one due back soonest.
            KeyRejected: When every key has been rejected.
            ProviderError: Whatever else ``request`` raised, at once, without trying other keys.
        """
        failures: list[ProviderError] = []
        for key in self._usable_keys():
            try:
                return request(key)
            except RateLimited as error:
                failures.append(error)
            except KeyRejected as error:
                with self._lock:
                    self._rejected[key] = error
                failures.append(error)
            logger.info(
                "%s/%s: key %s failed (%s), trying the next one",
                provider,
                model,
                key_fingerprint(key),
                type(failures[-1]).__name__,
            )
        if not failures:
            with self._lock:
                failures = list(self._rejected.values())
        raise _most_hopeful(failures)

    def _usable_keys(self) -> list[str]:
        with self._lock:
            return [key for key in self._keys if key not in self._rejected]


def _most_hopeful(failures: list[ProviderError]) -> ProviderError:
    """Pick the error to raise when no key worked: a rate limit (it ends) over a rejection."""
    limited = [error for error in failures if isinstance(error, RateLimited)]
    if limited:
        return min(limited, key=lambda error: float("inf") if error.retry_after_s is None else error.retry_after_s)
    return failures[-1]
