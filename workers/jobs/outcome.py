"""What a stage hands back, and how it reaches the job-status middleware.

dramatiq discards (and warns about, on every message) an actor's return value
unless the Results middleware is installed, so the actor shell hands the
outcome over through a thread-local instead: dramatiq runs an actor and its
``after_process_message`` hooks on the same worker thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from storage import StoredObject


@dataclass(frozen=True)
class StageOutcome:
    """New references for the next stage, artifacts and fields for the job record.

    A ``final_state`` ends the job here (``succeeded``, ``blocked``): no next
    stage is sent.
    """

    refs: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, StoredObject] = field(default_factory=dict)
    record: dict[str, str] = field(default_factory=dict)
    final_state: str = ""

    @classmethod
    def stored(cls, name: str, stored: StoredObject) -> StageOutcome:
        """The common case: one object stored, referenced and recorded under ``name``."""
        return cls(refs={name: stored.key}, artifacts={name: stored})


_handover = threading.local()


def hand_over(outcome: StageOutcome) -> None:
    """Called by the actor shell: leave the outcome for the middleware on this thread."""
    _handover.outcome = outcome


def has_outcome() -> bool:
    """Whether this thread's actor has handed an outcome over that the middleware has not taken."""
    return getattr(_handover, "outcome", None) is not None


def take_over() -> StageOutcome:
    """Called by the middleware: the outcome this thread's actor left (an empty one if none)."""
    outcome = getattr(_handover, "outcome", None) or StageOutcome()
    _handover.outcome = None
    return outcome
