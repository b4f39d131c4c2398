"""Riding out a Redis outage in a long-running loop: back off, say so once, carry on.

The intake, the webhook sender and the reconciler each serve in a loop; a Redis restart or
failover must cost them a pause, not the process. Workers need none of this: dramatiq's
consumer threads restart themselves and retry their acks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

#: First wait after a failed step; it doubles while Redis stays unreachable.
MIN_BACKOFF_S = 0.25
#: Longest wait between two tries.
MAX_BACKOFF_S = 10.0
#: What counts as Redis being unreachable (rather than a bug to surface).
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError)


def serve_through_outages(
    serve_once: Callable[[], object],
    *,
    should_stop: Callable[[], bool],
    logger: logging.Logger,
    wait: Callable[[float], object] = time.sleep,
) -> None:
    """Call ``serve_once`` until ``should_stop()``; while Redis is unreachable, back off and log once.

    ``wait`` sleeps between tries (pass an event's ``wait`` to stop promptly).
    """
    backoff_s, down_since = MIN_BACKOFF_S, None
    while not should_stop():
        try:
            serve_once()
        except OUTAGE_ERRORS as error:
            if down_since is None:
                down_since = time.monotonic()
                logger.warning("Redis is unreachable (%s); retrying with backoff until it is back.", error)
            wait(backoff_s)
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            continue
        if down_since is not None:
            logger.warning("Redis is reachable again, after %.1f s.", time.monotonic() - down_since)
            backoff_s, down_since = MIN_BACKOFF_S, None
