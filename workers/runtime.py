"""What a worker process holds on to between messages: settings, stores, models.

Built lazily, once per process (dramatiq forks worker processes after
import). Models come from one ``ModelRegistry``, so each is loaded once and
stays resident however many threads and stages use it.
"""

from __future__ import annotations

from functools import cached_property, lru_cache

import redis

from pipelines import (
    CameraMotionFrames,
    Img2ImgFrames,
    ModelProfile,
    ModelRegistry,
    PromptEnhancer,
    SafetyClassifier,
    TextToImage,
    resolve_profile,
)
from queue_config.broker import resolve_redis_url
from queue_config.settings import Settings, get_settings
from storage import ObjectStore, open_store
from workers.job_status import JobStatusStore


class Runtime:
    """Per-process resources of the stage actors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings)

    @cached_property
    def status(self) -> JobStatusStore:
        client = redis.Redis.from_url(resolve_redis_url(self.settings), decode_responses=True)
        return JobStatusStore(client, self.settings.namespace)

    @cached_property
    def models(self) -> ModelRegistry:
        return ModelRegistry(device=self.settings.device or None)

    @cached_property
    def profile(self) -> ModelProfile:
        return resolve_profile(self.settings.model_profile, self.settings.data_dir / "models")

    def prompt_enhancer(self) -> PromptEnhancer:
        profile = self.profile
        return self.models.get(
            "prompt_enhancer",
            lambda device: PromptEnhancer.from_pretrained(profile.text_model, profile.embedding_model, device),
        )

    def text_to_image(self) -> TextToImage:
        model = self.profile.image_model
        return self.models.get("text_to_image", lambda device: TextToImage.from_pretrained(model, device))

    def img2img_frames(self) -> Img2ImgFrames:
        return self.models.get("img2img_frames", lambda device: Img2ImgFrames.from_text_to_image(self.text_to_image()))

    def camera_frames(self) -> CameraMotionFrames:
        return self.models.get("camera_frames", lambda device: CameraMotionFrames())

    def safety_classifier(self) -> SafetyClassifier:
        return self.models.get("safety_classifier", lambda device: SafetyClassifier.from_pretrained(device=device))


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    return Runtime(get_settings())
