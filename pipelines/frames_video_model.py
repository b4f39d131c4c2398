"""Image to frames by an image-to-video diffusion model: the clip is denoised whole, from the still.

The img2img and camera backends make keyframes one at a time and fill in the rest; an
image-to-video model denoises all the frames of a clip together, attending across time, so
the motion is the model's own rather than a warp. This backend drives diffusers' Stable Video
Diffusion pipeline: SVD img2vid in the standard profile, a tiny random-weight model of the
same architecture in tests (:func:`pipelines.tiny_models.build_tiny_image_to_video_model`).
The model is conditioned on the still (a CLIP image embedding and the still's VAE latents), on
the frame rate and on how much to move (``motion_bucket_id``).

How many frames the model makes: SVD makes as many as it is asked for, but it learned clips of
one length (the UNet's ``num_frames``: 14 for img2vid, 25 for img2vid-xt), and every frame's
latents are denoised at once, so memory grows with the count. So the model makes at most
``max_model_frames`` frames spanning the whole clip, and when a job asks for more, the frames
between them are filled in by optical-flow interpolation (:mod:`pipelines.interpolation`), as
the other backends fill in between their keyframes. The frame rate the model is conditioned on
is its own frames' rate over the clip's duration, so the motion per second is the same either way.
"""

from __future__ import annotations

import threading
from typing import cast

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import StableVideoDiffusionPipeline

from pipelines.errors import InvalidInputError, ShouldStop
from pipelines.interpolation import interpolate_frames
from pipelines.loading import load_diffusion_pipeline
from pipelines.outputs import FramesOutput
from pipelines.progress import StepProgress, frame_counter
from pipelines.text_to_image import stop_between_steps

#: Default denoising steps: Stable Video Diffusion's own default.
DEFAULT_STEPS = 25
#: Default amount of motion, 0 to 255: SVD's default, the middle of what it was trained on.
DEFAULT_MOTION_BUCKET_ID = 127
#: Default strength of the noise added to the still before it conditions the clip: more noise
#: makes more motion and a looser likeness to the still.
DEFAULT_NOISE_AUG_STRENGTH = 0.02
#: Guidance rises linearly from the first frame's scale to the last frame's (SVD's defaults):
#: the first frame stays close to the still, later frames lean more on the conditioning.
DEFAULT_MIN_GUIDANCE_SCALE = 1.0
DEFAULT_MAX_GUIDANCE_SCALE = 3.0
#: Frames the VAE decodes at once: fewer lowers the decoder's peak memory, more keeps colours
#: steadier from frame to frame (the decoder attends across the frames of a chunk).
DEFAULT_DECODE_CHUNK_FRAMES = 8
#: The fewest frames the model is asked for: its guidance ramp needs a first and a last frame.
MIN_MODEL_FRAMES = 2


class ImageToVideoFrames:
    """Renders a clip from a still image with a Stable-Video-Diffusion-layout pipeline.

    Parameters:
        pipeline: A loaded diffusers ``StableVideoDiffusionPipeline`` (or one with its call).
        max_model_frames: Most frames one model call makes; more are interpolated. ``None``:
            the count the UNet was trained on (its config's ``num_frames``).
        lock: Held while the model renders; see :class:`pipelines.TextToImage`.
    """

    def __init__(
        self,
        pipeline: StableVideoDiffusionPipeline,
        *,
        max_model_frames: int | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        trained_frames = int(pipeline.unet.config.num_frames)
        self.pipeline = pipeline
        self.max_model_frames = max(MIN_MODEL_FRAMES, max_model_frames or trained_frames)
        self.lock = lock if lock is not None else threading.Lock()

    @classmethod
    def from_pretrained(
        cls, model: str, device: str = "cpu", *, revision: str | None = None, dtype: str | None = None
    ) -> ImageToVideoFrames:
        """Load ``model`` (hub id or directory) onto ``device``; float16 on CUDA, else float32, unless
        ``dtype`` names another. ``revision`` pins a hub commit."""
        # from_pretrained on a concrete pipeline class always builds that class.
        pipeline = load_diffusion_pipeline(StableVideoDiffusionPipeline, model, device, revision=revision, dtype=dtype)
        return cls(cast(StableVideoDiffusionPipeline, pipeline))

    @property
    def size_multiple_px(self) -> int:
        """Rendered sides are multiples of this: the VAE's downsampling factor."""
        return int(self.pipeline.vae_scale_factor)

    def __call__(
        self,
        image: PIL.Image.Image,
        num_frames: int,
        fps: int,
        seed: int,
        steps: int = DEFAULT_STEPS,
        *,
        motion_bucket_id: int = DEFAULT_MOTION_BUCKET_ID,
        noise_aug_strength: float = DEFAULT_NOISE_AUG_STRENGTH,
        should_stop: ShouldStop | None = None,
        progress: StepProgress | None = None,
    ) -> FramesOutput:
        """Return ``num_frames`` frames at ``image``'s size, played at ``fps``, grown from ``image``.

        The model renders at ``image``'s size rounded to :attr:`size_multiple_px`, and its frames
        are resized back when that differs. All its noise comes from one generator seeded with
        ``seed``. ``should_stop`` is asked after each diffusion step and before each interpolated
        frame; ``progress`` is told after each, counting steps and interpolated frames together,
        with the middle frame's latents at each step.

        Raises:
            InvalidInputError: if a count is under 1.
            Interrupted: when ``should_stop`` said stop (during the steps, before anything is decoded).
        """
        # 1. Check inputs.
        if num_frames < 1 or fps < 1 or steps < 1:
            raise InvalidInputError(f"num_frames, fps and steps must be at least 1, got {num_frames}, {fps}, {steps}")
        still = image.convert("RGB")
        # 2. Plan the model's frames: how many, at what rate, at what size.
        model_frames = max(MIN_MODEL_FRAMES, min(num_frames, self.max_model_frames))
        filled_in = num_frames if model_frames < num_frames else 0
        model_fps = fps if num_frames < 2 else max(1, round(fps * (model_frames - 1) / (num_frames - 1)))
        width, height = (self._render_side(side) for side in still.size)
        if (width, height) != still.size:
            still = still.resize((width, height), PIL.Image.Resampling.LANCZOS)
        total = steps + filled_in
        # 3. Denoise every frame together, then decode.
        frames = self._render(still, model_frames, model_fps, seed, steps, motion_bucket_id, noise_aug_strength,
                              should_stop, _steps_of(progress, total))
        if (width, height) != image.size:
            frames = [np.asarray(PIL.Image.fromarray(frame).resize(image.size, PIL.Image.Resampling.LANCZOS))
                      for frame in frames]
        # 4. Fill in the frames between the model's (or keep the first, when one frame was asked for).
        if model_frames != num_frames:
            report = frame_counter(progress if filled_in else None, total)
            frames = interpolate_frames(frames, num_frames, should_stop, lambda made: report(steps + made))
        return FramesOutput(frames=np.stack(frames), fps=fps)

    def _render_side(self, side_px: int) -> int:
        multiple = self.size_multiple_px
        return max(multiple, round(side_px / multiple) * multiple)

    def _render(
        self,
        still: PIL.Image.Image,
        num_frames: int,
        fps: int,
        seed: int,
        steps: int,
        motion_bucket_id: int,
        noise_aug_strength: float,
        should_stop: ShouldStop | None,
        progress: StepProgress | None,
    ) -> list[np.ndarray]:
        """The model's ``num_frames`` frames of ``still``, as ``(H, W, 3)`` uint8 arrays."""
        generator = torch.Generator(device=str(self.pipeline.device)).manual_seed(seed)
        with self.lock:
            result = self.pipeline(
                still,
                height=still.height,
                width=still.width,
                num_frames=num_frames,
                num_inference_steps=steps,
                min_guidance_scale=DEFAULT_MIN_GUIDANCE_SCALE,
                max_guidance_scale=DEFAULT_MAX_GUIDANCE_SCALE,
                fps=fps,
                motion_bucket_id=motion_bucket_id,
                noise_aug_strength=noise_aug_strength,
                decode_chunk_size=DEFAULT_DECODE_CHUNK_FRAMES,
                generator=generator,
                output_type="np",
                callback_on_step_end=stop_between_steps(should_stop, " of the clip", progress),
            )
        clip = np.asarray(result.frames[0], dtype=np.float32)  # (frames, H, W, 3) in [0, 1]
        return list(np.clip(np.rint(clip * 255.0), 0, 255).astype(np.uint8))


def _steps_of(progress: StepProgress | None, total: int) -> StepProgress | None:
    """``progress`` for the diffusion steps: out of ``total`` units, with the middle frame's latents.

    Video latents are ``(batch, frames, channels, h, w)``; a progress hook expects an image's
    ``(batch, channels, h, w)``, as :func:`pipelines.progress.latent_preview` reads them.
    """
    if progress is None:
        return None

    def report(done: int, _steps: int, latents: torch.Tensor | None) -> None:
        progress(done, total, None if latents is None else latents[:, latents.shape[1] // 2])

    return report
