"""Loading helpers shared by the model backends: dtype per device, quiet diffusers loads."""

from __future__ import annotations

import diffusers
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from pipelines.registry import LOADING_LOCK


def dtype_for(device: str) -> torch.dtype:
    """Return float16 on CUDA (half the memory, tensor cores) and float32 elsewhere.

    CPUs run float16 slowly or not at all, so CPU workers keep full precision.
    """
    return torch.float16 if device.startswith("cuda") else torch.float32


def resolve_dtype(name: str | None, device: str) -> torch.dtype:
    """The torch dtype called ``name`` (``float16``...); ``auto`` or None: :func:`dtype_for` the device."""
    if name in (None, "auto"):
        return dtype_for(device)
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{name!r} is not a torch dtype")
    return dtype


def diffusers_class(name: str) -> type[DiffusionPipeline]:
    """The diffusers pipeline class called ``name`` (``AutoPipelineForText2Image``...)."""
    found = getattr(diffusers, name, None)
    if not (isinstance(found, type) and hasattr(found, "from_pretrained")):
        raise ValueError(f"diffusers {diffusers.__version__} has no pipeline class {name!r}")
    return found


def load_diffusion_pipeline(
    auto_class: type[AutoPipelineForText2Image | AutoPipelineForImage2Image | DiffusionPipeline], model: str,
    device: str, *, revision: str | None = None, dtype: str | None = None,
) -> DiffusionPipeline:
    """Load ``model`` with ``auto_class.from_pretrained`` onto ``device``, without progress bars.

    ``revision`` pins a hub commit, branch or tag; ``dtype`` names a torch dtype (default: float16 on
    CUDA, float32 elsewhere). Progress bars are turned off for the whole process: in a worker they only
    fill the logs.
    """
    diffusers.utils.logging.disable_progress_bar()
    with LOADING_LOCK:
        pipeline: DiffusionPipeline = auto_class.from_pretrained(
            model, dtype=resolve_dtype(dtype, device), **({"revision": revision} if revision else {}))
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
