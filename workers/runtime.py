"""What a worker process holds on to between messages: settings, stores, models.

Built lazily, once per process (dramatiq forks worker processes after
import). Models are the catalog's (queue_config/catalog.py), loaded through one
``ModelRegistry``: each once, resident however many threads and stages use it,
until the process's memory budget needs its room for another.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2

from pipelines import (
    CameraMotionFrames,
    ImageToVideoFrames,
    Img2ImgFrames,
    ModelProfile,
    ModelRegistry,
    PromptEnhancer,
    PromptScreen,
    SafetyClassifier,
    TextToImage,
    resolve_profile,
)
from pipelines.loading import diffusers_class
from pipelines.model_paths import pulled_dir, weights_path, weights_revision
from pipelines.model_pull import hub_offline, in_hub_cache, is_hub_id
from pipelines.remote import (
    OpenAICompatibleClient,
    ProviderClient,
    RemotePromptEnhancer,
    RemoteTextToImage,
    ReplicateClient,
)
from queue_config.catalog import Catalog, CatalogModel, RemoteBackend, catalog_of
from queue_config.remote import ProviderConfig, RemoteConfig, load_remote_config
from queue_config.settings import Settings, get_settings
from queue_config.stages import model_of_actor
from storage import ObjectStore, open_store
from workers.errors import ModelUnavailable
from workers.jobs.messages import StageMessage
from workers.jobs.record import JobStatusStore
from workers.keys import KeyPools

if TYPE_CHECKING:
    from workers.stages.batching import ImageBatcher
    from workers.stages.keyframe_batching import KeyframeBatcher


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
        return ModelRegistry(device=self.settings.device or None,
                             memory_budget_bytes=self.settings.model_memory_budget_bytes)

    @cached_property
    def profile(self) -> ModelProfile:
        return resolve_profile(self.settings.model_profile, self.settings.data_dir / "models")

    @property
    def models_dir(self) -> Path:
        """Where ``framequeue models pull`` leaves hub models for workers to load offline."""
        return self.settings.pulled_models_dir

    @cached_property
    def catalog(self) -> Catalog:
        return catalog_of(self.settings)

    @cached_property
    def remote_config(self) -> RemoteConfig:
        return load_remote_config(self.settings.remote_config)

    @cached_property
    def key_pools(self) -> KeyPools:
        return KeyPools.for_config(self.status.client, self.settings.namespace, self.remote_config)

    def served_models(self, queues: Sequence[str]) -> dict[str, str]:
        """What this process runs the stages of ``queues`` with, for the worker registry: profile, device,
        and the catalog models whose queues it serves."""
        served = sorted({model for queue in queues if (model := model_of_actor(queue))})
        return {"profile": self.settings.model_profile, "device": self.models.device, "models": ",".join(served)}

    def model(self, model_id: str) -> Any:
        """Catalog model ``model_id``, loaded once and kept resident within the memory budget.

        Raises:
            ModelUnavailable: the catalog has no such model, or its weights cannot be loaded here
                (the message names the model and what is missing; no traceback).
        """
        entry = self.catalog.models.get(model_id)
        if entry is None:
            raise ModelUnavailable(f"model {model_id!r} is not in this worker's catalog")
        size = entry.memory_mb * 2**20 if entry.memory_mb is not None else None
        return self.models.get(f"model:{model_id}", lambda device: self._load(entry, device), size_bytes=size)

    def model_for(self, stage: str, message: StageMessage) -> tuple[str, Any]:
        """The id and the loaded model that run ``stage`` of ``message``'s job."""
        model_id = self.catalog.route(message.job, stage, message.models)
        assert model_id is not None, f"{stage} runs no catalog model"
        return model_id, self.model(model_id)

    def device_of(self, model_id: str) -> str:
        """Where catalog model ``model_id`` runs here: its backend's device (the worker's for ``auto``),
        ``cpu`` for the camera maker (opencv), "" for a remote model, which holds no device of this host's."""
        backend = self.catalog.models[model_id].backend
        if isinstance(backend, RemoteBackend):
            return ""
        if backend.pipeline == "camera":
            return "cpu"
        if backend.pipeline == "img2img":
            return self.device_of(backend.base or "")
        return self.models.device if backend.device == "auto" else backend.device

    def model_revision(self, model_id: str) -> str:
        """What identifies catalog model ``model_id``'s weights here: a pinned or pulled hub commit, a
        directory's content hash, a provider's model name, or the maker and what it builds on."""
        backend = self.catalog.models[model_id].backend
        if isinstance(backend, RemoteBackend):
            return f"{backend.provider}:{backend.model}"
        if backend.pipeline == "camera":
            return f"opencv {cv2.__version__}"
        if backend.pipeline == "img2img":
            return f"img2img of {backend.base}@{self.model_revision(backend.base or '')}"
        if backend.revision:
            return backend.revision
        return weights_revision(weights_path(backend.model, self.settings.data_dir / "models", self.models_dir))

    def _load(self, entry: CatalogModel, device: str) -> Any:
        backend = entry.backend
        if isinstance(backend, RemoteBackend):
            remote_class = RemotePromptEnhancer if entry.stage == "prompt_enhance" else RemoteTextToImage
            return remote_class(self._provider_client(backend.provider), backend.model, self.key_pools)
        device = device if backend.device == "auto" else backend.device
        if backend.pipeline == "camera":
            return CameraMotionFrames()
        if backend.pipeline == "img2img":
            return Img2ImgFrames.from_text_to_image(self.model(backend.base or ""))
        try:
            path = weights_path(backend.model, self.settings.data_dir / "models", self.models_dir)
            pinned = {"revision": backend.revision, "dtype": backend.dtype}
            if entry.stage == "prompt_enhance":
                return PromptEnhancer.from_pretrained(path, self.profile.embedding_model, device, **pinned)
            if entry.stage == "image":
                return TextToImage.from_pretrained(path, device, pipeline_class=diffusers_class(backend.pipeline),
                                                   **pinned)
            return ImageToVideoFrames.from_pretrained(path, device, **pinned)
        except Exception as error:  # a missing model must read as one line in the job's record
            raise ModelUnavailable(unloadable(entry, error, self.models_dir)) from None

    def image_batcher(self, model_id: str) -> ImageBatcher:
        """Local image model ``model_id`` behind a batcher: up to ``image_batch_max`` renders in one call."""
        # Imported here: importing workers.stages runs its __init__, which imports this module.
        from workers.stages.batching import ImageBatcher

        return self.models.get(f"batcher:{model_id}", lambda _: ImageBatcher(
            self.model(model_id), max_batch=self.settings.image_batch_max,
            window_ms=self.settings.image_batch_window_ms, device=self.device_of(model_id)), size_bytes=0)

    def keyframe_batcher(self, model_id: str) -> KeyframeBatcher:
        """Img2img frames model ``model_id`` behind a batcher: up to ``image_batch_max`` keyframes in one call.

        The image batch settings serve: an img2img maker renders with its base image model's components.
        """
        from workers.stages.keyframe_batching import KeyframeBatcher

        return self.models.get(f"batcher:{model_id}", lambda _: KeyframeBatcher(
            self.model(model_id), max_batch=self.settings.image_batch_max,
            window_ms=self.settings.image_batch_window_ms, device=self.device_of(model_id)), size_bytes=0)

    def _provider_client(self, provider: str) -> ProviderClient:
        return provider_client(provider, self.remote_config.providers[provider])

    def prompt_screen(self) -> PromptScreen:
        """The prompt screen, for what the text model wrote (the doors screen what users wrote)."""
        return self.models.get("prompt_screen", lambda device: PromptScreen.from_pretrained(device=device))

    def safety_classifier(self) -> SafetyClassifier:
        return self.models.get("safety_classifier", lambda device: SafetyClassifier.from_pretrained(device=device))


def unloadable(entry: CatalogModel, error: Exception, models_dir: Path | None = None) -> str:
    """One line on why catalog model ``entry`` did not load, for the job's record.

    It says what is missing when that can be told from here: a hub model neither pulled into
    ``models_dir`` nor in the hub cache (with the command that fetches it), a directory that is not
    there. Otherwise it is the loader's error, in one line.
    """
    weights = getattr(entry.backend, "model", "")
    head = f"model {entry.id!r} could not be loaded"
    detail = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    pulled = pulled_dir(models_dir, weights) if models_dir is not None and is_hub_id(weights) else None
    if pulled is not None and pulled.is_dir():
        return f"{head} from {pulled} (pulled {weights}): {detail}"
    if is_hub_id(weights) and not in_hub_cache(weights):
        where = f"pulled into {models_dir}" if models_dir is not None else "pulled"
        why = "the hub is off (HF_HUB_OFFLINE)" if hub_offline() else f"fetching them failed ({detail})"
        return (f"{head}: its weights, hub model {weights}, are neither {where} nor in the hub cache, and {why}; "
                f"fetch them with `framequeue models pull {entry.id}` where the hub can be reached")
    if weights.startswith(("/", ".", "~")) and not Path(weights).expanduser().exists():
        return f"{head}: its weights directory {weights} does not exist"
    return f"{head} from {weights}: {detail}"


def provider_client(name: str, config: ProviderConfig) -> ProviderClient:
    """The client that speaks ``config.kind``'s API at ``config.base_url``."""
    client_class = {"openai": OpenAICompatibleClient, "replicate": ReplicateClient}[config.kind]
    return client_class(config.base_url, timeout_s=config.timeout_s, name=name)


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    return Runtime(get_settings())
