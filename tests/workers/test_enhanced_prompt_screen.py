"""The prompt_enhance stage screens what the text model wrote, with the real MiniLM prompt screen.

The text model is a stand-in that writes a given text (the tiny profile's random LM writes noise),
so the test chooses what the screen reads; the store and the job records are the real servers'.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipelines.outputs import EnhancedPrompt
from pipelines.prompt_safety import PromptScreen
from pipelines.registry import ModelRegistry
from queue_config.catalog import catalog_of
from queue_config.jobs import JobKind, JobSpec
from queue_config.safety_policy import Category
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from storage import ObjectStore, open_store
from workers.jobs.messages import StageMessage
from workers.jobs.record import JobStatusStore
from workers.stages.generate import prompt_enhance


class WritesText:
    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, prompt: str, seed: int) -> EnhancedPrompt:
        return EnhancedPrompt(prompt=self.text, continuation=self.text, modifiers=[])


class EnhancingRuntime:
    """What ``prompt_enhance`` uses of a worker's runtime."""

    def __init__(self, settings: Settings, screen: PromptScreen, store: ObjectStore, status: JobStatusStore,
                 enhanced: str) -> None:
        self.settings, self.store, self.status = settings, store, status
        self._screen, self._enhancer = screen, WritesText(enhanced)

    def model_for(self, stage: str, message: StageMessage) -> tuple[str, WritesText]:
        model_id = catalog_of(self.settings).route(message.job, stage, message.models)
        assert stage == "prompt_enhance" and model_id is not None
        return model_id, self._enhancer

    def model_revision(self, model_id: str) -> str:
        return "stand-in"

    def device_of(self, model_id: str) -> str:
        return "cpu"

    @property
    def models(self) -> ModelRegistry:
        return ModelRegistry(device="cpu")

    def prompt_screen(self) -> PromptScreen:
        return self._screen


@pytest.fixture(scope="module")
def screen() -> PromptScreen:
    return PromptScreen.from_pretrained()


@pytest.fixture
def job(status: JobStatusStore) -> Iterator[JobSpec]:
    spec = JobSpec(prompt="a quiet street at night", kind=JobKind.image, width=64, height=64)
    status.create(spec, stage_plan(spec.kind), state="running", safety_flags="prompt:hate:0.500")
    yield spec
    status.client.delete(status.job_key(spec.id))


def run_stage(settings: Settings, screen: PromptScreen, status: JobStatusStore, job: JobSpec, enhanced: str,
              **policy: frozenset[Category]):  # type: ignore[no-untyped-def]
    runtime = EnhancingRuntime(settings.model_copy(update=policy), screen, open_store(settings), status, enhanced)
    return prompt_enhance(runtime, StageMessage(job=job))  # type: ignore[arg-type]


def test_an_unsafe_enhanced_prompt_ends_the_job_blocked_before_any_image(
    settings: Settings, screen: PromptScreen, status: JobStatusStore, job: JobSpec
) -> None:
    outcome = run_stage(settings, screen, status, job, "a quiet street at night, a b.e.h.e.a.d.i.n.g, blood")

    assert outcome.final_state == "blocked" and not outcome.refs
    assert outcome.record["blocked_check"] == "enhanced_prompt"
    assert outcome.record["blocked_category"] == "violence" and float(outcome.record["blocked_score"]) > 0.5
    assert outcome.record["error"].startswith("blocked by the enhanced_prompt check: violence")


def test_a_flag_only_finding_in_the_enhanced_prompt_joins_the_jobs_flags(
    settings: Settings, screen: PromptScreen, status: JobStatusStore, job: JobSpec
) -> None:
    outcome = run_stage(settings, screen, status, job, "a quiet street at night, nazi propaganda glorifying hitler",
                        safety_block_categories=frozenset(Category) - {Category.hate},
                        safety_flag_categories=frozenset({Category.hate}))

    assert outcome.final_state == "" and "prompt" in outcome.refs
    flags = outcome.record["safety_flags"].split(",")
    assert flags[0] == "prompt:hate:0.500" and flags[1].startswith("enhanced_prompt:hate:")


def test_a_safe_enhanced_prompt_goes_on_unflagged(
    settings: Settings, screen: PromptScreen, status: JobStatusStore, job: JobSpec
) -> None:
    outcome = run_stage(settings, screen, status, job, "a quiet street at night, wet cobblestones, warm lamplight")

    assert outcome.final_state == "" and "prompt" in outcome.refs
    served = catalog_of(settings).defaults["prompt_enhance"]
    assert outcome.record == {"model.prompt_enhance": f"{served}@stand-in"}  # the model that ran it, no flags
