"""Overnight batches: the file parser (``files``), the record and its actions (``store``), the run window."""

from workers.batches.store import (
    batch_job_ids,
    batch_progress,
    batches_key,
    cancel_batch,
    complete_if_done,
    items_key,
    list_batches,
    retry_failed,
    submit_lines,
)

__all__ = [
    "batch_job_ids",
    "batch_progress",
    "batches_key",
    "cancel_batch",
    "complete_if_done",
    "items_key",
    "list_batches",
    "retry_failed",
    "submit_lines",
]
