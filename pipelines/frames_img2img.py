"""Image to frames by img2img: each keyframe is a light re-render of the one before.

From a still image, the backend renders a chain of keyframes, each by image-to-image
diffusion of the previous keyframe at low strength, so the picture drifts and evolves
rather than jumps. The frames between keyframes are filled in by optical-flow
interpolation (:mod:`pipelines.interpolation`), which is far cheaper than a diffusion run
per frame.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import PIL.Image
import torch
from diffusers import AutoPipelineForImage2Image
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from pipelines.errors import InvalidInputError, ShouldStop
from pipelines.interpolation import interpolate_frames, keyframe_count
from pipelines.loading import load_diffusion_pipeline
from pipelines.outputs import FramesOutput
from pipelines.progress import StepProgress, frame_counter
from pipelines.text_to_image import TextToImage, check_size, stop_between_steps

#: Default img2img strength: the fraction of the denoising schedule each keyframe re-runs.
DEFAULT_STRENGTH = 0.35


class Img2ImgFrames:
    """Renders a short clip from a still image by chained img2img keyframes.

    Parameters:
        pipeline: A loaded diffusers image-to-image pipeline.
        lock: Held while a keyframe renders; see :class:`pipelines.TextToImage`.
    """

    def __init__(self, pipeline: DiffusionPipeline, lock: threading.Lock | None = None) -> None:
        self.pipeline = pipeline
        self.lock = lock if lock is not None else threading.Lock()

    @classmethod
    def from_text_to_image(cls, t2i: TextToImage) -> Img2ImgFrames:
        """Build on the components ``t2i`` already holds; nothing is loaded twice.

        The two share ``t2i``'s lock too, because they share its scheduler.
        """
        pipeline = AutoPipelineForImage2Image.from_pipe(t2i.pipeline)
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline, lock=t2i.lock)

    @classmethod
    def from_pretrained(cls, model: str, device: str = "cpu") -> Img2ImgFrames:
        """Load ``model`` (hub id or directory) onto ``device``; float16 on CUDA, else float32."""
        return cls(load_diffusion_pipeline(AutoPipelineForImage2Image, model, device))

    def __call__(
        self,
        image: PIL.Image.Image,
        prompt: str,
        num_frames: int,
        fps: int,
        seed: int,
        steps: int,
        strength: float = DEFAULT_STRENGTH,
        keyframe_every: int = 4,
        should_stop: ShouldStop | None = None,
        progress: StepProgress | None = None,
    ) -> FramesOutput:
        """Return ``num_frames`` frames at ``image``'s size, starting from ``image`` itself.

        Keyframe ``k`` is rendered with seed ``seed + k``. Because diffusers runs only
        ``int(steps * strength)`` steps, ``steps`` is raised as needed so at least one runs.
        ``should_stop`` is asked after each diffusion step and before each in-between frame;
        ``progress`` is told after each keyframe and frame, counting them together.

        Raises:
            InvalidInputError: if a count, the strength or the image size cannot be honoured.
            Interrupted: when ``should_stop`` said stop.
        """
        # 1. Check inputs.
        if num_frames < 1 or fps < 1 or keyframe_every < 1:
            raise InvalidInputError("num_frames, fps and keyframe_every must be at least 1")
        if not 0.0 < strength <= 1.0:
            raise InvalidInputError(f"strength must be in (0, 1], got {strength}")
        start = image.convert("RGB")
        check_size(*start.size)
        # 2. Render the keyframes, each from the one before.
        keyframes = [np.asarray(start)]
        total_steps = max(steps, math.ceil(1.0 / strength))
        device = str(self.pipeline.device)
        count = keyframe_count(num_frames, keyframe_every)
        report = frame_counter(progress, count + num_frames)
        report(1)  # the first keyframe is the image itself
        for index in range(1, count):
            previous = PIL.Image.fromarray(keyframes[-1])
            with self.lock:
                # DiffusionPipeline declares no __call__; every concrete pipeline does.
                result = self.pipeline(  # type: ignore[operator]
                    prompt=prompt,
                    image=previous,
                    strength=strength,
                    num_inference_steps=total_steps,
                    guidance_scale=0.0,
                    generator=torch.Generator(device=device).manual_seed(seed + index),
                    output_type="pil",
                    callback_on_step_end=stop_between_steps(should_stop, f" on keyframe {index} of {count}"),
                )
            rendered = result.images[0].convert("RGB")
            if rendered.size != start.size:
                rendered = rendered.resize(start.size, PIL.Image.Resampling.LANCZOS)
            keyframes.append(np.asarray(rendered))
            report(index + 1)
        # 3. Fill in the frames between keyframes.
        frames = interpolate_frames(keyframes, num_frames, should_stop, lambda made: report(count + made))
        return FramesOutput(frames=np.stack(frames).astype(np.uint8), fps=fps)
