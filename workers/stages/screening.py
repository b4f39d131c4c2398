"""The output checks: images scored by the safety classifier, judged by the deployment's policy.

The classifier (:mod:`pipelines.safety`) scores one category, sexual content (OpenNSFW's
probability that an image is NSFW). A score at or above ``safety_threshold`` is a finding;
the policy (``safety_block_categories``, ``safety_flag_categories``) decides whether it blocks
the job or only flags it. Violence, gore, hate and self-harm in images are not scored: no
classifier for them with weights that load offline is wired in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from PIL import Image

from pipelines.metering import on_device
from queue_config.safety_policy import Category, Check, SafetyFinding, flags_field
from workers.jobs.messages import StageMessage
from workers.jobs.outcome import StageOutcome
from workers.runtime import Runtime


@dataclass(frozen=True)
class Verdict:
    """What one check found: the finding that blocks the job (if any) and the record's fields."""

    block: SafetyFinding | None
    record: dict[str, str] = field(default_factory=dict)

    def blocked(self) -> StageOutcome:
        """The outcome that ends the job as blocked, with the check, category and score recorded."""
        assert self.block is not None
        return StageOutcome(record={**self.record, **self.block.record_fields()}, final_state="blocked")


def screen(runtime: Runtime, message: StageMessage, images: list[Image.Image], check: Check) -> Verdict:
    """Score ``images`` (their worst score counts) and judge it; flags join those already recorded."""
    classifier = runtime.safety_classifier()
    with on_device(runtime.models.device):  # the classifier's time on a GPU is the stage's device time
        score = max(classifier(images), default=0.0)
    threshold = runtime.settings.safety_threshold
    findings = [SafetyFinding(check, Category.sexual, score, threshold)] if score >= threshold else []
    policy = runtime.settings.safety_policy
    record = {f"safety_score.{check.value}": f"{score:.4f}"}
    if flags := policy.flags(findings):
        record["safety_flags"] = merged_flags(recorded_flags(runtime, message.job.id), check, flags_field(flags))
    return Verdict(policy.first_block(findings), record)


def recorded_flags(runtime: Runtime, job_id: str) -> str:
    """The job's ``safety_flags`` so far (an earlier check's, such as the prompt screen's)."""
    status = runtime.status
    return cast("str | None", status.client.hget(status.job_key(job_id), "safety_flags")) or ""


def merged_flags(recorded: str, check: Check, new: str) -> str:
    """``recorded`` with ``check``'s items replaced by ``new``: a rerun of a check repeats nothing."""
    kept = [item for item in recorded.split(",") if item and not item.startswith(f"{check.value}:")]
    return ",".join([*kept, new])
