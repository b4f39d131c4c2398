"""Real servers for the tests: an S3-compatible server, a Redis that can be killed, framequeue worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from workers.embedded_redis import redis_server_executable

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3-compatible HTTP server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


class WorkerProcess:
    """``framequeue worker`` as a subprocess in its own process group (so it can be killed whole)."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed by stop() or kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", *args],
            env=env, cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL every process of the worker: no shutdown hooks, no acks, like a host dying."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        """SIGTERM to dramatiq's main process, which shuts its worker processes down cleanly."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class RestartableRedis:
    """A redis-server on a fixed port with an fsync-always AOF, that can be SIGKILLed and started again."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self._answers, 30, "redis-server to answer")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False


@contextmanager
def worker_and_reconciler(env: dict[str, str], artifacts_dir: Path, name: str) -> Iterator[WorkerProcess]:
    """A worker (2 threads) and a ``framequeue reconciler`` (repairs after 5 s still, a pass a second) on ``env``.

    Both are stopped on leaving; the reconciler must then exit cleanly.
    """
    env = {**env, "FRAMEQUEUE_RECONCILE_AFTER_S": "5", "FRAMEQUEUE_RECONCILE_INTERVAL_S": "1"}
    worker = WorkerProcess(env, artifacts_dir / f"worker-{name}.log", "--threads", "2")
    with open(artifacts_dir / f"reconciler-{name}.log", "wb") as log:
        reconciler = subprocess.Popen([sys.executable, "-m", "workers.cli", "reconciler"], env=env, cwd=REPO_ROOT,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            yield worker
        finally:
            worker.stop()
            reconciler.send_signal(signal.SIGTERM)
            reconciler.wait(30)
    assert reconciler.returncode == 0, f"the reconciler exited with {reconciler.returncode}"


@contextmanager
def stage_worker(broker: Any, runtime: Any, functions: Any, *, threads: int = 4) -> Iterator[None]:
    """An in-process dramatiq worker of ``threads`` running the stage ``functions`` on ``broker`` with
    ``runtime``, stopped (and the broker closed) on leaving."""
    import dramatiq

    from workers.stage_actor import declare_stage_actors

    declare_stage_actors(broker, functions, lambda: runtime, catalog=runtime.catalog)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        yield
    finally:
        worker.stop()
        broker.close()
