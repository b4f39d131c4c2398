"""The embedded Redis: started on demand, shared by separate processes, no server needed."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.servers import REPO_ROOT
from workers.embedded_redis import ensure_embedded_redis, stop_embedded_redis


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # A short path: Unix socket paths are limited to about 100 characters.
    with tempfile.TemporaryDirectory(prefix="fq-", dir="/tmp") as tmp:
        yield Path(tmp)
        stop_embedded_redis(Path(tmp))


def test_a_second_process_finds_and_shares_the_embedded_server(data_dir: Path) -> None:
    url = ensure_embedded_redis(data_dir)
    redis.Redis.from_url(url).set("written-by", "first process")

    other = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; from workers.embedded_redis import "
         "ensure_embedded_redis as e; import redis; u = e(Path(sys.argv[1])); "
         "print(u, redis.Redis.from_url(u).get('written-by').decode())", str(data_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )

    assert other.stdout.split() == [url, "first", "process"]
    assert url == f"unix://{data_dir / 'redis.sock'}"


def test_the_embedded_server_keeps_jobs_across_a_restart(data_dir: Path) -> None:
    redis.Redis.from_url(ensure_embedded_redis(data_dir)).set("job", "queued")
    assert stop_embedded_redis(data_dir)

    assert redis.Redis.from_url(ensure_embedded_redis(data_dir)).get("job") == b"queued"


def test_stopping_when_none_runs_says_so(data_dir: Path) -> None:
    assert not stop_embedded_redis(data_dir)
