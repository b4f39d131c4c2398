"""What an operator sees and does, read from Redis: queues, workers, dead letters, throughput.

The dashboard, ``/metrics`` and the CLI share these reads and actions.
"""

from workers.ops.dead_letters import (
    DEAD_LETTERS_LIMIT,
    DeadLetter,
    dead_letters,
    delete_dead_letter,
    requeue_dead_letter,
)
from workers.ops.history import MinuteCounts, events_since, job_counts, throughput
from workers.ops.limits_usage import LimitUsage, limits_usage
from workers.ops.queues import (
    DelayedMessage,
    QueueStats,
    WorkerInfo,
    broker_heartbeats,
    delayed_messages,
    empty_queue,
    job_id_of,
    queue_names,
    queue_stats,
    ready_messages,
)
from workers.ops.retry import retry_job
from workers.ops.safety_blocks import RECENT_BLOCKS, BlockCount, block_counts, recent_blocks
from workers.ops.stage_rows import StageRow, WaitReasons, stage_rows, wait_reasons

__all__ = [
    "DEAD_LETTERS_LIMIT",
    "RECENT_BLOCKS",
    "BlockCount",
    "DeadLetter",
    "DelayedMessage",
    "LimitUsage",
    "MinuteCounts",
    "QueueStats",
    "StageRow",
    "WaitReasons",
    "WorkerInfo",
    "block_counts",
    "broker_heartbeats",
    "dead_letters",
    "delayed_messages",
    "delete_dead_letter",
    "empty_queue",
    "events_since",
    "job_counts",
    "job_id_of",
    "limits_usage",
    "queue_names",
    "queue_stats",
    "ready_messages",
    "recent_blocks",
    "requeue_dead_letter",
    "retry_job",
    "stage_rows",
    "throughput",
    "wait_reasons",
]
