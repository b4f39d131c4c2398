"""Jobs the safety checks blocked: counts by check and category, and the newest blocked jobs.

Both are kept by the scripts that record a block (workers/jobs/finish_counts.lua), so they cover
the prompt screen at submission as well as the image and frames checks in the stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from workers.jobs.record import JobRecord, JobStatusStore

#: Blocked jobs the dashboard lists, newest first.
RECENT_BLOCKS = 50


@dataclass(frozen=True, order=True)
class BlockCount:
    """How many jobs one check blocked for one category (since the counts began)."""

    check: str
    category: str
    count: int


def block_counts(status: JobStatusStore) -> list[BlockCount]:
    """Every check and category that has blocked a job, sorted by check, then category."""
    raw = cast("dict[str, str]", status.client.hgetall(status.safety_blocks_key))
    pairs = ((name.partition(":"), int(value)) for name, value in raw.items())
    return sorted(BlockCount(check, category, count) for (check, _, category), count in pairs)


def recent_blocks(status: JobStatusStore, limit: int = RECENT_BLOCKS) -> list[JobRecord]:
    """The newest blocked jobs whose records are still kept (older ones have expired), newest first."""
    ids = cast("list[str]", status.client.zrevrange(status.safety_blocked_key, 0, max(0, limit - 1)))
    return [record for record in map(status.get, ids) if record is not None]
