"""Image to frames by a virtual camera move: zoom or pan over the still, no model needed.

This is the cheap, always-available way to animate an image (the "Ken Burns" effect).
The camera is a crop window over the source image; a keyframe is an affine warp of the
source to that window, and the frames between keyframes come from optical-flow
interpolation like the img2img backend's. Speeds are per second of video, so a clip
covers the same motion at any frame rate.
"""

from __future__ import annotations

import cv2
import numpy as np
import PIL.Image

from pipelines.errors import InvalidInputError, ShouldStop, UnknownBackendError, stop_if_asked
from pipelines.interpolation import interpolate_frames, keyframe_count
from pipelines.outputs import FramesOutput
from pipelines.progress import StepProgress, frame_counter

MOTIONS: tuple[str, ...] = ("zoom_in", "zoom_out", "pan_left", "pan_right")
#: Default zoom speed: the magnification gained per second (0.15 = 15 % per second).
DEFAULT_ZOOM_PER_S = 0.15
#: Default pan speed, as a fraction of the image width travelled per second.
DEFAULT_PAN_PER_S = 0.12
#: How far the seed may move the point the camera zooms into or pans across, as a fraction
#: of the image size, so clips of one image with different seeds differ.
DEFAULT_FOCUS_JITTER = 0.1


class CameraMotionFrames:
    """Renders a clip by moving a virtual camera over a still image.

    Parameters:
        motion: One of :data:`MOTIONS`.
        zoom_per_s: Magnification gained (zoom_in) or shed (zoom_out) per second.
        pan_per_s: Fraction of the image width the camera travels per second when panning.
        focus_jitter: Largest seeded offset of the camera's focus, as a fraction of size.
    """

    def __init__(
        self,
        motion: str = "zoom_in",
        *,
        zoom_per_s: float = DEFAULT_ZOOM_PER_S,
        pan_per_s: float = DEFAULT_PAN_PER_S,
        focus_jitter: float = DEFAULT_FOCUS_JITTER,
    ) -> None:
        if motion not in MOTIONS:
            raise UnknownBackendError(f"unknown camera motion {motion!r}; expected one of {MOTIONS}")
        self.motion = motion
        self.zoom_per_s = zoom_per_s
        self.pan_per_s = pan_per_s
        self.focus_jitter = focus_jitter

    def __call__(
        self,
        image: PIL.Image.Image,
        num_frames: int,
        fps: int,
        seed: int,
        keyframe_every: int = 4,
        should_stop: ShouldStop | None = None,
        progress: StepProgress | None = None,
    ) -> FramesOutput:
        """Return ``num_frames`` frames at ``image``'s size, played at ``fps``.

        ``keyframe_every=1`` warps every frame exactly; larger values warp only keyframes.
        ``should_stop`` is asked before each keyframe and each frame; ``progress`` is told after
        each, counting keyframes and frames together.

        Raises:
            InvalidInputError: if a count is under 1.
            Interrupted: when ``should_stop`` said stop.
        """
        # 1. Check inputs.
        if num_frames < 1 or fps < 1 or keyframe_every < 1:
            raise InvalidInputError("num_frames, fps and keyframe_every must be at least 1")
        source = np.asarray(image.convert("RGB"))
        # 2. Place the camera at each keyframe's time and warp the source to it.
        duration_s = (num_frames - 1) / fps
        count = keyframe_count(num_frames, keyframe_every)
        focus = self._focus(seed)
        keyframes = []
        report = frame_counter(progress, count + num_frames)
        for index in range(count):
            stop_if_asked(should_stop, f"{index} of {count} keyframes")
            at = index / (count - 1) if count > 1 else 0.0
            keyframes.append(self._render(source, at, duration_s, focus))
            report(index + 1)
        # 3. Fill in the frames between keyframes.
        frames = interpolate_frames(keyframes, num_frames, should_stop, lambda made: report(count + made))
        return FramesOutput(frames=np.stack(frames), fps=fps)

    def _focus(self, seed: int) -> tuple[float, float]:
        """Return the seeded focus offset ``(dx, dy)``, each in ``[-jitter, jitter]``."""
        offset = np.random.default_rng(seed).uniform(-self.focus_jitter, self.focus_jitter, 2)
        return float(offset[0]), float(offset[1])

    def _render(self, source: np.ndarray, progress: float, duration_s: float, focus: tuple[float, float]) -> np.ndarray:
        """Warp ``source`` to the camera window at ``progress`` (0 = start, 1 = end)."""
        height, width = source.shape[:2]
        scale, center_x, center_y = self._camera(progress, duration_s, focus, width, height)
        matrix = np.array(
            [[scale, 0.0, width / 2 - scale * center_x], [0.0, scale, height / 2 - scale * center_y]],
            dtype=np.float64,
        )
        return cv2.warpAffine(
            source,
            matrix,
            (width, height),
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT_101,
        )

    def _camera(
        self, progress: float, duration_s: float, focus: tuple[float, float], width: int, height: int
    ) -> tuple[float, float, float]:
        """Return ``(scale, center_x_px, center_y_px)`` of the window; it never leaves the image."""
        if self.motion == "zoom_in":
            scale = 1.0 + self.zoom_per_s * duration_s * progress
        elif self.motion == "zoom_out":
            scale = 1.0 + self.zoom_per_s * duration_s * (1.0 - progress)
        else:  # panning needs a margin to travel in: zoom in by the distance travelled
            scale = 1.0 + self.pan_per_s * duration_s
        center_x = width / 2 + focus[0] * width
        center_y = height / 2 + focus[1] * height
        if self.motion.startswith("pan"):
            travel_px = width - width / scale
            direction = 1.0 if self.motion == "pan_right" else -1.0
            center_x = width / 2 + direction * travel_px * (progress - 0.5)
        half_w, half_h = width / (2 * scale), height / (2 * scale)
        center_x = min(max(center_x, half_w), width - half_w)
        center_y = min(max(center_y, half_h), height - half_h)
        return scale, center_x, center_y
