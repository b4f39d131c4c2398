"""(l) The prompt screen: recall and false positives on the labelled set, the thresholds in force, latency.

Recall is the share of unsafe prompts the screen finds in any category (``own``: in the category
they are labelled with); false positives are the share of benign prompts it finds anything in,
by the category whose words they share. Latency is one prompt through ``PromptScreen.screen``:
cold (the first, just after loading), warm (new prompts, median) and repeated (from the cache),
with torch on one thread as in a door's process (``workers.jobs.screening``).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from pipelines.prompt_safety import NEGATIVE_THRESHOLDS, THRESHOLDS, PromptScreen
from pipelines.safety_eval import Evaluation, LabelledPrompt, calibrate, evaluate, load_labelled, score_all
from queue_config.safety_policy import Category
from workers.jobs.screening import SCREEN_THREADS

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "safety_prompts.csv"
WARM_PROMPTS = [f"a watercolour of a {thing} at dusk, soft light" for thing in (
    "harbour", "lighthouse", "meadow", "bakery", "glacier", "vineyard", "canyon", "market", "library", "garden",
    "bridge", "temple", "orchard", "desert", "volcano", "pier", "forest", "castle", "village", "waterfall")]


def bench_prompt_screen() -> None:
    torch.set_num_threads(SCREEN_THREADS)  # as a door's process runs it
    started = time.perf_counter()
    screen = PromptScreen.from_pretrained()
    loaded_s = time.perf_counter() - started
    cold_ms = _ms(lambda: screen.screen("a red fox in fresh snow, morning light"))
    warm_ms = statistics.median(_ms(lambda prompt=prompt: screen.screen(prompt)) for prompt in WARM_PROMPTS)
    cached_ms = statistics.median(_ms(lambda: screen.screen(WARM_PROMPTS[0])) for _ in range(20))
    rows = load_labelled(LABELLED)
    prompts = [row for row in rows if row.field == "prompt"]
    scores = score_all(screen, prompts)
    print(f"(l) prompt screen (MiniLM, {len(prompts)} labelled prompts): loaded in {loaded_s:.1f} s; per prompt, "
          f"{torch.get_num_threads()} torch thread: "
          f"{cold_ms:.0f} ms cold, {warm_ms:.1f} ms warm, {cached_ms:.2f} ms repeated (cached)")
    calibration = [i for i, row in enumerate(prompts) if row.split == "calibration"]
    picked = calibrate([prompts[i] for i in calibration], [scores[i] for i in calibration])
    print("    thresholds in force: " + ", ".join(f"{c.value} {THRESHOLDS[c]:.3f}" for c in Category)
          + " | calibration rule picks: " + ", ".join(f"{c.value} {picked[c]:.3f}" for c in Category))
    for split in ("calibration", "held_out"):
        chosen = [i for i, row in enumerate(prompts) if row.split == split]
        _print_split(split, [prompts[i] for i in chosen], evaluate([prompts[i] for i in chosen],
                                                                   [scores[i] for i in chosen], THRESHOLDS))
    negatives = [row for row in rows if row.field == "negative_prompt"]
    found = evaluate(negatives, score_all(screen, negatives), NEGATIVE_THRESHOLDS)
    print(f"    negative prompts ({len(negatives)}; threshold sexual {NEGATIVE_THRESHOLDS[Category.sexual]:.3f}): "
          f"recall {found.overall_recall:.3f}, false positives {found.overall_false_positive_rate:.3f}")


def _print_split(split: str, prompts: list[LabelledPrompt], result: Evaluation) -> None:
    unsafe = sum(prompt.label == "unsafe" for prompt in prompts)
    print(f"    {split}: recall {result.overall_recall:.3f} of {unsafe} unsafe, false positives "
          f"{result.overall_false_positive_rate:.3f} of {len(prompts) - unsafe} benign")
    print("      recall (own): " + ", ".join(
        f"{category} {result.recall[category]:.3f} ({result.recall_own[category]:.3f})" for category in result.recall))
    print("      false positives: " + ", ".join(
        f"{category} {rate:.3f}" for category, rate in result.false_positive_rate.items()))
    if result.missed or result.false_positives:
        print(f"      missed: {result.missed}; false positives: {result.false_positives}")


def _ms(call) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    bench_prompt_screen()
