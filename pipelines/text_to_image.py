"""Text to image: a batch of prompts in, one seeded image per prompt out.

It wraps a diffusers text-to-image pipeline (Stable Diffusion layout: SD-Turbo in the
standard profile, a tiny random one in tests). Each prompt gets its own
``torch.Generator`` seeded from its job, so an image depends only on its own prompt, seed
and size, never on what else shared the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from diffusers import AutoPipelineForText2Image
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from pipelines.errors import InvalidInputError, ShouldStop, stop_if_asked
from pipelines.loading import load_diffusion_pipeline
from pipelines.outputs import ImageOutput
from pipelines.progress import StepProgress

#: Image sides must be multiples of this (the VAE downsamples by 8).
SIZE_MULTIPLE_PX = 8
#: Default guidance: 0 turns classifier-free guidance off, which distilled models expect.
DEFAULT_GUIDANCE_SCALE = 0.0


def seeded_generators(seeds: list[int], device: str) -> list[torch.Generator]:
    """Return one generator per seed, on ``device``, so each image has its own noise."""
    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]


def check_size(width: int, height: int) -> None:
    """Raise :class:`InvalidInputError` unless both sides are positive multiples of 8 px."""
    for name, value in (("width", width), ("height", height)):
        if value <= 0 or value % SIZE_MULTIPLE_PX:
            raise InvalidInputError(f"{name} must be a positive multiple of 8, got {value}")


def stop_between_steps(
    should_stop: ShouldStop | None, on: str = "", progress: StepProgress | None = None
) -> Callable[..., Any] | None:
    """A diffusers ``callback_on_step_end`` that reports each step to ``progress`` and raises
    :class:`Interrupted` after any step at which ``should_stop`` says stop (None when there is
    nothing to do). ``on`` follows the step count.
    """
    if should_stop is None and progress is None:
        return None

    def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if progress is not None:
            progress(step + 1, pipeline.num_timesteps, tensors.get("latents"))
        if should_stop is not None:
            stop_if_asked(should_stop, f"step {step + 1} of {pipeline.num_timesteps}{on}")
        return tensors

    return on_step_end


class TextToImage:
    """Renders a batch of prompts, one seeded image each.

    Parameters:
        pipeline: A loaded diffusers text-to-image pipeline. Its components are public
            (:attr:`components`) so image-to-image can reuse them without a second load.
        lock: Held for the length of each call. A pipeline's scheduler keeps per-call state,
            so calls on one pipeline (or on pipelines sharing its components) must not overlap
            when a worker runs several threads.
    """

    def __init__(self, pipeline: DiffusionPipeline, lock: threading.Lock | None = None) -> None:
        self.pipeline = pipeline
        self.lock = lock if lock is not None else threading.Lock()

    @classmethod
    def from_pretrained(
        cls, model: str, device: str = "cpu", *, pipeline_class: type[Any] = AutoPipelineForText2Image,
        revision: str | None = None, dtype: str | None = None,
    ) -> TextToImage:
        """Load ``model`` (hub id or directory) with ``pipeline_class`` onto ``device``; float16 on CUDA,
        else float32, unless ``dtype`` names another. ``revision`` pins a hub commit."""
        return cls(load_diffusion_pipeline(pipeline_class, model, device, revision=revision, dtype=dtype))

    @property
    def components(self) -> dict[str, object]:
        """The pipeline's modules by name (unet, vae, text_encoder, tokenizer, scheduler...)."""
        return dict(self.pipeline.components)

    @property
    def device(self) -> str:
        return str(self.pipeline.device)

    def __call__(
        self,
        prompts: list[str],
        seeds: list[int],
        width: int,
        height: int,
        steps: int,
        negative_prompt: str | None = None,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        should_stop: ShouldStop | None = None,
        progress: StepProgress | None = None,
    ) -> ImageOutput:
        """Render ``prompts[i]`` with ``seeds[i]`` at ``width`` x ``height`` px.

        ``negative_prompt`` only has an effect when ``guidance_scale`` > 1. ``should_stop`` is
        asked, and ``progress`` told, after each diffusion step.

        Raises:
            InvalidInputError: if the sizes, seeds or steps cannot be honoured.
            Interrupted: when ``should_stop`` said stop; no image is decoded.
        """
        # 1. Check inputs.
        if not prompts or len(prompts) != len(seeds):
            raise InvalidInputError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
        check_size(width, height)
        if steps < 1:
            raise InvalidInputError(f"steps must be at least 1, got {steps}")
        # 2. One generator per prompt.
        generators = seeded_generators(seeds, self.device)
        # 3. Denoise and decode, as one batch.
        use_negative = guidance_scale > 1.0 and negative_prompt
        with self.lock:
            # DiffusionPipeline declares no __call__; every concrete pipeline does.
            result = self.pipeline(  # type: ignore[operator]
                prompt=prompts,
                negative_prompt=[negative_prompt] * len(prompts) if use_negative else None,
                width=width,
                height=height,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                generator=generators,
                output_type="pil",
                callback_on_step_end=stop_between_steps(should_stop, progress=progress),
            )
        return ImageOutput(images=list(result.images))
