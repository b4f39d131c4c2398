"""Cached repeats: a stage whose inputs match an earlier finished run hands on that run's output.

A stage's key hashes what shapes its output: the spec fields it declares
(``queue_config.stages.CACHED_STAGE_FIELDS``), the content hashes of the references it is handed
and the identity of what it runs them through (models with their revisions, the settings behind
its verdicts; given by the caller). Storage keys are named by their bytes' sha256
(``storage.content_key``), so a reference's hash stands for its bytes, whichever job's prefix
holds them.

An entry, ``{namespace}:stage_cache:{stage}:{key}``, is the JSON of a run's outcome (references,
artifacts, record fields) and the id of the job that ran it; it lives as long as a finished job's
record (``retention_s``). Only outcomes that let the job go on are kept, and not those that carry
safety flags (they merge with the job's own earlier flags). A hit is used only while every object
it references is still in storage; else the stage runs again and its entry is replaced. Hits and
misses are counted per stage in ``{namespace}:stage_cache:counts`` (``{stage}:hit``, ``{stage}:miss``).
A job with ``cache: false`` neither reads nor counts; its runs are still kept for later jobs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis
from dramatiq.logging import get_logger

from queue_config.stages import CACHED_STAGE_FIELDS
from storage import ObjectStore, StoredObject
from storage.base import content_name
from workers.jobs.messages import StageMessage
from workers.jobs.outcome import StageOutcome

#: Part of every key: bump it when a stage's code changes what it makes from the same inputs.
CACHE_VERSION = "1"
#: Record fields that tie an outcome to its own job: an outcome carrying one is not kept.
JOB_BOUND_FIELDS = ("safety_flags",)
RESULTS = ("hit", "miss")


def cached_field(stage: str) -> str:
    """The record field that says ``stage`` was served from the cache; its value is the job that ran it."""
    return f"cached.{stage}"


def counts_key(namespace: str) -> str:
    return f"{namespace}:stage_cache:counts"


def cache_key(stage: str, message: StageMessage, identity: Mapping[str, str]) -> str | None:
    """The hex key of ``stage`` run on ``message`` with ``identity``; None when it cannot be cached.

    A stage that declares no fields, or a message with a reference not named by its content, has none.
    """
    fields = CACHED_STAGE_FIELDS.get(stage)
    names = {ref: content_name(key) for ref, key in message.refs.items()}
    if fields is None or None in names.values():
        return None
    material = {
        "version": CACHE_VERSION, "stage": stage, "refs": names, "runs_with": dict(identity),
        "spec": message.job.model_dump(mode="json", include=set(fields)),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CachedRun:
    """A kept outcome and the job whose run made it."""

    job_id: str
    outcome: StageOutcome

    def to_json(self) -> str:
        outcome = self.outcome
        artifacts = {name: stored.as_dict() for name, stored in outcome.artifacts.items()}
        return json.dumps({"job_id": self.job_id, "refs": outcome.refs, "artifacts": artifacts,
                           "record": outcome.record}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CachedRun:
        raw = json.loads(text)
        artifacts = {name: StoredObject(**fields) for name, fields in raw["artifacts"].items()}
        return cls(raw["job_id"], StageOutcome(refs=raw["refs"], artifacts=artifacts, record=raw["record"]))

    def object_keys(self) -> set[str]:
        return {*self.outcome.refs.values(), *(stored.key for stored in self.outcome.artifacts.values())}


class StageCache:
    """Serves stages from earlier identical runs, and keeps runs for later ones.

    Parameters:
        client: The Redis of the job records (responses decoded to str).
        namespace: Prefix of every key.
        store: The object store the outcomes' references point into.
        ttl_s: How long an entry is kept (the retention of finished jobs).
        identity: What ``stage`` runs its inputs through on this host with catalog model ``model``
          (None for a stage without one), as names and values; asked once per stage and model.
    """

    def __init__(self, client: redis.Redis, namespace: str, store: ObjectStore, *, ttl_s: float,
                 identity: Callable[[str, str | None], Mapping[str, str]]) -> None:
        self.client = client
        self.namespace = namespace
        self.store = store
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._identity = identity
        self._identities: dict[tuple[str, str | None], Mapping[str, str]] = {}
        self.logger = get_logger(__name__, type(self))

    def entry_key(self, stage: str, key: str) -> str:
        return f"{self.namespace}:stage_cache:{stage}:{key}"

    def run(self, stage: str, message: StageMessage, compute: Callable[[], StageOutcome],
            model: str | None = None) -> StageOutcome:
        """The outcome of an earlier identical run of ``stage`` (with catalog model ``model``) if one is
        usable, else ``compute()``'s (then kept)."""
        if stage not in CACHED_STAGE_FIELDS:
            return compute()
        key = cache_key(stage, message, self.identity(stage, model))
        if key is None:
            return compute()
        if message.job.cache:
            hit = self.lookup(stage, key)
            self.client.hincrby(counts_key(self.namespace), f"{stage}:{'hit' if hit else 'miss'}")
            if hit is not None:
                self.logger.info("Job %s: %s served from the cache (run by job %s).", message.job.id, stage, hit.job_id)
                outcome = hit.outcome
                return StageOutcome(refs=outcome.refs, artifacts=outcome.artifacts,
                                    record={**outcome.record, cached_field(stage): hit.job_id})
        outcome = compute()
        self.keep(stage, key, CachedRun(message.job.id, outcome))
        return outcome

    def identity(self, stage: str, model: str | None = None) -> Mapping[str, str]:
        if (stage, model) not in self._identities:
            self._identities[stage, model] = self._identity(stage, model)
        return self._identities[stage, model]

    def lookup(self, stage: str, key: str) -> CachedRun | None:
        """The kept run under ``key``, if every object it references is still stored."""
        text = cast("str | None", self.client.get(self.entry_key(stage, key)))
        if text is None:
            return None
        run = CachedRun.from_json(text)
        missing = sorted(object_key for object_key in run.object_keys() if not self.store.exists(object_key))
        if missing:
            self.logger.info("Cached %s of job %s lost %s from storage: running it again.", stage, run.job_id,
                             ", ".join(missing))
            return None
        return run

    def keep(self, stage: str, key: str, run: CachedRun) -> None:
        """Keep ``run`` if a later job may reuse it: it lets the job go on, and names only stored content."""
        outcome = run.outcome
        if outcome.final_state or any(name in outcome.record for name in JOB_BOUND_FIELDS):
            return
        if any(content_name(object_key) is None for object_key in run.object_keys()):
            return
        self.client.set(self.entry_key(stage, key), run.to_json(), px=self.ttl_ms)


def cache_counts(client: redis.Redis, namespace: str) -> dict[tuple[str, str], int]:
    """Hits and misses so far by (stage, result), every cacheable stage and result listed (0 included)."""
    raw = cast("dict[Any, Any]", client.hgetall(counts_key(namespace)))
    counted = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    return {(stage, result): counted.get(f"{stage}:{result}", 0) for stage in CACHED_STAGE_FIELDS for result in RESULTS}
