"""Errors raised by framequeue's model pipelines.

Every pipeline error derives from :class:`PipelineError`, so a stage actor can tell a
model failure from a queue failure with a single ``except``.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for every error raised under ``pipelines``."""


class UnknownProfileError(PipelineError, KeyError):
    """Raised when a model profile name is not one of the known profiles."""


class UnknownBackendError(PipelineError, ValueError):
    """Raised when a backend or motion name is not supported."""


class InvalidInputError(PipelineError, ValueError):
    """Raised when a pipeline is called with arguments it cannot honour (sizes, counts)."""


class VideoEncodeError(PipelineError):
    """Raised when ffmpeg fails to encode a video; the message carries ffmpeg's stderr tail."""
