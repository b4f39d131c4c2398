"""Session-wide real servers and worker processes."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from queue_config.settings import Settings
from tests.servers import RestartableRedis, WorkerProcess, s3_server
from workers.embedded_redis import private_redis_server
from workers.jobs.record import JobStatusStore

os.environ.setdefault("HF_HUB_OFFLINE", "1")
#: Where tests keep what a person would want to look at afterwards (logs, outputs).
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def torch_threads_kept() -> Iterator[None]:
    """Each test starts with torch's default thread count. A door's prompt screen sets one thread for the
    process, and where a test's in-process API screens from a thread of its own, the setting reaches only
    threads started later: a model run on a new thread then sums in another order than on this one."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with private_redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    os.environ.update(AWS_ACCESS_KEY_ID="test-access-key", AWS_SECRET_ACCESS_KEY="test-secret-key")
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("framequeue-data")


@pytest.fixture(scope="session")
def settings(redis_url: str, s3_endpoint: str, data_dir: Path) -> Settings:
    """Settings of the session's workers: real Redis, real S3 server, tiny models."""
    return Settings(
        redis_url=redis_url, s3_endpoint_url=s3_endpoint, s3_bucket="framequeue-test", data_dir=data_dir,
        model_profile="tiny", device="cpu", heartbeat_timeout_ms=3000, maintenance_chance=1_000_000,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    env = dict(os.environ)
    env.update(
        REDIS_URL=settings.redis_url, FRAMEQUEUE_S3_ENDPOINT_URL=settings.s3_endpoint_url,
        FRAMEQUEUE_S3_BUCKET=settings.s3_bucket, FRAMEQUEUE_DATA_DIR=str(settings.data_dir),
        FRAMEQUEUE_MODEL_PROFILE=settings.model_profile, FRAMEQUEUE_DEVICE=settings.device,
        FRAMEQUEUE_NAMESPACE=settings.namespace, FRAMEQUEUE_HEARTBEAT_TIMEOUT_MS=str(settings.heartbeat_timeout_ms),
        FRAMEQUEUE_MAINTENANCE_CHANCE=str(settings.maintenance_chance), HF_HUB_OFFLINE="1",
        dramatiq_restart_delay="1000",
    )
    return env


@pytest.fixture(scope="session")
def tiny_profile(settings: Settings):  # type: ignore[no-untyped-def]
    """Build the tiny models once, before any worker needs them."""
    from pipelines import resolve_profile

    return resolve_profile("tiny", settings.data_dir / "models")


@pytest.fixture(scope="session")
def workers(settings: Settings, tiny_profile, artifacts_dir: Path) -> Iterator[WorkerProcess]:  # type: ignore[no-untyped-def]
    """One worker command for every stage: 1 process, 2 threads; and the dispatcher that moves tenants'
    jobs onto the queues (on a thread here; a process of its own in a deployment)."""
    from workers.jobs.fair_share import FairShareDispatcher, tenants_may_start, weights_from_tenants

    worker = WorkerProcess(settings_env(settings), artifacts_dir / "worker.log", "--processes", "1", "--threads", "2")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    status = JobStatusStore(client, settings.namespace)
    dispatcher = FairShareDispatcher(status, weights_from_tenants(client, settings.namespace),
                                     window=settings.fair_share_window,
                                     may_start=tenants_may_start(client, settings.namespace, status.active_key))
    stop = threading.Event()
    dispatching = threading.Thread(target=dispatcher.run_forever, args=(stop,), daemon=True, name="dispatcher")
    dispatching.start()
    yield worker
    stop.set()
    worker.stop()


@pytest.fixture(scope="session")
def status(settings: Settings) -> JobStatusStore:
    return JobStatusStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), settings.namespace)


@pytest.fixture(scope="session")
def broker(settings: Settings):  # type: ignore[no-untyped-def]
    from workers.broker import build_broker

    return build_broker(settings)


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A redis-server of the test's own, with an fsync-always AOF, that the test may kill and start again."""
    server = RestartableRedis(tmp_path)
    server.start()
    yield server
    server.stop()
