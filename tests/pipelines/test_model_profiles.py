from __future__ import annotations

import pathlib
import subprocess
import sys
import threading
import time

import pytest

from pipelines.errors import UnknownProfileError
from pipelines.profiles import (
    EMBEDDING_MODEL,
    STANDARD_IMAGE_MODEL,
    STANDARD_TEXT_MODEL,
    STANDARD_VIDEO_MODEL,
    ModelProfile,
    build_once,
    resolve_profile,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_standard_profile_names_hub_models_and_the_bundled_embedder(tmp_path: pathlib.Path) -> None:
    profile = resolve_profile("standard", tmp_path)
    assert profile == ModelProfile(
        "standard", STANDARD_TEXT_MODEL, EMBEDDING_MODEL, STANDARD_IMAGE_MODEL, STANDARD_VIDEO_MODEL
    )
    assert (pathlib.Path(profile.embedding_model) / "model.safetensors").is_file()
    assert list(tmp_path.iterdir()) == []  # nothing is built for the standard profile


def test_an_unknown_profile_is_rejected(tmp_path: pathlib.Path) -> None:
    with pytest.raises(UnknownProfileError, match="huge"):
        resolve_profile("huge", tmp_path)


def test_tiny_profile_points_at_loadable_local_model_directories(tiny_profile: ModelProfile) -> None:
    text_dir = pathlib.Path(tiny_profile.text_model)
    image_dir = pathlib.Path(tiny_profile.image_model)
    video_dir = pathlib.Path(tiny_profile.video_model)
    assert (text_dir / "config.json").is_file() and (text_dir / "tokenizer.json").is_file()
    assert (image_dir / "model_index.json").is_file()
    assert (image_dir / "unet" / "config.json").is_file()
    assert (video_dir / "model_index.json").is_file() and (video_dir / "unet" / "config.json").is_file()
    assert not [path for path in text_dir.parent.iterdir() if path.name.startswith(".building")]


def test_tiny_profile_reuses_its_cache_on_later_calls(tiny_profile: ModelProfile) -> None:
    weights = pathlib.Path(tiny_profile.image_model) / "unet" / "diffusion_pytorch_model.safetensors"
    before_ns = weights.stat().st_mtime_ns
    cache_dir = pathlib.Path(tiny_profile.image_model).parents[2]
    assert resolve_profile("tiny", cache_dir) == tiny_profile
    assert weights.stat().st_mtime_ns == before_ns


def test_concurrent_builders_leave_one_complete_copy(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "model"
    builds: list[int] = []
    start = threading.Barrier(4)
    results: list[pathlib.Path] = []

    def slow_build(out_dir: pathlib.Path) -> None:
        builds.append(1)
        for index in range(3):
            (out_dir / f"part-{index}").write_text(str(index))
            time.sleep(0.02)  # so the builders overlap

    def builder() -> None:
        start.wait()
        results.append(build_once(target, slow_build))

    threads = [threading.Thread(target=builder) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [target] * 4
    assert sorted(path.name for path in target.iterdir()) == ["part-0", "part-1", "part-2"]
    assert [path.name for path in tmp_path.iterdir()] == ["model"]  # no scratch dirs left
    assert len(builds) >= 1


def test_a_failed_build_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    def broken(out_dir: pathlib.Path) -> None:
        (out_dir / "half").write_text("written")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        build_once(tmp_path / "model", broken)
    assert list(tmp_path.iterdir()) == []


def test_two_processes_building_the_tiny_profile_at_once_agree(tmp_path: pathlib.Path) -> None:
    script = (
        "import pathlib, sys\n"
        "from pipelines.profiles import resolve_profile\n"
        "from transformers import AutoModelForCausalLM\n"
        "profile = resolve_profile('tiny', pathlib.Path(sys.argv[1]))\n"
        "AutoModelForCausalLM.from_pretrained(profile.text_model)\n"
        "print(profile.text_model, profile.image_model)\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    tiny_root = tmp_path / "tiny" / "v1"
    assert sorted(path.name for path in tiny_root.iterdir()) == ["image", "text", "video"]
