"""``submit --wait``'s hint names what is missing: the stage, or the model a stage's worker does not serve."""

from __future__ import annotations

from workers.cli.submit import missing_worker_hint
from workers.ops.workers import WorkerEntry


def worker_of(*queues: str) -> WorkerEntry:
    """A live worker that consumes ``queues`` (and so serves their stages)."""
    return WorkerEntry(id="w", host="h", pid=1, stages=tuple(sorted({q.split(".")[0] for q in queues})),
                       queues=queues, models={}, threads=1, current_jobs=(), started_at=0.0, last_seen=0.0,
                       version="", stale=False, age_s=0.0)


def test_a_worker_of_the_stage_but_not_the_model_gets_a_hint_naming_the_model() -> None:
    hint = missing_worker_hint("image", "image.sdxl", [worker_of("image.sd-turbo", "image_batch.sd-turbo")])

    assert hint.startswith("hint: no live worker serves the image stage with model sdxl")
    assert "`framequeue worker --stages image --models sdxl`" in hint


def test_a_worker_of_the_queue_means_no_hint() -> None:
    assert missing_worker_hint("image", "image.sdxl", [worker_of("image.sdxl")]) == ""


def test_no_worker_of_a_stage_without_models_names_the_stage() -> None:
    hint = missing_worker_hint("prompt_enhance", "prompt_enhance", [worker_of("image.sdxl")])

    assert hint.startswith("hint: no live worker serves the prompt_enhance stage, so this job waits")


def test_without_the_queue_the_stage_decides() -> None:
    assert missing_worker_hint("image", "", [worker_of("image.sd-turbo")]) == ""
    assert missing_worker_hint("video", "", [worker_of("image.sd-turbo")]).startswith(
        "hint: no live worker serves the video stage")
