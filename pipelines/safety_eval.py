"""Measuring the prompt screen on a labelled set: recall on unsafe prompts, false positives on benign ones.

The labelled set (``tests/data/safety_prompts.csv``) has one prompt a row: which ``split`` it is
in (``calibration`` or ``held_out``), which ``field`` it is read as (``prompt`` or
``negative_prompt``), its ``label`` (``unsafe`` or ``benign``), its ``category`` (for a benign
prompt, the category it shares words with, or ``none``) and its ``kind`` (``plain``,
``obfuscated``, ``lookalike``, ``everyday``). The test and ``scripts/bench.py`` both read it here.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.prompt_safety import PromptScreen
from queue_config.safety_policy import Category, Check


@dataclass(frozen=True)
class LabelledPrompt:
    split: str
    field: str
    label: str
    category: str
    kind: str
    prompt: str


@dataclass(frozen=True)
class Evaluation:
    """How one split fared under one set of thresholds."""

    #: Per category of unsafe prompt: the share caught by any category, and by its own.
    recall: dict[str, float]
    recall_own: dict[str, float]
    #: Per category a benign prompt shares words with (and ``none``): the share wrongly caught.
    false_positive_rate: dict[str, float]
    overall_recall: float
    overall_false_positive_rate: float
    missed: list[str]
    false_positives: list[str]


def load_labelled(path: Path) -> list[LabelledPrompt]:
    with path.open(encoding="utf-8", newline="") as file:
        return [LabelledPrompt(**row) for row in csv.DictReader(file)]


def score_all(screen: PromptScreen, prompts: Sequence[LabelledPrompt]) -> list[dict[Category, float]]:
    """Each prompt's category scores, read as its field."""
    scores: list[dict[Category, float]] = [{} for _ in prompts]
    for field in {prompt.field for prompt in prompts}:
        indexes = [i for i, prompt in enumerate(prompts) if prompt.field == field]
        for index, found in zip(indexes, screen.scores_many([prompts[i].prompt for i in indexes], Check(field)),
                                strict=True):
            scores[index] = found
    return scores


def evaluate(
    prompts: Sequence[LabelledPrompt], scores: Sequence[Mapping[Category, float]], thresholds: Mapping[Category, float]
) -> Evaluation:
    """Recall and false-positive rates of ``prompts`` scored ``scores`` under ``thresholds``."""

    def caught(found: Mapping[Category, float]) -> set[str]:
        return {category.value for category, score in found.items() if score >= thresholds[category]}

    rows = [(prompt, caught(found)) for prompt, found in zip(prompts, scores, strict=True)]
    unsafe = [(prompt, hits) for prompt, hits in rows if prompt.label == "unsafe"]
    benign = [(prompt, hits) for prompt, hits in rows if prompt.label == "benign"]

    def share(pairs: list[tuple[LabelledPrompt, set[str]]], own: bool = False) -> float:
        hit = [prompt.category in hits if own else bool(hits) for prompt, hits in pairs]
        return sum(hit) / len(hit) if hit else 0.0

    def by_category(pairs: list[tuple[LabelledPrompt, set[str]]]) -> dict[str, list[tuple[LabelledPrompt, set[str]]]]:
        grouped: dict[str, list[tuple[LabelledPrompt, set[str]]]] = {}
        for pair in pairs:
            grouped.setdefault(pair[0].category, []).append(pair)
        return grouped

    return Evaluation(
        recall={category: share(pairs) for category, pairs in by_category(unsafe).items()},
        recall_own={category: share(pairs, own=True) for category, pairs in by_category(unsafe).items()},
        false_positive_rate={category: share(pairs) for category, pairs in by_category(benign).items()},
        overall_recall=share(unsafe),
        overall_false_positive_rate=share(benign),
        missed=[prompt.prompt for prompt, hits in unsafe if not hits],
        false_positives=[f"{prompt.prompt} ({', '.join(sorted(hits))})" for prompt, hits in benign if hits],
    )


def calibrate(
    prompts: Sequence[LabelledPrompt], scores: Sequence[Mapping[Category, float]], *, gap: float = 0.02
) -> dict[Category, float]:
    """Per category, the threshold the calibration rule picks on ``prompts``.

    Midway between the highest score of a benign prompt and the lowest of an unsafe prompt of
    that category, and at least ``gap`` above the benign one.
    """
    chosen = {}
    for category in {category for found in scores for category in found}:
        benign = [found[category] for prompt, found in zip(prompts, scores, strict=True) if prompt.label == "benign"]
        unsafe = [found[category] for prompt, found in zip(prompts, scores, strict=True)
                  if prompt.label == "unsafe" and prompt.category == category.value]
        if benign and unsafe:
            chosen[category] = round(max(max(benign) + gap, (max(benign) + min(unsafe)) / 2), 3)
    return chosen
