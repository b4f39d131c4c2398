"""Loading helpers shared by the model backends: dtype per device, quiet diffusers loads."""

from __future__ import annotations

import diffusers
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
from diffusers.pipelines.pipeline_utils import DiffusionPipeline


def dtype_for(device: str) -> torch.dtype:
    """Return float16 on CUDA (half the memory, tensor cores) and float32 elsewhere.

    CPUs run float16 slowly or not at all, so CPU workers keep full precision.
    """
    return torch.float16 if device.startswith("cuda") else torch.float32


def load_diffusion_pipeline(
    auto_class: type[AutoPipelineForText2Image | AutoPipelineForImage2Image], model: str, device: str
) -> DiffusionPipeline:
    """Load ``model`` with ``auto_class.from_pretrained`` onto ``device``, without progress bars.

    Progress bars are turned off for the whole process: in a worker they only fill the logs.
    """
    diffusers.utils.logging.disable_progress_bar()
    pipeline: DiffusionPipeline = auto_class.from_pretrained(model, dtype=dtype_for(device))
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
