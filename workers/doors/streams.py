"""Reading a Redis Stream through a consumer group, so that nothing read is lost.

Used by the intake (the front door: the operator's stream and every tenant's) and the webhook
sender: each reads what a dead member of its group had read but not acknowledged (after
``claim_idle_ms``), then what is new.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis

Entry = tuple[Any, dict[Any, Any]]


def bytes_client(client: redis.Redis) -> redis.Redis:
    """A client of the same server whose replies are bytes, for reading what other systems wrote."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def ensure_group(client: redis.Redis, stream: str, group: str, *, start_id: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) unless it exists."""
    try:
        client.xgroup_create(stream, group, id=start_id, mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def read_group(
    client: redis.Redis, stream: str, group: str, consumer: str, *,
    claim_idle_ms: int, count: int, block_ms: int, start_id: str, claim_count: int | None = None,
) -> list[Entry]:
    """``read_groups`` of one stream."""
    return [entry for _, entry in read_groups(client, [stream], group, consumer, claim_idle_ms=claim_idle_ms,
                                              count=count, block_ms=block_ms, start_id=start_id,
                                              claim_count=claim_count)]


def read_groups(
    client: redis.Redis, streams: Sequence[str], group: str, consumer: str, *,
    claim_idle_ms: int, count: int, block_ms: int, start_id: str, claim_count: int | None = None,
) -> list[tuple[str, Entry]]:
    """Up to ``claim_count`` entries of each stream left pending by a silent consumer, then new ones
    (up to ``count`` of each), each with its stream.

    New entries are waited for (up to ``block_ms``) only when none were claimed. A group that is
    gone (Redis came back without it) is made again from ``start_id``, as at first.
    """
    try:
        return _read_groups(client, streams, group, consumer, claim_idle_ms=claim_idle_ms, count=count,
                            block_ms=block_ms, claim_count=claim_count or count)
    except redis.ResponseError as error:
        if "NOGROUP" not in str(error):
            raise
        for stream in streams:
            ensure_group(client, stream, group, start_id=start_id)
        return []


def _read_groups(
    client: redis.Redis, streams: Sequence[str], group: str, consumer: str, *,
    claim_idle_ms: int, count: int, block_ms: int, claim_count: int,
) -> list[tuple[str, Entry]]:
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.xautoclaim(stream, group, consumer, claim_idle_ms, count=claim_count)
    # XAUTOCLAIM answers [next cursor, claimed entries(, ids of deleted entries on Redis 7)].
    claimed = [(stream, entry) for stream, reply in zip(streams, pipe.execute(), strict=True) for entry in reply[1]]
    fresh = cast("list[tuple[Any, list[Entry]]]", client.xreadgroup(
        group, consumer, dict.fromkeys(streams, ">"), count=count, block=None if claimed else block_ms) or [])
    return claimed + [(_text(stream), entry) for stream, entries in fresh for entry in entries]


def _text(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name
