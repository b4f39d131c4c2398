"""Real weights: workers load pulled hub models with the hub off, and a model they cannot load fails
its job with one line naming the model and what is missing, while the worker goes on serving.

Catalogs here name hub-style ids (``framequeue-test/...``); the hub is off (HF_HUB_OFFLINE=1), so a
model is there only when a pull from the fake hub (tests/fake_hub.py) put it there.
"""

from __future__ import annotations

import functools
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import cast

import pytest

from pipelines.model_pull import pull_model
from pipelines.text_to_image import TextToImage
from queue_config.catalog import CatalogModel, LocalBackend, load_catalog
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings, get_settings
from tests.api.test_ops import Namespace, cleaned_namespace
from tests.conftest import settings_env
from tests.fake_hub import COMMIT_A, REPO, FakeHub, tiny_hub
from tests.servers import REPO_ROOT, WorkerProcess
from tests.workers.test_job_flow import wait_until_finished
from workers.broker import FramequeueBroker
from workers.cli.main import main
from workers.errors import ModelUnavailable
from workers.jobs.submit import submit_job
from workers.runtime import Runtime, unloadable

PULLED = REPO
NEVER_PULLED = "framequeue-test/never-pulled"
#: Generous: a fresh worker process loads its tiny models cold.
JOB_TIMEOUT_S = 240


def write_catalog(path: pathlib.Path) -> pathlib.Path:
    """A catalog whose image models are a pulled hub model, one never pulled, and a tiny one."""
    path.write_text(f"""
[defaults]
prompt_enhance = "tiny-text"
image = "tiny-sd"
frames = "camera"

[models.tiny-text]
stage = "prompt_enhance"
backend = {{ kind = "local", pipeline = "AutoModelForCausalLM", model = "tiny:text" }}

[models.pulled-sd]
stage = "image"
backend = {{ kind = "local", pipeline = "AutoPipelineForText2Image", model = "{PULLED}" }}
params = {{ guidance = 0.0 }}

[models.not-pulled]
stage = "image"
backend = {{ kind = "local", pipeline = "AutoPipelineForText2Image", model = "{NEVER_PULLED}" }}

[models.tiny-sd]
stage = "image"
backend = {{ kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }}
params = {{ guidance = 0.0 }}

[models.camera]
stage = "frames"
backend = {{ kind = "local", pipeline = "camera" }}
capabilities = {{ input_image = true }}
""")
    return path


def missing_weights_message(models_dir: pathlib.Path) -> str:
    return (f"model 'not-pulled' could not be loaded: its weights, hub model {NEVER_PULLED}, are neither pulled "
            f"into {models_dir} nor in the hub cache, and the hub is off (HF_HUB_OFFLINE); fetch them with "
            "`framequeue models pull not-pulled` where the hub can be reached")


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory) -> FakeHub:
    return tiny_hub(tmp_path_factory.getbasetemp() / "tiny-cache")


@pytest.fixture
def env_settings(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings read from the environment a deployment sets: its catalog, models directory and data directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FRAMEQUEUE_MODEL_CATALOG", str(write_catalog(tmp_path / "catalog.toml")))
    monkeypatch.setenv("FRAMEQUEUE_MODELS_DIR", str(tmp_path / "pulled"))
    monkeypatch.setenv("FRAMEQUEUE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FRAMEQUEUE_DEVICE", "cpu")
    get_settings.cache_clear()  # the CLI reads the process's settings, which an earlier test may have read
    yield Settings()
    get_settings.cache_clear()


def test_a_worker_loads_a_pulled_hub_model_with_the_hub_off(hub: FakeHub, env_settings: Settings) -> None:
    pull_model(PULLED, env_settings.pulled_models_dir, resolve=hub.resolve, download=hub.download)
    runtime = Runtime(env_settings)

    model = runtime.model("pulled-sd")

    assert isinstance(model, TextToImage)
    [image] = model(["a lighthouse"], [1], width=32, height=32, steps=1, guidance_scale=0.0).images
    assert image.size == (32, 32)
    assert runtime.model_revision("pulled-sd") == COMMIT_A


def test_a_model_neither_pulled_nor_cached_is_unavailable_with_the_command_that_fetches_it(
        env_settings: Settings) -> None:
    with pytest.raises(ModelUnavailable) as raised:
        Runtime(env_settings).model("not-pulled")

    assert str(raised.value) == missing_weights_message(env_settings.pulled_models_dir)


def test_a_pulled_model_that_will_not_load_and_a_missing_directory_are_named(tmp_path: pathlib.Path) -> None:
    def image_model(weights: str) -> CatalogModel:
        return CatalogModel(id="mine", stage="image",
                            backend=LocalBackend(kind="local", pipeline="AutoPipelineForText2Image", model=weights))

    (tmp_path / "framequeue-test--broken").mkdir()
    broken = unloadable(image_model("framequeue-test/broken"), OSError("no model_index.json"), tmp_path)
    missing = unloadable(image_model("/nowhere/weights"), OSError("not a directory"), tmp_path)

    assert broken == (f"model 'mine' could not be loaded from {tmp_path / 'framequeue-test--broken'} "
                      "(pulled framequeue-test/broken): OSError: no model_index.json")
    assert missing == "model 'mine' could not be loaded: its weights directory /nowhere/weights does not exist"


def test_models_pull_reports_each_model_and_skips_one_already_pulled(
        hub: FakeHub, env_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("workers.cli.models.pull_model",
                        functools.partial(pull_model, resolve=hub.resolve, download=hub.download))
    place = env_settings.pulled_models_dir / "framequeue-test--tiny-sd"

    assert main(["models", "pull", "pulled-sd", "tiny-sd", "camera"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert main(["models", "pull", "pulled-sd"]) == 0
    second = capsys.readouterr().out.splitlines()

    assert first[0] == f"pulled-sd: {PULLED}"
    assert first[1].startswith("pulled-sd: downloading ") and first[1].endswith(f", at {COMMIT_A[:12]}")
    assert first[2].startswith("pulled-sd: pulled ") and first[2].endswith(f"at {COMMIT_A[:12]} into {place}")
    assert first[3:] == ["tiny-sd: nothing to pull (tiny:image is built offline)",
                         "camera: nothing to pull (camera is a maker with no weights)"]
    assert second[1].startswith(f"pulled-sd: already pulled at {COMMIT_A[:12]} (") and len(hub.downloads) == 1


def test_models_pull_with_the_hub_off_and_nothing_pulled_fails_in_one_line(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FRAMEQUEUE_DATA_DIR": str(tmp_path / "data"),
           "FRAMEQUEUE_MODEL_CATALOG": str(write_catalog(tmp_path / "catalog.toml"))}
    result = subprocess.run([sys.executable, "-m", "workers.cli", "models", "pull", "not-pulled"], env=env,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"framequeue: not-pulled: cannot pull {NEVER_PULLED}: the hub is off "
                                          "(HF_HUB_OFFLINE is set); pull where the hub can be reached"]
    assert not (tmp_path / "data" / "models" / "pulled" / "framequeue-test--never-pulled").exists()


@pytest.fixture
def ns(settings: Settings) -> Iterator[Namespace]:
    yield from cleaned_namespace(settings, "weights")


@pytest.fixture
def weights_worker(ns: Namespace, tiny_profile, tmp_path: pathlib.Path,  # type: ignore[no-untyped-def]
                   artifacts_dir: pathlib.Path) -> Iterator[tuple[WorkerProcess, pathlib.Path]]:
    """One worker process on the catalog above, with an empty models directory."""
    catalog = write_catalog(tmp_path / "catalog.toml")
    env = {**settings_env(ns.settings), "FRAMEQUEUE_MODEL_CATALOG": str(catalog),
           "FRAMEQUEUE_MODELS_DIR": str(tmp_path / "pulled")}
    worker = WorkerProcess(env, artifacts_dir / "worker-weights.log", "--processes", "1", "--threads", "2")
    yield worker, tmp_path
    worker.stop()


def test_a_job_on_a_model_without_weights_fails_in_one_line_and_the_worker_serves_the_next(
        ns: Namespace, weights_worker: tuple[WorkerProcess, pathlib.Path]) -> None:
    worker, root = weights_worker
    catalog = load_catalog(root / "catalog.toml")
    missing = JobSpec(prompt="a lighthouse at dusk", kind=JobKind.image, width=64, height=64, enhance_prompt=False,
                      schema_version=2, models={"image": "not-pulled"})
    loadable = JobSpec(prompt="a harbour at dawn", kind=JobKind.image, width=64, height=64, enhance_prompt=False,
                       schema_version=2, models={"image": "tiny-sd"})

    broker = cast(FramequeueBroker, ns.broker)  # built by build_broker

    submit_job(broker, ns.status, missing, catalog=catalog)
    failed = wait_until_finished(ns.status, missing.id, JOB_TIMEOUT_S)
    submit_job(broker, ns.status, loadable, catalog=catalog)
    served = wait_until_finished(ns.status, loadable.id, JOB_TIMEOUT_S)

    assert failed.state == "failed" and failed.attempts["image"] == 1, worker.log_text()[-3000:]
    assert failed.error == "ModelUnavailable: " + missing_weights_message(root / "pulled")
    assert "Traceback" not in failed.error and 'File "' not in failed.error
    assert failed.traceback == ""  # a foreseen failure is its one-line reason, in every field of the record
    assert served.state == "succeeded", served.error
    assert worker.process.poll() is None
