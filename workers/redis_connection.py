"""Redis clients from a URL, Sentinel included: the one place framequeue connects to Redis.

``REDIS_URL`` names either one server, in redis-py's own schemes (``redis://``, ``rediss://``,
``unix://``), or a master that Redis Sentinel watches::

    redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2],...]/service_name[/db][?sentinel_password=...]

e.g. ``redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/framequeue/0``. This is the
form of the ``Redis-Sentinel-Url`` package (also Prefect's and RedisVL's): sentinels are listed
comma-separated (port 26379 when left out), the path is the service name that the sentinels'
``sentinel monitor`` lines give and an optional database number. The password is the master's
(and its replicas'); ``sentinel_password`` is for sentinels that have a ``requirepass`` of their own.

A sentinel client asks the sentinels where the master is for each new connection, and drops its
connections when the answer changes, so after a failover a failed command's retry (or the next
command) reaches the promoted replica: a broker or record store built here follows a failover
without a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as async_sentinel
import redis.sentinel

#: The scheme of a URL that names a Sentinel-watched master.
SENTINEL_SCHEME = "redis+sentinel"
#: Port of a sentinel listed without one (Redis Sentinel's default).
DEFAULT_SENTINEL_PORT = 26379
#: Connect and read timeout (seconds) of the questions put to the sentinels: a dead sentinel costs
#: at most this before the next one is asked.
SENTINEL_SOCKET_TIMEOUT_S = 2.0

_MEMBER = re.compile(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?")


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(f"{SENTINEL_SCHEME}://")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Split a ``redis+sentinel://`` URL into its parts.

    Raises:
      ValueError: no sentinel, no service name, a database that is not a number, or an unknown option.
    """
    # urlsplit's .hostname and .port cannot take a comma-separated member list: parse the netloc here.
    parts = urlsplit(url)
    userinfo, _, members = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = tuple(_sentinel_address(member) for member in members.split(",") if member)
    service_name, _, db = parts.path.strip("/").partition("/")
    options = parse_qs(parts.query)
    if set(options) - {"sentinel_password"}:
        raise ValueError(f"a {SENTINEL_SCHEME} URL takes one option, sentinel_password; got {sorted(options)}")
    if not sentinels or not service_name or not (db or "0").isdigit():
        raise ValueError(f"a {SENTINEL_SCHEME} URL needs host[:port][,host[:port]...]/service_name[/db]")
    return SentinelUrl(
        sentinels=sentinels, service_name=unquote(service_name), db=int(db or 0),
        username=unquote(username) or None, password=unquote(password) or None,
        sentinel_password=options.get("sentinel_password", [None])[-1],
    )


def redis_client(url: str, *, decode_responses: bool = False, **options: Any) -> redis.Redis:
    """A client of the Redis that ``url`` names; ``options`` are redis-py's connection keywords."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, decode_responses=decode_responses, **options)
    parsed = parse_sentinel_url(url)
    sentinel = redis.sentinel.Sentinel(list(parsed.sentinels), sentinel_kwargs=_sentinel_kwargs(parsed))
    return sentinel.master_for(
        parsed.service_name, db=parsed.db, username=parsed.username,
        password=parsed.password, decode_responses=decode_responses, **options,
    )


def async_redis_client(url: str, *, decode_responses: bool = False, **options: Any) -> aioredis.Redis:
    """``redis_client`` for asyncio code: the same URLs, an ``redis.asyncio`` client."""
    if not is_sentinel_url(url):
        return aioredis.Redis.from_url(url, decode_responses=decode_responses, **options)
    parsed = parse_sentinel_url(url)
    sentinel = async_sentinel.Sentinel(list(parsed.sentinels), sentinel_kwargs=_sentinel_kwargs(parsed))
    return sentinel.master_for(
        parsed.service_name, redis_class=_AsyncSentinelMaster, db=parsed.db, username=parsed.username,
        password=parsed.password, decode_responses=decode_responses, **options,
    )


def _sentinel_address(member: str) -> tuple[str, int]:
    match = _MEMBER.fullmatch(member)
    if match is None:
        raise ValueError(f"not a sentinel address: {member!r}")
    return match["ipv6"] or match["host"], int(match["port"] or DEFAULT_SENTINEL_PORT)


def _sentinel_kwargs(parsed: SentinelUrl) -> dict[str, Any]:
    return {"socket_timeout": SENTINEL_SOCKET_TIMEOUT_S, "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT_S,
            "password": parsed.sentinel_password}


class _AsyncSentinelMaster(aioredis.Redis):
    """The master's asyncio client, which also closes its connections to the sentinels when closed.

    (A sync client's are closed when it is garbage collected; an asyncio one's would warn.)
    """

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await self.connection_pool.sentinel_manager.aclose()  # type: ignore[attr-defined]
