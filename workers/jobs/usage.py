"""Usage: what each stage run of a job used and cost, kept in its record and summed per tenant and day.

Every run of a stage that started (it returned, raised, or was put back to wait) is one
:class:`StageRun`: its wall seconds, its seconds on a CUDA device and the provider calls it made
(pipelines/metering.py counts both while it runs), and what that cost by the catalog model's
``cost``. The job-status middleware adds the run with one script call on the pipeline that records
the run's end, so usage costs no round trip of its own. It is added to:

- the job's record: ``usage.{stage}.wall_s``, ``.device_s``, ``.calls``, ``.cost``, summed over every
  run of the stage (a retried run used the fleet too; ``timing.{stage}`` keeps the last run alone);
- the tenant's UTC day, ``{namespace}:usage:{tenant}:{YYYY-MM-DD}``, a hash of ``{stage}:{model}:{measure}``
  fields (model ``-`` for a stage that runs none; ``jobs`` counts the runs that completed the stage). It
  expires ``USAGE_KEPT_BEYOND_RETENTION_S`` after the job records of its day would: a month of bills
  can still be read after the jobs behind them are gone;
- the all-time totals, ``{namespace}:usage:totals``, ``{tenant}:{stage}:{model}:{measure}`` fields that
  only grow (Prometheus's ``framequeue_usage_*`` counters);
- the tenants index, ``{namespace}:usage:tenants``: each tenant scored by the last day it used anything.

A job without a tenant (the operator's, or one from before tenants) counts as ``OPERATOR_TENANT``.

Cost of a run, in the catalog's currency: ``per_call`` times its uses (the provider calls of a remote
model, every key failover included; one for a local model that made the stage's output), plus
``per_second`` times its seconds (device seconds where it ran on a GPU; else the run's wall seconds,
for a remote model or a local one on the CPU), plus ``per_megapixel`` times the megapixels it made (the
job's size; times its frame count for frames). A stage served from the cache used no model: no cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from pipelines.metering import Meter
from queue_config.catalog import Catalog, CatalogModel
from queue_config.stages import model_of_actor, stage_of_actor
from queue_config.tenants import OPERATOR_TENANT
from workers.jobs.outcome import StageOutcome
from workers.jobs.status_writer import pipelined_script

#: Each day's usage outlives the job records of that day by this much (31 days).
USAGE_KEPT_BEYOND_RETENTION_S = 31 * 24 * 3600
#: What a day's hash and the totals hold for each (stage, model).
MEASURES = ("jobs", "wall_s", "device_s", "calls", "cost")
#: The model of a stage that runs no catalog model, in field names.
NO_MODEL = "-"
_USAGE_SCRIPT = pipelined_script(Path(__file__).parent / "usage.lua")

Client = redis.Redis | redis.client.Pipeline


def day_key(namespace: str, tenant: str, day: str) -> str:
    """The key of ``tenant``'s usage on UTC ``day`` (``YYYY-MM-DD``)."""
    return f"{namespace}:usage:{tenant}:{day}"


def totals_key(namespace: str) -> str:
    return f"{namespace}:usage:totals"


def tenants_key(namespace: str) -> str:
    return f"{namespace}:usage:tenants"


def utc_day(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch_s))


@dataclass(frozen=True)
class StageRun:
    """One run of one stage of a job, as the worker saw it."""

    tenant: str
    stage: str
    #: The catalog model the run's queue serves; "" for a stage that runs none.
    model: str
    wall_s: float
    device_s: float
    calls: int
    cost: float
    #: The run returned: it completed the stage (counted as one more job of it).
    completed: bool


def output_megapixels(stage: str, job: Mapping[str, Any]) -> float:
    """What ``stage`` makes of ``job``, in megapixels: its key image, or all of its frames; 0 for other stages."""
    pixels = int(job.get("width", 0)) * int(job.get("height", 0))
    if stage == "image":
        return pixels / 1e6
    if stage == "frames":
        return pixels * int(job.get("num_frames", 0)) / 1e6
    return 0.0


def run_cost(model: CatalogModel | None, *, wall_s: float, device_s: float, calls: int, megapixels: float,
             served: bool) -> float:
    """What one run of ``model`` cost (see the module's docstring); ``served``: it made the stage's output."""
    if model is None:
        return 0.0
    if model.is_local:
        uses, seconds = int(served), device_s or (wall_s if served else 0.0)
    else:
        uses, seconds = calls, wall_s if calls else 0.0
    if not (uses or seconds):
        return 0.0
    cost = model.cost
    # Cost.of prices one use; a run that used the model ``uses`` times pays per_call for each.
    return cost.of(seconds=seconds, megapixels=megapixels if served else 0.0) + cost.per_call * (uses - 1)


class UsageRecorder:
    """Turns what a worker measured of a run into a :class:`StageRun` and queues it on a pipeline.

    Parameters:
        catalog: Gives the catalog whose models' costs apply (called once, when the first run is priced),
            or None to record usage without cost.
        retention_s: How long finished job records are kept; a day's usage is kept that long and more.
    """

    def __init__(self, catalog: Callable[[], Catalog] | None, *, retention_s: float) -> None:
        self._catalog_of = catalog
        self._catalog: Catalog | None = None
        self.day_ttl_s = round(retention_s) + USAGE_KEPT_BEYOND_RETENTION_S

    def run_of(self, job: Mapping[str, Any], actor: str, meter: Meter, wall_s: float,
               outcome: StageOutcome | None) -> StageRun:
        """The run of ``actor`` on ``job`` (the message's job object); ``outcome`` is None unless it returned."""
        stage, model_id = stage_of_actor(actor), model_of_actor(actor) or ""
        model = self.catalog.models.get(model_id) if self.catalog and model_id else None
        record = outcome.record if outcome is not None else {}
        served = f"model.{stage}" in record and f"cached.{stage}" not in record
        cost = run_cost(model, wall_s=wall_s, device_s=meter.device_s, calls=meter.provider_calls,
                        megapixels=output_megapixels(stage, job), served=served)
        return StageRun(str(job.get("tenant") or OPERATOR_TENANT), stage, model_id, wall_s, meter.device_s,
                        meter.provider_calls, cost, completed=outcome is not None)

    @property
    def catalog(self) -> Catalog | None:
        if self._catalog is None and self._catalog_of is not None:
            self._catalog = self._catalog_of()
        return self._catalog

    def queue(self, pipe: Client, namespace: str, job_key: str, run: StageRun, *, now_s: float | None = None) -> None:
        """Queue ``run``'s additions on ``pipe`` (a status writer's): one script call."""
        now_s = time.time() if now_s is None else now_s
        keys = [job_key, day_key(namespace, run.tenant, utc_day(now_s)), totals_key(namespace), tenants_key(namespace)]
        args: list[str | int] = [run.stage, run.model or NO_MODEL, run.tenant, int(now_s // 86400), self.day_ttl_s,
                "1" if run.completed else "", f"{run.wall_s:.6f}", f"{run.device_s:.6f}" if run.device_s else "",
                str(run.calls) if run.calls else "", f"{run.cost:.9f}" if run.cost else ""]
        _USAGE_SCRIPT(keys, args, client=pipe)


def usage_in_record(raw: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Each stage's ``usage.{stage}.{measure}`` fields of a raw job record, as ``{stage: {measure: value}}``."""
    found: dict[str, dict[str, float]] = {}
    for name, value in raw.items():
        if name.startswith("usage."):
            stage, _, measure = name[6:].rpartition(".")
            found.setdefault(stage, {})[measure] = float(value)
    return found


def usage_total(by_stage: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``by_stage``'s measures summed over the stages (empty when no stage has used anything)."""
    total: dict[str, float] = {}
    for measures in by_stage.values():
        for measure, value in measures.items():
            total[measure] = total.get(measure, 0.0) + value
    return total
