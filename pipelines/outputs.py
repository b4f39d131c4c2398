"""Typed results returned by the pipeline stages.

Each stage returns one of these dataclasses rather than a bare tuple, so that the stage
actors in ``workers/`` read fields by name and new fields can be added without breaking
callers.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import numpy as np
import PIL.Image


@dataclass(frozen=True)
class EnhancedPrompt:
    """Result of :class:`pipelines.PromptEnhancer`.

    Attributes:
        prompt: The final prompt to render: original + continuation + modifiers, length-bounded.
        continuation: The cleaned text the language model added (may be empty).
        modifiers: The style modifiers retrieved for the prompt, best match first.
    """

    prompt: str
    continuation: str
    modifiers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageOutput:
    """Result of :class:`pipelines.TextToImage`: one RGB image per prompt, in input order."""

    images: list[PIL.Image.Image]


@dataclass(frozen=True)
class FramesOutput:
    """Result of the frame generators.

    Attributes:
        frames: RGB frames as a ``(num_frames, height, width, 3)`` uint8 array.
        fps: Frames per second the frames are meant to be played at.
    """

    frames: np.ndarray
    fps: int

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


@dataclass(frozen=True)
class VideoInfo:
    """Result of :func:`pipelines.encode_h264`: what was written, and where."""

    path: pathlib.Path
    num_frames: int
    fps: int
    size_bytes: int
