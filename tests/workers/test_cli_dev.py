"""``framequeue dev`` brings the whole Procfile up on an embedded Redis, runs a job through it, and takes it all down.

Nothing is set but storage and the data directory: no REDIS_URL, no API token, no webhook secret.
The token the banner prints opens the API; a job put on the intake stream with plain Redis runs
through the workers to its result; SIGINT then ends every process dev started (checked with
psutil, grandchildren included) and the embedded Redis it started.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis
import requests

from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.servers import REPO_ROOT, free_port, wait_for

#: The lines of the repository's Procfile: dev must start each of them.
SERVICES = ("gpu_worker", "cpu_worker", "api", "intake", "webhooks", "reconciler")


@pytest.fixture
def dev_home(tmp_path: Path, tiny_profile) -> Path:  # type: ignore[no-untyped-def]
    """A data directory of the test's own (its embedded Redis lives there), with the session's tiny models."""
    home = tmp_path / "fq"
    home.mkdir()
    (home / "models").symlink_to(Path(tiny_profile.image_model).parents[2])
    return home


def test_dev_runs_every_procfile_service_and_sigint_stops_them_all(
    settings: Settings, dev_home: Path, tmp_path: Path
) -> None:
    env = settings_env(settings.model_copy(update={"data_dir": dev_home}))
    for unset in ("REDIS_URL", "FRAMEQUEUE_REDIS_URL", "FRAMEQUEUE_API_TOKEN", "FRAMEQUEUE_WEBHOOK_SECRET"):
        env.pop(unset, None)
    env["PYTHONPATH"] = str(REPO_ROOT)  # the services run this checkout's code, as the test does
    port = free_port()
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        dev = subprocess.Popen([sys.executable, "-m", "workers.cli", "dev", "--port", str(port)], env=env,
                               cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        banner = wait_for(lambda: all(f"{name} started" in (text := log_path.read_text()) for name in SERVICES)
                          and text, 120, "every service to start")
        token = re.search(r"FRAMEQUEUE_API_TOKEN=(\S+)", banner).group(1)  # type: ignore[union-attr]
        assert re.search(r"FRAMEQUEUE_WEBHOOK_SECRET=whsec_\S+", banner)
        assert f"dashboard: http://127.0.0.1:{port}/dashboard" in banner
        socket_path = dev_home / "redis.sock"
        assert f"redis-cli -s {socket_path}" in banner
        secret = re.search(r"FRAMEQUEUE_WEBHOOK_SECRET=(\S+)", banner).group(1)  # type: ignore[union-attr]

        api = f"http://127.0.0.1:{port}/v1"
        wait_for(lambda: answers(f"{api}/jobs", token), 180, "the API to answer with the printed token")
        assert requests.get(f"{api}/jobs", timeout=10).status_code == 401
        client = redis.Redis(unix_socket_path=str(socket_path), decode_responses=True)
        entry_id = client.xadd("framequeue:intake", {"job": json.dumps(
            {"schema_version": 1, "prompt": "a heron at dawn", "kind": "image", "width": 64, "height": 64})})
        receipt = wait_for(lambda: client.hgetall(f"framequeue:intake:receipt:{entry_id}"), 120, "the receipt")
        assert receipt["status"] == "accepted", receipt
        job = wait_for(lambda: finished(f"{api}/jobs/{receipt['job_id']}", token), 300, "the job to finish",
                       interval_s=0.5)
        assert job["state"] == "succeeded", job

        family = [dev, *psutil.Process(dev.pid).children(recursive=True)]
        assert len(family) > 2 * len(SERVICES)  # honcho's reader and the shell or service for each line
        dev.send_signal(signal.SIGINT)
        assert dev.wait(120) == 130
        wait_for(lambda: not [p for p in family[1:] if running(p)], 60, "every process dev started to end")
        assert not socket_path.exists() or not redis_answers(socket_path)
        output = log_path.read_text()
        assert output.count(token) == output.count(secret) == 1, "a secret was printed past the banner"
    finally:
        if dev.poll() is None:
            dev.kill()
        print(log_path.read_text(errors="replace")[-5000:])


def answers(url: str, token: str) -> bool:
    try:
        return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    except requests.ConnectionError:
        return False


def finished(url: str, token: str) -> dict | None:  # type: ignore[type-arg]
    job = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    return job if job.get("state") in ("succeeded", "failed", "blocked", "cancelled") else None


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def redis_answers(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False
