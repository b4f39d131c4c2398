"""Pulling a hub model into the models directory, so that workers load it with the hub out of reach.

``pull_model`` asks the hub which commit a revision names and which files it holds, downloads the
files ``from_pretrained`` reads into a partial directory beside the model's place
(``pulled_dir``), writes the commit into :data:`REVISION_FILE` and renames the directory into
place. A worker loads a pulled model only once its directory is there under its own name
(``weights_path``), so a pull that is killed or fails leaves nothing a worker would load; its
partial directory, named by the commit, is resumed by the next pull of that commit.

The hub is two components passed in, ``resolve`` (which commit and files) and ``download``
(``huggingface_hub.snapshot_download``), so that tests pull from a fake hub of tiny models.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pathlib
import posixpath
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils import validate_repo_id

from pipelines.model_paths import REVISION_FILE, pulled_dir

#: What a hub call raises for reasons outside this program: its HTTP library's base error (a base of
#: ``HfHubHTTPError``, whichever library this huggingface_hub speaks through), ``OSError`` (offline
#: mode, a full disk), ``ValueError`` (a malformed id) and a Xet transfer's failure.
HUB_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, *hub_errors.HfHubHTTPError.__bases__,
    *([hub_errors.XetDownloadError] if hasattr(hub_errors, "XetDownloadError") else []),
)
#: A full hub commit id, which names the same files forever.
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")
_SAFETENSORS = re.compile(r"\.safetensors(\.index(\.\w+)?\.json)?$")
#: Weight formats other than safetensors (and their shard indexes), which a loader reads only when
#: no safetensors file sits beside them.
_OTHER_WEIGHTS = re.compile(r"\.(bin|pt|pth|ckpt|msgpack|h5|onnx|onnx_data|ot|tflite|gguf)(\.index(\.\w+)?\.json)?$")
#: A precision variant's part of a file name (``model.fp16.safetensors``), which a loader asked for
#: no variant leaves alone when the plain file is there.
_VARIANT = re.compile(r"\.(fp16|bf16|fp32|ema|non_ema)(?=[.-])")


class PullError(Exception):
    """A model could not be pulled: one line that names it and says why."""


@dataclass(frozen=True)
class HubSnapshot:
    """A repository at one commit: the commit's id, and each file's size in bytes (None: unknown)."""

    commit: str
    files: Mapping[str, int | None]


@dataclass(frozen=True)
class PullResult:
    """Where a model is, at which commit, its size, and what this pull did: ``pulled`` it, found it
    ``current``, or found it pulled but could not ask the hub whether it still is (``unchecked``)."""

    path: pathlib.Path
    commit: str
    size_bytes: int
    outcome: Literal["pulled", "current", "unchecked"]


def is_hub_id(model: str) -> bool:
    """Whether a catalog's ``model`` names a hub repository (``org/name``), rather than a directory."""
    if model.startswith(("/", ".", "~")) or pathlib.Path(model).exists():
        return False
    try:
        validate_repo_id(model)
    except ValueError:
        return False
    return True


def in_hub_cache(repo_id: str) -> bool:
    """Whether the hub cache holds some snapshot of hub model ``repo_id``."""
    return (pathlib.Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots").is_dir()


def hub_offline() -> bool:
    """Whether this process may not reach the hub (``HF_HUB_OFFLINE``)."""
    return bool(constants.HF_HUB_OFFLINE)


def hub_snapshot(repo_id: str, revision: str | None) -> HubSnapshot:
    """The commit ``revision`` (None: the default branch) of hub model ``repo_id`` names, and its files."""
    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    if info.sha is None:
        raise PullError(f"the hub named no commit for {repo_id}@{revision or 'main'}")
    return HubSnapshot(info.sha, {file.rfilename: file.size for file in info.siblings or ()})


def unused_files(files: Iterable[str]) -> list[str]:
    """The files of a repository that ``from_pretrained`` does not read, so a pull leaves them on the hub.

    Kept whenever in doubt. Left out: a diffusers repository's top-level weights (single-file
    checkpoints; the pipeline loads its component folders); other weight formats where safetensors
    sit beside them; a precision variant (``.fp16.``) where the plain file sits beside it, since the
    loaders ask for no variant and cast to the worker's dtype themselves.
    """
    files = list(files)
    by_folder: dict[str, set[str]] = {}
    for file in files:
        folder, name = posixpath.split(file)
        by_folder.setdefault(folder, set()).add(name)
    diffusers_layout = "model_index.json" in by_folder.get("", set())
    unused = []
    for file in files:
        folder, name = posixpath.split(file)
        siblings = by_folder[folder]
        other_format = bool(_OTHER_WEIGHTS.search(name))
        single_file_checkpoint = diffusers_layout and not folder and (other_format or bool(_SAFETENSORS.search(name)))
        beside_safetensors = other_format and any(_SAFETENSORS.search(sibling) for sibling in siblings)
        plain = _VARIANT.sub("", name)
        beside_plain = plain != name and plain in siblings
        if single_file_checkpoint or beside_safetensors or beside_plain:
            unused.append(file)
    return unused


def pulled_commit(path: pathlib.Path) -> str | None:
    """The commit a pulled model's directory holds, or None when nothing was pulled there."""
    marker = path / REVISION_FILE
    return marker.read_text().strip() if marker.is_file() else None


def size_on_disk(path: pathlib.Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file() and not file.is_symlink())


def pull_model(
    repo_id: str,
    models_dir: pathlib.Path,
    revision: str | None = None,
    *,
    resolve: Callable[[str, str | None], HubSnapshot] = hub_snapshot,
    download: Callable[..., Any] = snapshot_download,
    progress: Callable[[str], None] = lambda line: None,
) -> PullResult:
    """Put hub model ``repo_id`` at ``revision`` (a commit, branch or tag; None: the default branch)
    into ``pulled_dir(models_dir, repo_id)``, unless it is there at that commit already.

    Pulls of one model take turns (a lock file beside it). ``progress`` is told, in one line, what is
    about to be downloaded.

    Raises:
        PullError: the hub cannot be reached or has no such model or revision, the download or the
            disk failed, or the place holds a directory framequeue did not pull; one line, naming the model.
    """
    target = pulled_dir(models_dir, repo_id)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with open(target.with_name(f".{target.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _pull(repo_id, target, revision, resolve, download, progress)
    except OSError as error:  # the disk's: the hub's are PullErrors already
        raise PullError(f"cannot pull {repo_id} into {models_dir}: {error.strerror or error}") from None


def _pull(repo_id: str, target: pathlib.Path, revision: str | None,
          resolve: Callable[[str, str | None], HubSnapshot], download: Callable[..., Any],
          progress: Callable[[str], None]) -> PullResult:
    have = pulled_commit(target)
    if target.exists() and have is None:
        raise PullError(f"{target} holds a model that framequeue models pull did not put there; "
                        f"move it away to pull {repo_id}")
    if have is not None and revision is not None and COMMIT_PATTERN.match(revision) and have == revision:
        return PullResult(target, have, size_on_disk(target), "current")
    try:
        snapshot = resolve(repo_id, revision)
    except HUB_ERRORS as error:
        if have is not None and hub_unreachable(error):  # keep what is here
            return PullResult(target, have, size_on_disk(target), "unchecked")
        raise PullError(hub_failure(repo_id, revision, error)) from None
    if have == snapshot.commit:
        return PullResult(target, have, size_on_disk(target), "current")
    skipped = unused_files(snapshot.files)
    wanted = [size for file, size in snapshot.files.items() if file not in skipped]
    known = [size for size in wanted if size is not None]
    progress(f"downloading {len(wanted)} of {len(snapshot.files)} files"
             + (f", {human_size(sum(known))}" if len(known) == len(wanted) else "") + f", at {snapshot.commit[:12]}")
    partial = target.with_name(f".{target.name}@{snapshot.commit}.partial")
    try:
        download(repo_id, revision=snapshot.commit, local_dir=partial,
                 ignore_patterns=[glob.escape(file) for file in skipped] or None)
    except HUB_ERRORS as error:  # the hub's, or the disk's while downloading: the detail says which
        raise PullError(hub_failure(repo_id, snapshot.commit, error)) from None
    shutil.rmtree(partial / ".cache", ignore_errors=True)  # the hub client's download bookkeeping
    (partial / REVISION_FILE).write_text(snapshot.commit + "\n")
    place(partial, target)
    for stale in target.parent.glob(f".{glob.escape(target.name)}@*.partial"):
        shutil.rmtree(stale, ignore_errors=True)  # left by pulls of other commits that were cut short
    return PullResult(target, snapshot.commit, size_on_disk(target), "pulled")


def place(ready: pathlib.Path, target: pathlib.Path) -> None:
    """Rename directory ``ready`` onto ``target``. A ``target`` already there (an older commit) is
    renamed aside first and removed after, or put back if the rename fails: ``target`` is always one
    whole pull, or absent for the moment between the two renames."""
    aside = target.with_name(f".{target.name}.replaced-{os.getpid()}")
    if target.exists():
        os.rename(target, aside)
    try:
        os.rename(ready, target)
    except OSError:
        if aside.exists():
            os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def hub_failure(repo_id: str, revision: str | None, error: BaseException) -> str:
    """One line on why the hub did not give ``repo_id``."""
    at = f"{repo_id}@{revision}" if revision else repo_id
    if isinstance(error, hub_errors.OfflineModeIsEnabled):
        return f"cannot pull {at}: the hub is off (HF_HUB_OFFLINE is set); pull where the hub can be reached"
    if isinstance(error, hub_errors.GatedRepoError):
        return (f"cannot pull {at}: the model is gated; accept its terms at https://huggingface.co/{repo_id} "
                "and set HF_TOKEN to a token of that account")
    if isinstance(error, hub_errors.RepositoryNotFoundError):
        return f"cannot pull {at}: the hub has no model {repo_id} (or it is private: set HF_TOKEN)"
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return f"cannot pull {at}: {repo_id} has no revision {revision}"
    detail = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    if hub_unreachable(error):
        return f"cannot pull {at}: the hub cannot be reached ({detail})"
    return f"cannot pull {at}: {detail}"


def hub_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the hub gave no answer (offline mode, no route, a timeout), rather than a refusal."""
    transport = tuple(base for base in hub_errors.HfHubHTTPError.__bases__ if base is not OSError)
    return (isinstance(error, (ConnectionError, TimeoutError, *transport))
            and not isinstance(error, hub_errors.HfHubHTTPError))


def human_size(size_bytes: int) -> str:
    """``size_bytes`` in the largest binary unit that keeps it at least 1 (``2.4 GiB``)."""
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("not reached")
