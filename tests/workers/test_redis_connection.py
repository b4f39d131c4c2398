"""One factory for Redis clients: redis-py's URLs as they were, and ``redis+sentinel://``."""

from __future__ import annotations

import pytest
import redis.sentinel

from workers.redis_connection import SentinelUrl, parse_sentinel_url, redis_client


def test_a_sentinel_url_names_its_sentinels_service_database_and_passwords() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]:26381/jobs/2"
                                "?sentinel_password=watch")

    assert parsed == SentinelUrl(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381)), service_name="jobs", db=2,
        password="s@cret", sentinel_password="watch",
    )


def test_a_sentinel_url_without_a_service_name_or_with_an_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match="service_name"):
        parse_sentinel_url("redis+sentinel://10.0.0.1:26379")
    with pytest.raises(ValueError, match="sentinel_password"):
        parse_sentinel_url("redis+sentinel://10.0.0.1:26379/jobs?ssl=true")


def test_a_sentinel_url_gives_a_client_that_asks_the_sentinels_for_the_master() -> None:
    client = redis_client("redis+sentinel://127.0.0.1:1,127.0.0.1:2/jobs/3", decode_responses=True)

    assert isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool)
    assert client.connection_pool.service_name == "jobs"
    assert client.connection_pool.connection_kwargs["db"] == 3
    sentinels = client.connection_pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in sentinels] == [("127.0.0.1", 1), ("127.0.0.1", 2)]


def test_a_plain_url_gives_the_client_redis_py_would(redis_url: str) -> None:
    client = redis_client(redis_url, decode_responses=True)

    client.set("redis-connection-test", "plain")
    assert client.get("redis-connection-test") == "plain"
