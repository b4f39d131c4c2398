"""What a stage hands back to its actor."""

from __future__ import annotations

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
