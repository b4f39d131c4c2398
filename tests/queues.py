"""The queue names tests use: a stage's queue for the tiny catalog's default model.

Stages that run a catalog model have a queue per model (``image.tiny-sd``); the others one per
priority (``video``, ``video_batch``). Tests that read or write a queue by name take it from here.
"""

from __future__ import annotations

from queue_config.catalog import catalog_of
from queue_config.jobs import Priority
from queue_config.settings import Settings
from queue_config.stages import MODEL_STAGES, STAGES, is_batch_queue, model_of_actor, stage_of_actor


def default_queue(stage: str, batch: bool = False, model: str | None = None) -> str:
    """The queue of ``stage`` for the tiny catalog's default model (or ``model``), interactive or batch."""
    if stage in MODEL_STAGES and model is None:
        model = catalog_of(Settings(model_profile="tiny", model_catalog=None, remote_config=None,
                                    frames_backend=None)).defaults[stage]  # type: ignore[index]
    return STAGES[stage].actor_name(Priority.batch if batch else Priority.interactive, model)


PROMPT_QUEUE = default_queue("prompt_enhance")
PROMPT_BATCH_QUEUE = default_queue("prompt_enhance", batch=True)
IMAGE_QUEUE = default_queue("image")
IMAGE_BATCH_QUEUE = default_queue("image", batch=True)
FRAMES_QUEUE = default_queue("frames")
FRAMES_BATCH_QUEUE = default_queue("frames", batch=True)


def queue_of(name: str) -> str:
    """``name`` as a queue name: a model stage's bare name (``image``, ``image_batch``) is its default
    model's queue; any other name is itself."""
    stage = stage_of_actor(name)
    if stage in MODEL_STAGES and model_of_actor(name) is None:
        return default_queue(stage, batch=is_batch_queue(name))
    return name
