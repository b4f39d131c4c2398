"""Stage functions: each turns a StageMessage into a StageOutcome.

They hold no queue code; ``workers.actors`` wraps each in an actor. Each
writes its outputs under content-addressed keys, so a rerun (at-least-once
delivery) rewrites nothing and hands on the same references.
"""

from __future__ import annotations

from collections.abc import Callable

from workers.jobs.messages import StageMessage
from workers.jobs.outcome import StageOutcome
from workers.runtime import Runtime
from workers.stages.generate import frames, image, prompt_enhance, video
from workers.stages.publish import safety_check, upload

StageFunction = Callable[[Runtime, StageMessage], StageOutcome]

STAGE_FUNCTIONS: dict[str, StageFunction] = {
    "prompt_enhance": prompt_enhance,
    "image": image,
    "frames": frames,
    "video": video,
    "safety_check": safety_check,
    "upload": upload,
}

__all__ = ["STAGE_FUNCTIONS", "StageFunction", "StageOutcome"]
