"""Each tenant's Redis ACL user: it may add to its own intake stream and read its own receipts, nothing else.

The user ``{namespace}-tenant-{id}`` authenticates with the tenant's API token (one secret per
tenant), which Redis is given as its SHA-256 (``#<hash>``), so the token itself never travels in an
ACL command. Its rules start from nothing (``reset``: no commands, no keys, no channels) and add
``XADD`` on the tenant's stream (a write-only key pattern, ``%W~``), ``HGET``/``HMGET``/``HGETALL``/
``EXISTS``/``TTL`` on its receipts (read-only, ``%R~``), and ``PING``, ``AUTH`` and ``HELLO``.
It cannot read its own stream, list keys, or touch a job, a queue or the server's settings.
Read-only and write-only key patterns came with Redis 7: an older Redis, or one that refuses ACL
commands (many managed ones), is reported in one line by ``RedisUsersRefused``.
"""

from __future__ import annotations

import re
from typing import Final

import redis

from workers.tenants.errors import RedisUsersRefused
from workers.tenants.names import intake_stream, receipt_prefix, redis_user

#: Everything a tenant's user may run.
COMMANDS: Final = ("xadd", "hget", "hmget", "hgetall", "exists", "ttl", "ping", "auth", "hello")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def glob_escaped(text: str) -> str:
    """``text`` as a Redis key pattern that matches it alone (a namespace may hold ``*`` or ``?``)."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


class RedisUsers:
    """Makes, changes and cuts off tenants' ACL users on the Redis ``client`` talks to."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client, self.namespace = client, namespace

    def rules(self, tenant_id: str, hashed_token: str, *, enabled: bool) -> list[str]:
        """The ACL SETUSER rules of the tenant's user, from nothing."""
        stream = glob_escaped(intake_stream(self.namespace, tenant_id))
        receipts = glob_escaped(receipt_prefix(self.namespace, tenant_id)) + "*"
        return ["reset", "on" if enabled else "off", f"#{hashed_token}", "resetchannels", "-@all",
                *(f"+{command}" for command in COMMANDS), f"%W~{stream}", f"%R~{receipts}"]

    def put(self, tenant_id: str, hashed_token: str, *, enabled: bool) -> None:
        """Make the tenant's user, or set it anew (one command: never a moment with other rules).

        Raises:
            RedisUsersRefused: This Redis has no ACL commands or no read-only key patterns.
        """
        try:
            self.client.execute_command("ACL", "SETUSER", redis_user(self.namespace, tenant_id),
                                        *self.rules(tenant_id, hashed_token, enabled=enabled))
        except redis.ResponseError as error:
            reason = str(error).replace(hashed_token, "<token hash>")
            raise RedisUsersRefused(f"this Redis will not make the tenant's Redis user ({reason}); tenant streams "
                                    "need Redis 7 or newer that allows ACL SETUSER") from None

    def disconnect(self, tenant_id: str) -> int:
        """Close every connection signed in as the tenant's user; how many. None open (or no such user): 0."""
        try:
            return int(self.client.execute_command("CLIENT", "KILL", "USER", redis_user(self.namespace, tenant_id)))
        except redis.ResponseError as error:
            if "no such user" in str(error).lower():
                return 0
            raise
