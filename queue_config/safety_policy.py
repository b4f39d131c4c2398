"""What the safety checks look for, and what a deployment does when one fires.

Every check (the prompt screen at submission, the enhanced prompt, the key image right after
the ``image`` stage, sampled frames after ``video``) reports :class:`SafetyFinding` s: a category
and a score against that check's threshold. The deployment's :class:`SafetyPolicy` decides
whether a finding blocks the job, only flags it in the record, or is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Category(str, Enum):
    """The kinds of content a safety check may find."""

    sexual = "sexual"
    minors = "minors"
    violence = "violence"
    self_harm = "self_harm"
    hate = "hate"


class Check(str, Enum):
    """Which check fired, for the job record and the metrics."""

    prompt = "prompt"
    negative_prompt = "negative_prompt"
    enhanced_prompt = "enhanced_prompt"
    image = "image"
    frames = "frames"


class Action(str, Enum):
    block = "block"
    flag = "flag"
    allow = "allow"


@dataclass(frozen=True)
class SafetyFinding:
    """One check's score for one category, at or above that check's threshold."""

    check: Check
    category: Category
    score: float
    threshold: float

    def reason(self) -> str:
        """The sentence a blocked job's record carries."""
        return (
            f"blocked by the {self.check.value} check: {self.category.value} "
            f"(score {self.score:.3f} >= threshold {self.threshold:.3f})"
        )

    def record_fields(self) -> dict[str, str]:
        """The job-record fields of a block: which check, which category, what score."""
        return {
            "blocked_check": self.check.value,
            "blocked_category": self.category.value,
            "blocked_score": f"{self.score:.4f}",
            "error": self.reason(),
        }


def parse_categories(value: object) -> frozenset[Category]:
    """Category names, comma-separated or as a list; an unknown name raises ValueError."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, Iterable):
        raise ValueError(f"expected category names, got {value!r}")
    known = {category.value for category in Category}
    chosen = set()
    for raw in names:
        name = str(raw.value if isinstance(raw, Category) else raw).strip()
        if not name:
            continue
        if name not in known:
            raise ValueError(f"unknown safety category {name!r}; expected some of {sorted(known)}")
        chosen.add(Category(name))
    return frozenset(chosen)


@dataclass(frozen=True)
class SafetyPolicy:
    """Which categories block a job and which only flag it; any other category is ignored."""

    blocked: frozenset[Category] = frozenset(Category)
    flagged: frozenset[Category] = frozenset()

    def action(self, category: Category) -> Action:
        if category in self.blocked:
            return Action.block
        if category in self.flagged:
            return Action.flag
        return Action.allow

    def first_block(self, findings: Iterable[SafetyFinding]) -> SafetyFinding | None:
        """The highest-scoring finding that blocks, or None."""
        blocking = [finding for finding in findings if self.action(finding.category) is Action.block]
        return max(blocking, key=lambda finding: finding.score / max(finding.threshold, 1e-9), default=None)

    def flags(self, findings: Iterable[SafetyFinding]) -> list[SafetyFinding]:
        """The findings that only flag, for the record."""
        return [finding for finding in findings if self.action(finding.category) is Action.flag]


def flags_field(findings: Iterable[SafetyFinding]) -> str:
    """The ``safety_flags`` record field: ``check:category:score`` items, comma-separated."""
    return ",".join(f"{f.check.value}:{f.category.value}:{f.score:.3f}" for f in findings)
