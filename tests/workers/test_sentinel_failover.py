"""Redis you can lose: with a ``redis+sentinel://`` URL, jobs carry on through a failover.

A master, one replica and three sentinels run from the same redis-server binary; the master is
SIGKILLed mid-run and every job still finishes, once.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from queue_config.jobs import JobKind, JobSpec
from tests.conftest import settings_env
from tests.servers import free_port, wait_for, worker_and_reconciler
from tests.workers.test_reconciler import terminal_events
from workers.broker import build_broker
from workers.embedded_redis import redis_server_executable
from workers.jobs.record import TERMINAL_STATES, JobStatusStore
from workers.jobs.submit import submit_job
from workers.redis_connection import redis_client

#: The name the sentinels know the master by.
SERVICE = "framequeue"
#: How long the sentinels wait before calling a silent master down, and before retrying a failover.
DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS = 1000, 3000


class SentinelledRedis:
    """A master, a replica and three sentinels (quorum 2) on free loopback ports under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.url = f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in self.sentinel_ports)}/{SERVICE}/0"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self._server("master", "--port", str(self.master_port))
        self._server("replica", "--port", str(self.replica_port), "--replicaof", "127.0.0.1", str(self.master_port))
        for number, port in enumerate(self.sentinel_ports):
            conf = self.workdir / f"sentinel-{number}.conf"  # a sentinel rewrites its own file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            )
            self._spawn(f"sentinel-{number}", [redis_server_executable(), str(conf), "--sentinel"])
        wait_for(self._ready, 60, "the sentinels to see the replica and each other")

    def master_address(self) -> tuple[str, int] | None:
        """Where the sentinels that answer say the master is (None while no two of them agree)."""
        answers = []
        for port in self.sentinel_ports:
            try:
                host, master_port = self._sentinel(port).sentinel_get_master_addr_by_name(SERVICE)
                answers.append((host, int(master_port)))
            except redis.RedisError:
                continue
        agreed = [answer for answer in answers if answers.count(answer) >= 2]
        return agreed[0] if agreed else None

    def kill_master(self) -> None:
        self.processes["master"].send_signal(signal.SIGKILL)
        self.processes["master"].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(10)

    def _server(self, name: str, *args: str) -> None:
        data = self.workdir / name
        data.mkdir()
        self._spawn(name, [redis_server_executable(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                           "--dir", str(data), *args])

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        self.processes[name] = subprocess.Popen([*command, "--logfile", str(log)], stdout=subprocess.DEVNULL)

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)

    def _ready(self) -> bool:
        try:
            for port in self.sentinel_ports:
                master = self._sentinel(port).sentinel_master(SERVICE)
                replicas = self._sentinel(port).sentinel_slaves(SERVICE)
                if int(master["num-other-sentinels"]) < 2 or not any(r["master-link-status"] == "ok" for r in replicas):
                    return False
            return True
        except redis.RedisError:
            return False


@pytest.fixture
def sentinelled_redis(tmp_path: Path) -> Iterator[SentinelledRedis]:
    servers = SentinelledRedis(tmp_path)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def unless_failing_over(condition: Callable[[], bool]) -> Callable[[], bool]:
    """``condition``, taken as not met while Redis cannot be reached (the test's client follows the failover too)."""
    def checked() -> bool:
        try:
            return condition()
        except (redis.ConnectionError, redis.TimeoutError):
            return False
    return checked


def test_every_job_finishes_once_when_the_master_dies_and_a_replica_takes_over(
    settings, tiny_profile, artifacts_dir: Path, sentinelled_redis: SentinelledRedis
) -> None:
    namespace = f"failover-{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(update={"redis_url": sentinelled_redis.url, "namespace": namespace})
    status = JobStatusStore(redis_client(own.redis_url, decode_responses=True), own.namespace)
    broker = build_broker(own)
    specs = [JobSpec(prompt=f"a lighthouse in fog {n}", kind=JobKind.video, width=64, height=64, num_frames=8, fps=8,
                     enhance_prompt=False, seed=n) for n in range(12)]
    finished = unless_failing_over(lambda: all(status.state_of(s.id) in TERMINAL_STATES for s in specs))
    with worker_and_reconciler(settings_env(own), artifacts_dir, "sentinel-failover"):
        for spec in specs:
            submit_job(broker, status, spec)
        # Replication is asynchronous: make sure the replica has every acceptance before the master can die.
        assert status.client.wait(1, 10_000) == 1
        wait_for(lambda: sum(status.state_of(s.id) in TERMINAL_STATES for s in specs) >= 2, 120, "the first jobs")
        old_master = sentinelled_redis.master_address()
        sentinelled_redis.kill_master()
        killed_at = time.monotonic()
        wait_for(lambda: sentinelled_redis.master_address() not in (None, old_master), 60,
                 "the sentinels to promote the replica")
        promoted_at = time.monotonic()
        wait_for(finished, 120, "every job to finish after the failover")
        repairs = sum(fields.get("event") == "repaired" for _, fields in status.client.xrange(status.events_key))
        print(f"failover: {len(specs)} jobs; replica promoted {promoted_at - killed_at:.1f} s after the kill; "
              f"all finished {time.monotonic() - killed_at:.1f} s after it; {repairs} repaired by the reconciler")

    assert sentinelled_redis.master_address() == ("127.0.0.1", sentinelled_redis.replica_port)
    for spec in specs:
        assert status.state_of(spec.id) == "succeeded", status.get(spec.id)
        assert terminal_events(status, spec.id) == ["succeeded"]
