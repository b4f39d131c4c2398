"""``framequeue models`` lists the catalog, and ``framequeue worker --stages/--models`` picks its queues from it.

The commands run as a user runs them, with nothing but the catalog settings: listing models and
choosing queues read no Redis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from queue_config.catalog import Catalog, load_catalog, shipped_catalog
from tests.queue_config.test_catalog import MINIMAL
from tests.servers import REPO_ROOT
from workers.cli.errors import CliError
from workers.cli.main import worker_queues
from workers.ops.queues import queue_names


def framequeue(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command with the tiny profile and no catalog or remote configuration of its own, unless ``env`` sets one."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("FRAMEQUEUE_MODEL_CATALOG", "FRAMEQUEUE_REMOTE_CONFIG", "FRAMEQUEUE_FRAMES_BACKEND")}
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env={**base, "FRAMEQUEUE_MODEL_PROFILE": "tiny", **env})


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by model id, each as its cells (split on runs of two or more spaces)."""
    lines = [line for line in stdout.splitlines() if line.strip() and not line.startswith("─")]
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[1:])}


def test_models_lists_every_model_of_the_profiles_catalog_with_its_stages_default_marked() -> None:
    run = framequeue("models")

    assert run.returncode == 0, run.stderr
    rows = table_rows(run.stdout)
    assert list(rows) == ["tiny-text", "tiny-sd", "tiny-sd-alt", "camera", "img2img", "tiny-svd"]
    assert {model for model, cells in rows.items() if cells[2] == "yes"} == {"tiny-text", "tiny-sd", "camera"}
    assert rows["tiny-sd"][1] == "image" and rows["tiny-sd"][-1] == "tiny-sd-alt"
    assert "local img2img on tiny-sd" in rows["img2img"]


def test_models_json_is_the_catalog_and_stage_keeps_one_stage() -> None:
    run = framequeue("models", "--json")
    image = framequeue("models", "--json", "--stage", "image")

    assert run.returncode == 0 and image.returncode == 0, run.stderr + image.stderr
    listed = json.loads(run.stdout)
    assert listed["defaults"] == {"prompt_enhance": "tiny-text", "image": "tiny-sd", "frames": "camera"}
    assert [model["id"] for model in listed["models"]] == list(load_catalog(shipped_catalog("tiny")).models)
    assert listed["models"][2]["backend"]["model"] == "tiny:image-alt"
    assert [model["id"] for model in json.loads(image.stdout)["models"]] == ["tiny-sd", "tiny-sd-alt"]


def test_models_reads_the_catalog_named_by_framequeue_model_catalog(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL)

    run = framequeue("models", "--json", FRAMEQUEUE_MODEL_CATALOG=str(path))

    assert run.returncode == 0, run.stderr
    assert [model["id"] for model in json.loads(run.stdout)["models"]] == ["text", "pic", "camera"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (MINIMAL.replace('image = "pic"', 'image = "ghost"'), "defaults.image: no model 'ghost' in the catalog"),
        (MINIMAL + "[models.broken\n", "not TOML"),
        (None, "No such file"),
    ],
    ids=["bad-reference", "not-toml", "missing-file"],
)
def test_a_bad_catalog_exits_78_with_one_line_naming_the_file(tmp_path: Path, text: str | None, named: str) -> None:
    path = tmp_path / "catalog.toml"
    if text is not None:
        path.write_text(text)

    run = framequeue("models", FRAMEQUEUE_MODEL_CATALOG=str(path))

    assert run.returncode == 78 and run.stdout == ""
    assert run.stderr.startswith(f"framequeue: bad model catalog: {path}: ") and run.stderr.count("\n") == 1
    assert named in run.stderr


# The queues a worker serves.

@pytest.fixture(scope="module")
def tiny() -> Catalog:
    return load_catalog(shipped_catalog("tiny"))


def test_a_worker_with_no_stages_or_models_serves_every_queue_of_every_model(tiny: Catalog) -> None:
    assert worker_queues(tiny, [], []) == queue_names(tiny)
    assert {"image.tiny-sd-alt", "image_batch.tiny-sd-alt", "frames.tiny-svd", "video"} <= set(queue_names(tiny))


def test_a_worker_with_stages_serves_every_model_of_those_stages(tiny: Catalog) -> None:
    assert worker_queues(tiny, ["image", "video"], []) == [
        "image.tiny-sd", "image_batch.tiny-sd", "image.tiny-sd-alt", "image_batch.tiny-sd-alt", "video", "video_batch"]


def test_a_worker_with_models_serves_only_those_models_queues(tiny: Catalog) -> None:
    assert worker_queues(tiny, [], ["tiny-sd-alt"]) == ["image.tiny-sd-alt", "image_batch.tiny-sd-alt"]
    assert worker_queues(tiny, [], ["camera", "tiny-sd"]) == [
        "image.tiny-sd", "image_batch.tiny-sd", "frames.camera", "frames_batch.camera"]


def test_a_worker_with_stages_and_models_serves_the_stages_without_models_and_those_models(tiny: Catalog) -> None:
    assert worker_queues(tiny, ["video", "upload"], ["tiny-sd"]) == [
        "image.tiny-sd", "image_batch.tiny-sd", "video", "video_batch", "upload", "upload_batch"]


def test_a_model_stage_named_with_models_of_other_stages_is_served_with_all_its_models(tiny: Catalog) -> None:
    assert worker_queues(tiny, ["prompt_enhance"], ["tiny-sd"]) == [
        "prompt_enhance.tiny-text", "prompt_enhance_batch.tiny-text", "image.tiny-sd", "image_batch.tiny-sd"]
    assert worker_queues(tiny, ["image"], ["tiny-sd"]) == ["image.tiny-sd", "image_batch.tiny-sd"]


@pytest.mark.parametrize(
    ("stages", "models", "message"),
    [
        ([], ["tiny-sd", "ghost", "phantom"], "--models: not in the catalog: ghost, phantom (see framequeue models)"),
        (["image", "painting"], [], "unknown stages: painting (known: "),
    ],
    ids=["unknown-model", "unknown-stage"],
)
def test_a_worker_naming_what_does_not_exist_is_refused(
    tiny: Catalog, stages: list[str], models: list[str], message: str
) -> None:
    with pytest.raises(CliError) as raised:
        worker_queues(tiny, stages, models)

    assert str(raised.value).startswith(message) and raised.value.exit_code == 2


def test_framequeue_worker_with_an_unknown_model_exits_2_with_one_line_and_starts_nothing() -> None:
    run = framequeue("worker", "--models", "tiny-sd,ghost")

    assert run.returncode == 2
    assert run.stderr == "framequeue: --models: not in the catalog: ghost (see framequeue models)\n"
