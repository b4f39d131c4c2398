"""A fake of the Hugging Face hub as ``pipelines.model_pull.pull_model`` sees it, serving tiny models built offline.

It stands in for the two hub calls a pull makes (which commit and files; download them into a
directory) and filters files with huggingface_hub's own pattern matcher, as ``snapshot_download`` does.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects

from pipelines.model_paths import weights_path
from pipelines.model_pull import HubSnapshot, PullResult, pull_model

REPO = "framequeue-test/tiny-sd"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
#: What a real Stable Diffusion repository carries beside its component folders, none of it read
#: by ``from_pretrained`` with no variant: a single-file checkpoint, a half-precision copy, pickled weights.
UNREAD_EXTRAS = {"tiny-sd.safetensors": b"single-file checkpoint",
                 "unet/diffusion_pytorch_model.fp16.safetensors": b"half precision",
                 "vae/diffusion_pytorch_model.bin": b"pickled weights"}


class CutShort(ConnectionError):
    """The connection dropped in the middle of a download."""


@dataclass
class FakeHub:
    """Repositories of files copied from local directories, each at one commit; it counts its calls."""

    repos: dict[str, tuple[str, pathlib.Path, dict[str, bytes]]] = field(default_factory=dict)
    resolved: int = 0
    downloads: list[list[str]] = field(default_factory=list)
    #: Files a download writes before the connection drops; None: it completes.
    drop_after_files: int | None = None

    def add(self, repo_id: str, source: pathlib.Path, commit: str, extras: dict[str, bytes] | None = None) -> None:
        self.repos[repo_id] = (commit, source, extras or {})

    def source(self, repo_id: str) -> pathlib.Path:
        return self.repos[repo_id][1]

    def files(self, repo_id: str) -> dict[str, bytes]:
        _, source, extras = self.repos[repo_id]
        found = {str(path.relative_to(source)): path.read_bytes() for path in source.rglob("*") if path.is_file()}
        return {**found, **extras}

    def resolve(self, repo_id: str, revision: str | None) -> HubSnapshot:
        self.resolved += 1
        if repo_id not in self.repos:
            raise OfflineModeIsEnabled(f"no route to the hub for {repo_id}")
        return HubSnapshot(self.repos[repo_id][0], {name: len(data) for name, data in self.files(repo_id).items()})

    def download(self, repo_id: str, *, revision: str, local_dir: pathlib.Path,
                 ignore_patterns: list[str] | None = None) -> str:
        assert revision == self.repos[repo_id][0], "a pull downloads the commit it resolved"
        files = self.files(repo_id)
        chosen = list(filter_repo_objects(sorted(files), ignore_patterns=ignore_patterns))
        self.downloads.append(chosen)
        for written, name in enumerate(chosen):
            if self.drop_after_files is not None and written == self.drop_after_files:
                raise CutShort("connection reset by peer")
            (local_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (local_dir / name).write_bytes(files[name])
        return str(local_dir)

    def pull(self, models_dir: pathlib.Path, revision: str | None = None, repo_id: str = REPO) -> PullResult:
        return pull_model(repo_id, models_dir, revision, resolve=self.resolve, download=self.download)



def tiny_hub(cache_dir: pathlib.Path) -> FakeHub:
    """A fake hub holding :data:`REPO` at :data:`COMMIT_A`: the tiny image model (built once under
    ``cache_dir``) and :data:`UNREAD_EXTRAS`."""
    hub = FakeHub()
    hub.add(REPO, pathlib.Path(weights_path("tiny:image", cache_dir)), COMMIT_A, UNREAD_EXTRAS)
    return hub
