"""The prompt screen at the doors: one screen per process, and what a policy makes of its findings.

Every way in (the API, the intake, the CLI, batches) submits through ``workers.jobs.submit``,
which screens each job's prompt and negative prompt here before anything is recorded. The
screen holds a sentence embedder, so it is built on first use, once per process, and a test
may put another in its place with :func:`use_screen`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from queue_config.jobs import JobSpec
from queue_config.safety_policy import Check, SafetyFinding, SafetyPolicy, flags_field


class Screen(Protocol):
    """What the doors need of a prompt screen (``pipelines.prompt_safety.PromptScreen``)."""

    def screen_many(self, texts: Sequence[str], check: Check = Check.prompt) -> list[list[SafetyFinding]]: ...


@dataclass(frozen=True)
class Verdict:
    """A job's screening under a policy: the finding that blocks it, or those it is flagged for."""

    blocked: SafetyFinding | None = None
    flags: list[SafetyFinding] = field(default_factory=list)

    def record_fields(self) -> dict[str, str]:
        """The job-record fields: the block's check, category, score and reason, or ``safety_flags``."""
        if self.blocked is not None:
            return self.blocked.record_fields()
        return {"safety_flags": flags_field(self.flags)} if self.flags else {}


def screen_jobs(screen: Screen, policy: SafetyPolicy, specs: Sequence[JobSpec]) -> list[Verdict]:
    """Each job's verdict, from its prompt's and (if it has one) its negative prompt's findings."""
    findings = screen.screen_many([spec.prompt for spec in specs], Check.prompt)
    with_negative = [index for index, spec in enumerate(specs) if spec.negative_prompt.strip()]
    negative = screen.screen_many([specs[index].negative_prompt for index in with_negative], Check.negative_prompt)
    for index, found in zip(with_negative, negative, strict=True):
        findings[index] = findings[index] + found
    return [Verdict(policy.first_block(found), policy.flags(found)) for found in findings]


#: Torch threads in a door's process (see ``default_screen``).
SCREEN_THREADS = 1

_default: Screen | None = None
_default_lock = threading.Lock()


def default_screen() -> Screen:
    """The process's screen: the MiniLM prompt screen, loaded on first use.

    A door's process runs no other model, and screens one short prompt per request: torch gets one
    thread, so requests screen side by side rather than oversubscribe the cores (on 2 busy cores,
    60 ms a prompt instead of 500).
    """
    global _default
    with _default_lock:
        if _default is None:
            import torch  # with the embedder below: only when screening

            from pipelines.prompt_safety import PromptScreen

            torch.set_num_threads(SCREEN_THREADS)
            _default = PromptScreen.from_pretrained()
        return _default


def use_screen(screen: Screen | None) -> None:
    """Put ``screen`` in the default's place (None: build the real one again on next use)."""
    global _default
    with _default_lock:
        _default = screen
