"""Slots for webhook deliveries in flight, in all and per host: a slow receiver holds only its own.

The sender takes a slot before it claims a delivery and gives it back when the attempt is
over, so its thread pool never queues: a delivery is claimed (its lease starts) only when it
can start at once.
"""

from __future__ import annotations

import threading
from collections import Counter

#: Deliveries in flight at once, to all receivers together.
MAX_IN_FLIGHT = 16
#: Deliveries in flight at once to one host.
MAX_IN_FLIGHT_PER_HOST = 2


class HostSlots:
    """Counts deliveries in flight, in all and per host, under one lock."""

    def __init__(self, *, total: int = MAX_IN_FLIGHT, per_host: int = MAX_IN_FLIGHT_PER_HOST) -> None:
        self.total = total
        self.per_host = per_host
        self._in_flight: Counter[str] = Counter()
        self._changed = threading.Condition()

    def free(self) -> int:
        with self._changed:
            return self.total - self._in_flight.total()

    def take(self, host: str) -> bool:
        """Take a slot for a delivery to ``host``; False when all are taken, or all of that host's."""
        with self._changed:
            if self._in_flight.total() >= self.total or self._in_flight[host] >= self.per_host:
                return False
            self._in_flight[host] += 1
            return True

    def give_back(self, host: str) -> None:
        with self._changed:
            self._in_flight[host] -= 1
            if not self._in_flight[host]:
                del self._in_flight[host]
            self._changed.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no delivery is in flight; False if some still are after ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._in_flight, timeout_s)
