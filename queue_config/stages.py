"""The stages a job passes through, and how each is queued and retried.

Each stage is one dramatiq actor on its own queue, so hosts can specialise:
GPU hosts consume ``image`` and ``frames``, CPU hosts the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from queue_config.jobs import JobKind, Priority

#: Batch work runs on its own actors and queues (``image_batch``...), which every worker serves
#: after its interactive ones: dramatiq takes lower priority numbers first.
BATCH_SUFFIX = "_batch"
#: Between a model stage's name and its model's catalog id in a queue name (``image.sd-turbo``).
MODEL_SEPARATOR = "."
INTERACTIVE_PRIORITY = 0
BATCH_PRIORITY = 100


@dataclass(frozen=True)
class StageOptions:
    """Queue and delivery options of one stage actor."""

    name: str
    #: Transient failures are retried this many times, then the message is dead-lettered.
    max_retries: int = 3
    min_backoff_ms: int = 500
    max_backoff_ms: int = 30_000
    #: A stage running longer than this is interrupted (and retried). Every default is above the
    #: storage retry deadline (``storage_retry_s``, 3 min), so a storage outage is waited out
    #: rather than cut short; ``stage_time_limits_s`` overrides it per deployment.
    time_limit_ms: int = 10 * 60_000

    def actor_name(self, priority: Priority = Priority.interactive, model: str | None = None) -> str:
        """The actor (and queue) that carries this stage's messages of ``priority`` for ``model``:
        ``image``, ``image_batch``, or with a catalog model ``image.sd-turbo``, ``image_batch.sd-turbo``.
        """
        name = self.name + BATCH_SUFFIX if priority is Priority.batch else self.name
        return f"{name}{MODEL_SEPARATOR}{model}" if model else name

    def queue_names(self, model: str | None = None) -> tuple[str, str]:
        return self.actor_name(Priority.interactive, model), self.actor_name(Priority.batch, model)


STAGES: dict[str, StageOptions] = {
    options.name: options
    for options in (
        StageOptions("prompt_enhance", time_limit_ms=5 * 60_000),
        StageOptions("image"),
        StageOptions("frames"),
        StageOptions("video", time_limit_ms=5 * 60_000),
        StageOptions("safety_check", time_limit_ms=5 * 60_000),
        StageOptions("upload", max_retries=5, time_limit_ms=5 * 60_000),
    )
}

#: Stages that run a model of the catalog (queue_config/catalog.py), with a queue per model.
MODEL_STAGES = ("prompt_enhance", "image", "frames")

#: Stages hosted by GPU and CPU machines (the Procfile's two worker types).
GPU_STAGES = ("image", "frames")
CPU_STAGES = ("prompt_enhance", "video", "safety_check", "upload")

#: The job spec fields that shape each cacheable stage's output. A stage served from the cache
#: (workers/jobs/stage_cache.py) must make the same bytes from the same key, and its key is these
#: fields, the content hashes of the references it is handed (the enhanced prompt, the key image,
#: the frames) and what it runs them through (models and revisions, the settings behind its verdicts).
#: A stage left out always runs.
#:
#: - ``prompt_enhance``: the text model samples under the job's seed, with torch's RNG seeded in a
#:   lock (pipelines/prompt_enhance.py), and the style modifiers are retrieved by the prompt alone;
#:   ``enhance_prompt`` false stores the prompt as written. Its screen of what the model wrote
#:   judges that text by the policy, which is in the key.
#: - ``image``: the enhanced prompt comes as a reference; size, steps, seed and the negative prompt
#:   shape the render. Its image check is the safety threshold and policy applied to those bytes;
#:   both are in the key, so a changed policy recomputes.
#: - ``frames``: grown from the key image (and, by img2img, the prompt) under the seed; steps
#:   matter to img2img. The backend a job leaves unset is the setting's, which is in the key.
#: - ``video``: the frames, encoded at the job's fps.
#: - ``safety_check`` is never cached: what a job publishes is judged under the policy in force
#:   when it is published, on every job.
#: - ``upload`` is never cached: it writes the job's own manifest and shares a URL that expires.
CACHED_STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "prompt_enhance": ("prompt", "seed", "enhance_prompt"),
    "image": ("width", "height", "steps", "seed", "negative_prompt"),
    "frames": ("frames_backend", "num_frames", "fps", "seed", "steps"),
    "video": ("fps",),
}

_PLANS: dict[JobKind, tuple[str, ...]] = {
    JobKind.image: ("prompt_enhance", "image", "safety_check", "upload"),
    JobKind.video: ("prompt_enhance", "image", "frames", "video", "safety_check", "upload"),
}


def stage_of_actor(actor_name: str) -> str:
    """The stage an actor (or its queue) runs: ``image_batch.sd-turbo`` runs ``image``."""
    return actor_name.partition(MODEL_SEPARATOR)[0].removesuffix(BATCH_SUFFIX)


def model_of_actor(actor_name: str) -> str | None:
    """The catalog model an actor (or its queue) runs: ``image_batch.sd-turbo`` runs ``sd-turbo``."""
    return actor_name.partition(MODEL_SEPARATOR)[2] or None


def is_batch_queue(name: str) -> bool:
    """Whether a stage queue (or actor) carries batch work: ``image_batch``, ``image_batch.sd-turbo``."""
    return name.partition(MODEL_SEPARATOR)[0].endswith(BATCH_SUFFIX)


def stage_plan(kind: JobKind) -> tuple[str, ...]:
    """The stages a job of this kind runs, in order."""
    return _PLANS[kind]
