"""The simulator's key ledger: which keys exist, their quotas, and what each one got.

Admission follows what real providers do, in this order: an unknown or revoked key gets
401, a pending burst of server errors gets 5xx, a key over its requests-per-minute quota
(a sliding 60 s window) gets 429 with the seconds until its oldest request leaves the
window. Keys are stored as given (the simulator must recognise them) but reported only by
fingerprint.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.remote.keys import key_fingerprint

#: Length of the quota window, in seconds.
WINDOW_S = 60.0


@dataclass(frozen=True)
class KeyConfig:
    """How the simulator treats one key.

    Attributes:
        requests_per_minute: Generation requests accepted per sliding 60 s window.
        revoked: Start revoked (every request gets 401 until it is restored).
    """

    requests_per_minute: int = 60
    revoked: bool = False


@dataclass(frozen=True)
class Verdict:
    """The ledger's answer to one request: ``status`` 200 means go ahead."""

    status: int
    fingerprint: str
    retry_after_s: int | None = None


@dataclass
class KeyStats:
    """What one key (or one unknown key) got, for :meth:`KeyLedger.stats`."""

    accepted: int = 0
    rate_limited: int = 0
    unauthorized: int = 0
    server_errors: int = 0
    accepted_at: list[float] = field(default_factory=list)


class KeyLedger:
    """Admits or refuses requests per key; thread-safe.

    Parameters:
        keys: Each key and its configuration.
        clock: Monotonic seconds, for the quota window (a fake one in unit tests).
        wall_clock: Epoch seconds, for the accepted-request timestamps in stats.
    """

    def __init__(
        self,
        keys: dict[str, KeyConfig],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._configs = dict(keys)
        self._by_fingerprint = {key_fingerprint(key): key for key in keys}
        self._revoked = {key for key, config in keys.items() if config.revoked}
        self._windows: dict[str, deque[float]] = {key: deque() for key in keys}
        self._stats: dict[str, KeyStats] = {}
        self._faults_left = 0
        self._fault_status = 503
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()

    def admit(self, key: str | None, *, counted: bool = True) -> Verdict:
        """Decide one request made with ``key``; ``counted=False`` skips the quota (polls)."""
        fingerprint = key_fingerprint(key or "")
        with self._lock:
            stats = self._stats.setdefault(fingerprint, KeyStats())
            if key is None or key not in self._configs or key in self._revoked:
                stats.unauthorized += 1
                return Verdict(401, fingerprint)
            if self._faults_left > 0:
                self._faults_left -= 1
                stats.server_errors += 1
                return Verdict(self._fault_status, fingerprint)
            if counted:
                retry_after_s = self._take_slot(key)
                if retry_after_s is not None:
                    stats.rate_limited += 1
                    return Verdict(429, fingerprint, retry_after_s)
                stats.accepted += 1
                stats.accepted_at.append(self._wall_clock())
            return Verdict(200, fingerprint)

    def _take_slot(self, key: str) -> int | None:
        """Record a request in the key's window; return seconds to wait instead if it is full."""
        now = self._clock()
        window = self._windows[key]
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        if len(window) >= self._configs[key].requests_per_minute:
            return max(1, math.ceil(window[0] + WINDOW_S - now))
        window.append(now)
        return None

    def set_revoked(self, key_or_fingerprint: str, revoked: bool) -> bool:
        """Revoke or restore a key named by itself or its fingerprint; False if it is not known."""
        with self._lock:
            key = self._resolve(key_or_fingerprint)
            if key is None:
                return False
            (self._revoked.add if revoked else self._revoked.discard)(key)
            return True

    def start_fault_burst(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests from known keys with HTTP ``status`` (a 5xx)."""
        if not 500 <= status < 600:
            raise ValueError(f"a fault burst needs a 5xx status, got {status}")
        with self._lock:
            self._faults_left, self._fault_status = max(0, count), status

    def reset_quotas(self) -> None:
        """Empty every key's window, as if no request had been made in the last minute."""
        with self._lock:
            for window in self._windows.values():
                window.clear()

    def reset_stats(self) -> None:
        """Forget every count and timestamp."""
        with self._lock:
            self._stats.clear()

    def stats(self) -> dict[str, dict[str, object]]:
        """Per key fingerprint: accepted, rate_limited, unauthorized, server_errors, accepted_at."""
        with self._lock:
            return {
                fingerprint: {
                    "accepted": s.accepted,
                    "rate_limited": s.rate_limited,
                    "unauthorized": s.unauthorized,
                    "server_errors": s.server_errors,
                    "accepted_at": list(s.accepted_at),
                }
                for fingerprint, s in self._stats.items()
            }

    def _resolve(self, key_or_fingerprint: str) -> str | None:
        if key_or_fingerprint in self._configs:
            return key_or_fingerprint
        return self._by_fingerprint.get(key_or_fingerprint)
