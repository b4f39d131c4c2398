"""Image to frames by img2img: each keyframe is a light re-render of the one before.

From a still image, the backend renders a chain of keyframes, each by image-to-image
diffusion of the previous keyframe at low strength, so the picture drifts and evolves
rather than jumps. The frames between keyframes are filled in by optical-flow
interpolation (:mod:`pipelines.interpolation`), which is far cheaper than a diffusion run
per frame.

Each keyframe is one :class:`Keyframe` request. By default the backend renders it alone; a caller
may hand in another renderer, such as the worker's batcher (workers/stages/keyframe_batching.py),
which renders the keyframes of several jobs of one shape in one call of
:meth:`Img2ImgFrames.render_keyframes`, one generator per image.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

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

T = TypeVar("T")

#: Default img2img strength: the fraction of the denoising schedule each keyframe re-runs.
DEFAULT_STRENGTH = 0.35
#: Default guidance: off, as for the key image (distilled models expect it).
DEFAULT_GUIDANCE_SCALE = 0.0
#: Shape key of a keyframe: (width, height, steps, strength, guidance scale, negative prompt).
KeyframeShape = tuple[int, int, int, float, float, str | None]


@dataclass(frozen=True)
class Keyframe:
    """One keyframe's img2img call: the image it grows from, and what makes it its job's own.

    ``steps`` is the schedule handed to diffusers, which runs ``int(steps * strength)`` of it.
    ``should_stop`` may be asked from another thread than the job's (a batch's), so it must name
    its job. ``where`` ends the step count of its :class:`Interrupted` (" on keyframe 2 of 5").
    """

    image: PIL.Image.Image
    prompt: str
    seed: int
    steps: int
    strength: float
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    negative_prompt: str | None = None
    should_stop: ShouldStop | None = None
    where: str = ""

    @property
    def shape(self) -> KeyframeShape:
        """What keyframes must share to be rendered in one call. A negative prompt counts only
        where guidance uses it; the keyframe's index does not count, its seed carries it."""
        negative = self.negative_prompt if _uses_negative(self.guidance_scale, self.negative_prompt) else None
        return (*self.image.size, self.steps, self.strength, self.guidance_scale, negative)


#: Renders one keyframe: :meth:`Img2ImgFrames.render_keyframe`, or a batcher's ``render``.
KeyframeRenderer = Callable[[Keyframe], PIL.Image.Image]


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
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        negative_prompt: str | None = None,
        render_keyframe: KeyframeRenderer | None = None,
    ) -> FramesOutput:
        """Return ``num_frames`` frames at ``image``'s size, starting from ``image`` itself.

        Keyframe ``k`` is rendered with seed ``seed + k``. Because diffusers runs only
        ``int(steps * strength)`` steps, ``steps`` is raised as needed so at least one runs.
        ``should_stop`` is asked after each diffusion step and before each in-between frame;
        ``progress`` is told after each keyframe and frame, counting them together.
        ``negative_prompt`` only has an effect when ``guidance_scale`` > 1. ``render_keyframe``
        renders each :class:`Keyframe` (default: :meth:`render_keyframe`, alone).

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
        render = render_keyframe if render_keyframe is not None else self.render_keyframe
        count = keyframe_count(num_frames, keyframe_every)
        report = frame_counter(progress, count + num_frames)
        report(1)  # the first keyframe is the image itself
        for index in range(1, count):
            rendered = render(Keyframe(
                image=PIL.Image.fromarray(keyframes[-1]), prompt=prompt, seed=seed + index, steps=total_steps,
                strength=strength, guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                should_stop=should_stop, where=f" on keyframe {index} of {count}",
            )).convert("RGB")
            if rendered.size != start.size:
                rendered = rendered.resize(start.size, PIL.Image.Resampling.LANCZOS)
            keyframes.append(np.asarray(rendered))
            report(index + 1)
        # 3. Fill in the frames between keyframes.
        frames = interpolate_frames(keyframes, num_frames, should_stop, lambda made: report(count + made))
        return FramesOutput(frames=np.stack(frames).astype(np.uint8), fps=fps)

    def render_keyframe(self, keyframe: Keyframe) -> PIL.Image.Image:
        """``keyframe`` rendered by a call of its own, stopped when its own ``should_stop`` says so."""
        return self.render_keyframes([keyframe], keyframe.should_stop, keyframe.where)[0]

    def render_keyframes(
        self, keyframes: Sequence[Keyframe], should_stop: ShouldStop | None = None, where: str = ""
    ) -> list[PIL.Image.Image]:
        """Render ``keyframes``, all of one :attr:`Keyframe.shape`, in ONE img2img call: image ``i``
        from ``keyframes[i]``'s image and prompt, with a generator seeded by its seed, so each image
        depends on its own keyframe only. ``should_stop`` is asked after each step, for the whole call.

        A lone keyframe is passed as single values, the call the frames loop has always made.

        Raises:
            InvalidInputError: if the keyframes differ in shape.
            Interrupted: when ``should_stop`` said stop.
        """
        if len({keyframe.shape for keyframe in keyframes}) != 1:
            raise InvalidInputError("the keyframes of one call must share one shape (size, steps, strength, guidance)")
        first = keyframes[0]
        device = str(self.pipeline.device)
        generators = [torch.Generator(device=device).manual_seed(keyframe.seed) for keyframe in keyframes]
        with self.lock:
            # DiffusionPipeline declares no __call__; every concrete pipeline does.
            result = self.pipeline(  # type: ignore[operator]
                prompt=_one_or_all([keyframe.prompt for keyframe in keyframes]),
                negative_prompt=_one_or_all([first.negative_prompt] * len(keyframes))
                if _uses_negative(first.guidance_scale, first.negative_prompt) else None,
                image=_one_or_all([keyframe.image for keyframe in keyframes]),
                strength=first.strength,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance_scale,
                generator=_one_or_all(generators),
                output_type="pil",
                callback_on_step_end=stop_between_steps(should_stop, where),
            )
        return list(result.images)


def _uses_negative(guidance_scale: float, negative_prompt: str | None) -> bool:
    return guidance_scale > 1.0 and bool(negative_prompt)


def _one_or_all(values: list[T]) -> T | list[T]:
    """A lone value as itself, several as a list: the pipeline sees the batch it is given."""
    return values[0] if len(values) == 1 else values
