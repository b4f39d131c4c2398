"""Where a catalog model's weights are: what to hand ``from_pretrained``.

A catalog names a model as a hub id, a directory, or ``tiny:NAME``. ``tiny:NAME`` is a random-weight
model framequeue builds offline from configs (pipelines/tiny_models.py) the first time it is asked
for, under ``cache_dir/tiny``. A hub id is read from the models directory when ``framequeue models
pull`` put it there, else from the hub cache (or the hub, when the machine may reach it).
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
from collections.abc import Callable

from huggingface_hub.constants import HF_HUB_CACHE

from pipelines.profiles import TINY_MODELS_VERSION, build_once

TINY_PREFIX = "tiny:"


def _tiny_builders() -> dict[str, Callable[[pathlib.Path], None]]:
    # Imported here: building pulls in diffusers and transformers model classes.
    from pipelines import tiny_models

    builders: dict[str, Callable[[pathlib.Path], None]] = {
        "text": tiny_models.build_tiny_text_model,
        "image": tiny_models.build_tiny_image_model,
        "image-alt": functools.partial(tiny_models.build_tiny_image_model, seed=1),
    }
    video = getattr(tiny_models, "build_tiny_image_to_video_model", None)
    if video is not None:
        builders["video"] = video
    return builders


def pulled_dir(models_dir: pathlib.Path, model: str) -> pathlib.Path:
    """The directory ``framequeue models pull`` keeps hub model ``model`` in."""
    return models_dir / model.replace("/", "--")


def weights_path(model: str, cache_dir: pathlib.Path, models_dir: pathlib.Path | None = None) -> str:
    """What ``from_pretrained`` should load for ``model``: a built tiny model's directory, a pulled
    model's directory, or ``model`` itself (a directory, or a hub id read through the hub cache).

    Raises:
        ValueError: ``tiny:NAME`` names no tiny model.
    """
    if model.startswith(TINY_PREFIX):
        name = model.removeprefix(TINY_PREFIX)
        builders = _tiny_builders()
        if name not in builders:
            raise ValueError(f"no tiny model {name!r} (tiny models: {', '.join(sorted(builders))})")
        return str(build_once(pathlib.Path(cache_dir) / "tiny" / TINY_MODELS_VERSION / name, builders[name]))
    if models_dir is not None and pulled_dir(models_dir, model).is_dir():
        return str(pulled_dir(models_dir, model))
    return model


#: The file ``framequeue models pull`` writes into a pulled model's directory: the hub commit it fetched.
REVISION_FILE = ".framequeue-revision"


@functools.lru_cache(maxsize=64)
def weights_revision(path: str) -> str:
    """What identifies the weights at ``path``, for job records, manifests and cache keys.

    A pulled model's directory: the hub commit it was pulled at. Another directory (a tiny model, a
    model of your own): ``sha256:`` of its files' names and bytes, read once per process. A hub id:
    ``id@commit`` as the local hub cache resolved it, else the id alone.
    """
    directory = pathlib.Path(path)
    if (directory / REVISION_FILE).is_file():
        return (directory / REVISION_FILE).read_text().strip()
    if directory.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in directory.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(directory)).encode() + b"\0")
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        return "sha256:" + digest.hexdigest()[:16]
    ref = pathlib.Path(HF_HUB_CACHE) / f"models--{path.replace('/', '--')}" / "refs" / "main"
    return f"{path}@{ref.read_text().strip()}" if ref.is_file() else path
