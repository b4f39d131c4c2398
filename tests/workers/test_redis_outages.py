"""Long-running services ride out a Redis restart: they pause, say so once, and carry on."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.api.test_jobs_api import TOKEN, api_server, client_of
from tests.conftest import settings_env
from tests.servers import REPO_ROOT, wait_for
from workers.outages import serve_through_outages


def test_a_loop_backs_off_through_an_outage_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    outcomes = iter([redis.ConnectionError("refused"), redis.TimeoutError("slow"), None, None])
    served, waits = [], []

    def serve_once() -> None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        served.append(True)

    with caplog.at_level(logging.WARNING):
        serve_through_outages(serve_once, should_stop=lambda: len(served) == 2,
                              logger=logging.getLogger("outage-test"), wait=waits.append)

    assert len(served) == 2 and waits == [0.25, 0.5]
    assert [r.getMessage().split(" (")[0].split(",")[0] for r in caplog.records] == [
        "Redis is unreachable", "Redis is reachable again"]


def test_a_bug_is_not_taken_for_an_outage() -> None:
    def serve_once() -> None:
        raise redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    with pytest.raises(redis.ResponseError):
        serve_through_outages(serve_once, should_stop=lambda: False, logger=logging.getLogger("outage-test"))


def test_the_intake_answers_again_after_redis_restarts(settings, restartable_redis, artifacts_dir: Path) -> None:
    own = settings.model_copy(update={"redis_url": restartable_redis.url, "namespace": "intake-restart"})
    client = redis.Redis.from_url(own.redis_url, decode_responses=True)
    log_path = artifacts_dir / "intake-redis-restart.log"

    def submit_and_read_receipt(prompt: str) -> str:
        entry_id = client.xadd(f"{own.namespace}:intake", {"job": json.dumps({"prompt": prompt, "kind": "image"})})
        key = f"{own.namespace}:intake:receipt:{entry_id}"
        return wait_for(lambda: client.hget(key, "status"), 60, f"a receipt for {entry_id}")

    with open(log_path, "wb") as log:
        intake = subprocess.Popen([sys.executable, "-m", "workers.cli", "intake"], env=settings_env(own),
                                  cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert submit_and_read_receipt("a kite over dunes") == "accepted"
            restartable_redis.kill()
            wait_for(lambda: "Redis is unreachable" in log_path.read_text(), 60, "the intake to notice")
            restartable_redis.start()

            assert submit_and_read_receipt("a kite over the sea") == "accepted"
            assert intake.poll() is None
        finally:
            intake.terminate()
            intake.wait(10)
    text = log_path.read_text()
    assert text.count("Redis is unreachable") == 1 and "Traceback" not in text


def test_the_api_answers_503_while_redis_is_down_and_serves_again_after(settings, restartable_redis) -> None:
    own = settings.model_copy(update={"redis_url": restartable_redis.url, "namespace": "api-restart",
                                      "api_token": TOKEN})
    body = {"prompt": "a lantern in fog", "kind": "image", "width": 64, "height": 64}
    with api_server(own) as url, client_of(url) as client:
        job_id = client.post("/v1/jobs", json=body).json()["job_id"]
        restartable_redis.kill()

        down = client.get(f"/v1/jobs/{job_id}")
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        assert "unreachable" in down.json()["detail"]

        restartable_redis.start()
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"
