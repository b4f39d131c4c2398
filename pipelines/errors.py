"""Errors raised by framequeue's model pipelines.

Every pipeline error derives from :class:`PipelineError`, so a stage actor can tell a
model failure from a queue failure with a single ``except``. A long-running pipeline call
takes a ``should_stop`` callable, asks it between units of work and raises
:class:`Interrupted` when it says stop: the caller decides why (a worker stops the stage of
a cancelled job), the pipeline only where it can stop.
"""

from __future__ import annotations

from collections.abc import Callable


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


class Interrupted(PipelineError):
    """Raised when a pipeline's ``should_stop`` asked it to stop; the message says how far it got.

    Attributes:
        where: How far the work got, e.g. ``"step 3 of 50"`` or ``"17 of 240 frames"``.
    """

    def __init__(self, where: str) -> None:
        super().__init__(f"stopped on request after {where}")
        self.where = where


#: Asked between units of work (a diffusion step, a frame); True means stop now.
ShouldStop = Callable[[], bool]


def stop_if_asked(should_stop: ShouldStop | None, where: str) -> None:
    """Raise :class:`Interrupted` (saying ``where``) if ``should_stop`` says to stop."""
    if should_stop is not None and should_stop():
        raise Interrupted(where)
