# ruff: noqa: F401  (the TYPE_CHECKING imports exist for type checkers and IDEs only)
"""framequeue's model code: one module per stage backend, components in, typed output out.

Nothing here knows about queues; the stage actors in ``workers/`` are thin shells around
these classes. Names are re-exported lazily: ``from pipelines import CameraMotionFrames``
imports only what that class needs, so a process that never renders never pays for
importing diffusers and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.errors import (
        Interrupted,
        InvalidInputError,
        PipelineError,
        ShouldStop,
        UnknownBackendError,
        UnknownProfileError,
        VideoEncodeError,
    )
    from pipelines.frames_camera import MOTIONS, CameraMotionFrames
    from pipelines.frames_img2img import Img2ImgFrames
    from pipelines.frames_video_model import ImageToVideoFrames
    from pipelines.interpolation import interpolate_frames, keyframe_count
    from pipelines.outputs import EnhancedPrompt, FramesOutput, ImageOutput, VideoInfo
    from pipelines.profiles import PROFILE_NAMES, ModelProfile, resolve_profile
    from pipelines.prompt_enhance import PromptEnhancer
    from pipelines.prompt_safety import PromptScreen
    from pipelines.registry import ModelRegistry, default_device
    from pipelines.safety import (
        SafetyClassifier,
        sample_frames,
    )
    from pipelines.style_modifiers import STYLE_MODIFIERS
    from pipelines.text_to_image import TextToImage
    from pipelines.video_encode import encode_h264

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "PipelineError": "errors",
    "Interrupted": "errors",
    "ShouldStop": "errors",
    "InvalidInputError": "errors",
    "UnknownBackendError": "errors",
    "UnknownProfileError": "errors",
    "VideoEncodeError": "errors",
    "MOTIONS": "frames_camera",
    "CameraMotionFrames": "frames_camera",
    "Img2ImgFrames": "frames_img2img",
    "ImageToVideoFrames": "frames_video_model",
    "interpolate_frames": "interpolation",
    "keyframe_count": "interpolation",
    "EnhancedPrompt": "outputs",
    "FramesOutput": "outputs",
    "ImageOutput": "outputs",
    "VideoInfo": "outputs",
    "PROFILE_NAMES": "profiles",
    "ModelProfile": "profiles",
    "resolve_profile": "profiles",
    "PromptEnhancer": "prompt_enhance",
    "PromptScreen": "prompt_safety",
    "ModelRegistry": "registry",
    "default_device": "registry",
    "SafetyClassifier": "safety",
    "sample_frames": "safety",
    "STYLE_MODIFIERS": "style_modifiers",
    "TextToImage": "text_to_image",
    "encode_h264": "video_encode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pipelines.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
