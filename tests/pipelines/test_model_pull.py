"""``pull_model`` against a fake hub whose repository is a tiny model built offline (tests/fake_hub.py)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from pipelines.model_paths import REVISION_FILE, pulled_dir, weights_path, weights_revision
from pipelines.model_pull import PullError, pull_model, unused_files
from tests.fake_hub import COMMIT_A, COMMIT_B, REPO, UNREAD_EXTRAS, FakeHub, tiny_hub


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory) -> FakeHub:
    return tiny_hub(tmp_path_factory.getbasetemp() / "tiny-cache")


@pytest.fixture
def tiny_image(hub: FakeHub) -> pathlib.Path:
    return hub.source(REPO)


def test_a_pull_puts_the_model_whole_in_its_place_with_its_commit(hub: FakeHub, tiny_image: pathlib.Path,
                                                                   tmp_path: pathlib.Path) -> None:
    result = hub.pull(tmp_path)

    place = pulled_dir(tmp_path, REPO)
    assert result.outcome == "pulled" and result.path == place and result.commit == COMMIT_A
    assert (place / REVISION_FILE).read_text().strip() == COMMIT_A
    assert (place / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == \
        (tiny_image / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock")) == [place.name]
    assert weights_path(REPO, tmp_path / "cache", tmp_path) == str(place)
    assert weights_revision(str(place)) == COMMIT_A


def test_a_pull_leaves_on_the_hub_the_files_the_loader_does_not_read(hub: FakeHub, tmp_path: pathlib.Path) -> None:
    hub.pull(tmp_path)

    [downloaded] = hub.downloads
    assert not set(UNREAD_EXTRAS) & set(downloaded)
    assert "model_index.json" in downloaded and "vae/diffusion_pytorch_model.safetensors" in downloaded


def test_a_model_pulled_at_the_same_commit_is_not_downloaded_again(hub: FakeHub, tmp_path: pathlib.Path) -> None:
    hub.pull(tmp_path)

    again = hub.pull(tmp_path)
    pinned = hub.pull(tmp_path, revision=COMMIT_A)

    assert again.outcome == pinned.outcome == "current"
    assert len(hub.downloads) == 1
    assert hub.resolved == 2  # a pinned commit is compared without asking the hub


def test_a_pull_cut_short_leaves_nothing_a_worker_would_load_and_the_next_one_finishes(
        hub: FakeHub, tmp_path: pathlib.Path) -> None:
    hub.drop_after_files = 3

    with pytest.raises(PullError, match=f"cannot pull {REPO}@{COMMIT_A}: the hub cannot be reached .*CutShort"):
        hub.pull(tmp_path)

    assert not pulled_dir(tmp_path, REPO).exists()
    assert weights_path(REPO, tmp_path / "cache", tmp_path) == REPO
    hub.drop_after_files = None
    assert hub.pull(tmp_path).outcome == "pulled"
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock")) == \
        [pulled_dir(tmp_path, REPO).name]


def test_a_new_commit_replaces_the_pulled_one(hub: FakeHub, tiny_image: pathlib.Path, tmp_path: pathlib.Path) -> None:
    hub.pull(tmp_path)
    hub.add(REPO, tiny_image, COMMIT_B, {"NOTES.md": b"second commit"})

    result = hub.pull(tmp_path)

    place = pulled_dir(tmp_path, REPO)
    assert result.outcome == "pulled" and (place / REVISION_FILE).read_text().strip() == COMMIT_B
    assert (place / "NOTES.md").is_file()
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock")) == [place.name]


def test_without_the_hub_a_model_not_pulled_is_a_one_line_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PullError) as raised:
        pull_model(REPO, tmp_path)  # the real hub client, which HF_HUB_OFFLINE keeps off the network

    assert str(raised.value) == f"cannot pull {REPO}: the hub is off (HF_HUB_OFFLINE is set); " \
                                "pull where the hub can be reached"
    assert not pulled_dir(tmp_path, REPO).exists()


def test_without_the_hub_a_pulled_model_is_kept_unchecked(hub: FakeHub, tmp_path: pathlib.Path) -> None:
    hub.pull(tmp_path)

    result = pull_model(REPO, tmp_path)

    assert result.outcome == "unchecked" and result.commit == COMMIT_A


def test_a_directory_the_pull_did_not_make_is_not_replaced(hub: FakeHub, tmp_path: pathlib.Path) -> None:
    own = pulled_dir(tmp_path, REPO)
    shutil.copytree(hub.source(REPO), own)

    with pytest.raises(PullError, match="did not put there; move it away"):
        hub.pull(tmp_path)

    assert hub.downloads == [] and not (own / REVISION_FILE).exists()


@pytest.mark.parametrize(("files", "unused"), [
    # A diffusers repository: component folders are read, not the top-level checkpoint or fp16 copies.
    (["model_index.json", "sd_turbo.safetensors", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
      "unet/diffusion_pytorch_model.fp16.safetensors", "text_encoder/model.safetensors",
      "text_encoder/model.fp16.safetensors", "text_encoder/pytorch_model.bin"],
     ["sd_turbo.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors", "text_encoder/model.fp16.safetensors",
      "text_encoder/pytorch_model.bin"]),
    # A transformers repository: its top-level weights are the model; pickles give way to safetensors.
    (["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "model.safetensors.index.json", "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"],
     ["pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"]),
    # Only a variant, or only pickles: the loader needs them, so they stay.
    (["model_index.json", "vae/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin"], []),
])
def test_unused_files_are_only_those_the_loader_never_reads(files: list[str], unused: list[str]) -> None:
    assert unused_files(files) == unused
