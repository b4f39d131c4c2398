"""Frame interpolation: fill in the frames between keyframes with optical flow.

Rendering every frame with a model is slow; the frame backends render a few keyframes and
this module fills in the rest. For each pair of neighbouring keyframes it estimates dense
optical flow both ways (Farneback), warps each keyframe part of the way toward the other,
and blends the two warps. Moving content slides rather than ghosting, as a plain
cross-fade would make it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from pipelines.errors import InvalidInputError, ShouldStop, stop_if_asked

#: Farneback pyramid: each level halves the image, down to 3 levels. Coarse levels are what
#: let it follow motion larger than its window, but OpenCV skips any level whose side would
#: fall under 32 px, so frames under about 128 px only track motion of a few pixels.
PYRAMID_SCALE = 0.5
PYRAMID_LEVELS = 3
#: Farneback averaging window: 15 px with 3 iterations and a 5 px polynomial fit are
#: OpenCV's usual settings, robust on the soft textures diffusion models produce.
WINDOW_PX = 15
ITERATIONS = 3
POLY_N_PX = 5
POLY_SIGMA = 1.2


def keyframe_count(num_frames: int, keyframe_every: int) -> int:
    """Return how many keyframes to render for ``num_frames`` frames, one per ``keyframe_every``.

    The first and last frames are always keyframes, so 9 frames every 4 gives 3 keyframes.
    """
    return 1 + math.ceil(max(num_frames - 1, 0) / keyframe_every)


def interpolate_frames(
    keyframes: list[np.ndarray], num_frames: int, should_stop: ShouldStop | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Return ``num_frames`` frames spanning ``keyframes``, evenly spaced in time.

    The first and last output frames are the first and last keyframes. With more keyframes
    than ``num_frames``, evenly spaced keyframes are kept instead. ``should_stop`` is asked
    before each frame is made; ``on_frame`` is told how many are made after each.

    Raises:
        InvalidInputError: if there are no keyframes, ``num_frames`` < 1, or the keyframes
            differ in shape or are not ``(H, W, 3)`` uint8.
        Interrupted: when ``should_stop`` said stop.
    """
    _check(keyframes, num_frames)
    if len(keyframes) == 1 or num_frames == 1:
        return [keyframes[0].copy() for _ in range(num_frames)]
    if num_frames < len(keyframes):
        kept = np.linspace(0, len(keyframes) - 1, num_frames).round().astype(int)
        return [keyframes[index].copy() for index in kept]

    segments = len(keyframes) - 1
    flows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    frames: list[np.ndarray] = []
    for index in range(num_frames):
        stop_if_asked(should_stop, f"{index} of {num_frames} frames")
        position = index * segments / (num_frames - 1)
        segment = min(int(position), segments - 1)
        alpha = position - segment
        first, second = keyframes[segment], keyframes[segment + 1]
        if alpha < 1e-6:
            frames.append(first.copy())
        elif alpha > 1.0 - 1e-6:
            frames.append(second.copy())
        else:
            if segment not in flows:
                flows[segment] = (dense_flow(first, second), dense_flow(second, first))
            frames.append(flow_blend(first, second, *flows[segment], alpha))
        if on_frame is not None:
            on_frame(len(frames))
    return frames


def dense_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return per-pixel ``(dx, dy)`` with ``source[y, x]`` ~ ``target[y + dy, x + dx]``."""
    source_gray = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY)
    target_gray = cv2.cvtColor(target, cv2.COLOR_RGB2GRAY)
    flow = np.zeros((*source_gray.shape, 2), dtype=np.float32)
    flow = cv2.calcOpticalFlowFarneback(
        source_gray,
        target_gray,
        flow,
        PYRAMID_SCALE,
        PYRAMID_LEVELS,
        WINDOW_PX,
        ITERATIONS,
        POLY_N_PX,
        POLY_SIGMA,
        0,
    )
    return np.asarray(flow, dtype=np.float32)


def flow_blend(
    first: np.ndarray,
    second: np.ndarray,
    flow_forward: np.ndarray,
    flow_backward: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """Return the frame a fraction ``alpha`` of the way from ``first`` to ``second``.

    Each keyframe is backward-warped along its flow to time ``alpha`` (approximating the
    flow at the output pixel by the flow at the same input pixel), and the two warps are
    cross-faded with weights ``1 - alpha`` and ``alpha``.
    """
    height, width = first.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    from_first = _warp(first, grid_x - alpha * flow_forward[..., 0], grid_y - alpha * flow_forward[..., 1])
    from_second = _warp(
        second, grid_x - (1.0 - alpha) * flow_backward[..., 0], grid_y - (1.0 - alpha) * flow_backward[..., 1]
    )
    blended = (1.0 - alpha) * from_first.astype(np.float32) + alpha * from_second
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _warp(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _check(keyframes: list[np.ndarray], num_frames: int) -> None:
    if not keyframes:
        raise InvalidInputError("need at least one keyframe")
    if num_frames < 1:
        raise InvalidInputError(f"num_frames must be at least 1, got {num_frames}")
    shape = keyframes[0].shape
    for frame in keyframes:
        if frame.shape != shape or frame.ndim != 3 or shape[2] != 3 or frame.dtype != np.uint8:
            raise InvalidInputError(
                f"keyframes must all be (H, W, 3) uint8 of one shape; got {frame.shape} {frame.dtype} beside {shape}"
            )
