"""What a worker process holds on to between messages: settings, stores, models.

Built lazily, once per process (dramatiq forks worker processes after
import). Models come from one ``ModelRegistry``, so each is loaded once and
stays resident however many threads and stages use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from pipelines import (
    CameraMotionFrames,
    Img2ImgFrames,
    ModelProfile,
    ModelRegistry,
    PromptEnhancer,
    PromptScreen,
    SafetyClassifier,
    TextToImage,
    resolve_profile,
)
from pipelines.remote import (
    OpenAICompatibleClient,
    ProviderClient,
    RemotePromptEnhancer,
    RemoteTextToImage,
    ReplicateClient,
)
from queue_config.remote import ProviderConfig, RemoteConfig, load_remote_config
from queue_config.settings import Settings, get_settings
from storage import ObjectStore, open_store
from workers.jobs.record import JobStatusStore
from workers.keys import KeyPools

if TYPE_CHECKING:
    from workers.stages.batching import ImageBatcher


class Runtime:
    """Per-process resources of the stage actors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings)

    @cached_property
    def status(self) -> JobStatusStore:
        return JobStatusStore.from_settings(self.settings)

    @cached_property
    def models(self) -> ModelRegistry:
        return ModelRegistry(device=self.settings.device or None)

    @cached_property
    def profile(self) -> ModelProfile:
        return resolve_profile(self.settings.model_profile, self.settings.data_dir / "models")

    @cached_property
    def remote_config(self) -> RemoteConfig:
        return load_remote_config(self.settings.remote_config)

    @cached_property
    def key_pools(self) -> KeyPools:
        return KeyPools.for_config(self.status.client, self.settings.namespace, self.remote_config)

    def served_models(self, stages: Sequence[str]) -> dict[str, str]:
        """What this process runs ``stages`` with, for the worker registry: profile, device, remote routes."""
        models = {"profile": self.settings.model_profile, "device": self.models.device,
                  "frames_backend": self.settings.frames_backend}
        routes = self.remote_config.stages.items()
        return models | {stage: f"{route.provider}:{route.model}" for stage, route in routes if stage in stages}

    def prompt_enhancer(self) -> PromptEnhancer | RemotePromptEnhancer:
        """The stage's text model: a remote provider's if configured, else the local one."""
        route = self.remote_config.stages.get("prompt_enhance")
        if route is not None:
            return self.models.get("remote_prompt_enhancer", lambda _: RemotePromptEnhancer(
                self._provider_client(route.provider), route.model, self.key_pools))
        profile = self.profile
        return self.models.get(
            "prompt_enhancer",
            lambda device: PromptEnhancer.from_pretrained(profile.text_model, profile.embedding_model, device),
        )

    def text_to_image(self) -> TextToImage | RemoteTextToImage:
        """The stage's image model: a remote provider's if configured, else the local one."""
        route = self.remote_config.stages.get("image")
        if route is not None:
            return self.models.get("remote_text_to_image", lambda _: RemoteTextToImage(
                self._provider_client(route.provider), route.model, self.key_pools))
        return self.local_text_to_image()

    def local_text_to_image(self) -> TextToImage:
        model = self.profile.image_model
        return self.models.get("text_to_image", lambda device: TextToImage.from_pretrained(model, device))

    def image_batcher(self) -> ImageBatcher:
        """The local image model behind a batcher: up to ``image_batch_max`` renders in one call."""
        # Imported here: importing workers.stages runs its __init__, which imports this module.
        from workers.stages.batching import ImageBatcher

        return self.models.get("image_batcher", lambda _: ImageBatcher(
            self.local_text_to_image(), max_batch=self.settings.image_batch_max,
            window_ms=self.settings.image_batch_window_ms))

    def _provider_client(self, provider: str) -> ProviderClient:
        return provider_client(provider, self.remote_config.providers[provider])

    def img2img_frames(self) -> Img2ImgFrames:
        return self.models.get(
            "img2img_frames", lambda device: Img2ImgFrames.from_text_to_image(self.local_text_to_image())
        )

    def camera_frames(self) -> CameraMotionFrames:
        return self.models.get("camera_frames", lambda device: CameraMotionFrames())

    def prompt_screen(self) -> PromptScreen:
        """The prompt screen, for what the text model wrote (the doors screen what users wrote)."""
        return self.models.get("prompt_screen", lambda device: PromptScreen.from_pretrained(device=device))

    def safety_classifier(self) -> SafetyClassifier:
        return self.models.get("safety_classifier", lambda device: SafetyClassifier.from_pretrained(device=device))


def provider_client(name: str, config: ProviderConfig) -> ProviderClient:
    """The client that speaks ``config.kind``'s API at ``config.base_url``."""
    client_class = {"openai": OpenAICompatibleClient, "replicate": ReplicateClient}[config.kind]
    return client_class(config.base_url, timeout_s=config.timeout_s, name=name)


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    return Runtime(get_settings())
