"""``GET /metrics``: Prometheus text, read from Redis at scrape time.

Nothing is counted in the API process itself: every family comes from what the
workers already keep in Redis (queues, job records, the events stream, the
dead-letter hash, key-pool state), so any replica of the API gives the same
numbers. The only state kept here is the events-stream cursor behind the
``*_total`` counters, so that each scrape reads only the events added since the last.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import cast

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from workers import ops
from workers.api.bounds import within_request_rate
from workers.api.context import context, require_token
from workers.jobs import stage_stats
from workers.jobs.reconciler import repair_stats
from workers.jobs.record import JobStatusStore
from workers.jobs.stage_cache import cache_counts
from workers.keys.pool import key_health
from workers.ops.queue_ages import oldest_ready_ages_s
from workers.ops.usage import usage_totals
from workers.ops.workers import live_workers_by_stage

router = APIRouter()
_registry_lock = threading.Lock()


class RedisCollector(Collector):
    """Reads framequeue's state from Redis on every ``collect``."""

    def __init__(self, status: JobStatusStore, heartbeat_timeout_ms: int) -> None:
        self.status = status
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self._lock = threading.Lock()
        self._last_event_id = "0-0"
        self._waits: dict[str, int] = {}
        self._events: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        yield self._queues()
        yield self._oldest_ages()
        yield self._workers()
        yield self._live_workers()
        yield self._jobs()
        yield from self._stage_histograms()
        yield self._failures()
        yield from self._event_counters()
        yield from self._keys()
        yield from self._repairs()
        yield self._safety_blocks()
        yield self._stage_cache()
        yield from self._usage()

    def _queues(self) -> Metric:
        family = GaugeMetricFamily("framequeue_queue_messages", "Messages on a stage queue, by kind: ready "
                                   "(not fetched), delayed (retries and put-back waits), in_flight, dead (lettered). "
                                   "A stage's batch queue is its own stage value, {stage}_batch; a model stage has "
                                   "a queue per catalog model, {stage}.{model}, with the model in its own label.",
                                   labels=["stage", "kind", "model"])
        for stats in ops.queue_stats(self.status):
            for kind in ("ready", "delayed", "in_flight", "dead"):
                family.add_metric([stats.name, kind, stats.model or ""], getattr(stats, kind))
        return family

    def _workers(self) -> Metric:
        alive = sum(worker.alive for worker in ops.broker_heartbeats(self.status, self.heartbeat_timeout_ms))
        return GaugeMetricFamily("framequeue_workers_alive", "Brokers whose heartbeat is within the timeout "
                                 "(worker processes, and producers that enqueued recently).", value=alive)

    def _live_workers(self) -> Metric:
        family = GaugeMetricFamily("framequeue_workers_live", "Worker processes in the registry serving a stage "
                                   "whose heartbeat is fresh; every stage is listed, 0 included.", labels=["stage"])
        for stage, count in live_workers_by_stage(self.status.client, self.status.namespace).items():
            family.add_metric([stage], count)
        return family

    def _jobs(self) -> Metric:
        family = GaugeMetricFamily("framequeue_jobs", "Recorded jobs by state.", labels=["state"])
        for state, count in sorted(ops.job_counts(self.status).items()):
            family.add_metric([state], count)
        return family

    def _oldest_ages(self) -> Metric:
        family = GaugeMetricFamily("framequeue_queue_oldest_message_age_seconds", "How long the oldest ready "
                                   "message of a stage queue has waited for a worker (since it was enqueued or "
                                   "its delay ended); 0 when the queue is empty.", labels=["queue"])
        for queue, age_s in oldest_ready_ages_s(self.status).items():
            family.add_metric([queue], age_s)
        return family

    def _stage_histograms(self) -> Iterator[Metric]:
        durations = HistogramMetricFamily("framequeue_stage_duration_seconds", "Run time of stage runs that "
                                          "returned, counted by every worker since Redis last lost its data. "
                                          "queue is the stage's actor: image, or image_batch for batch work.",
                                          labels=["stage", "queue"])
        runs = CounterMetricFamily("framequeue_stage_runs", "Stage runs by how they ended: succeeded, retried "
                                   "(raised, will run again) or failed (dead-lettered).",
                                   labels=["stage", "queue", "outcome"])
        for histogram in stage_stats.cumulative(self.status.client, self.status.namespace):
            labels = [histogram.stage, histogram.queue]
            buckets = [(stage_stats.bucket_label(bound_s), count) for bound_s, count in histogram.buckets]
            durations.add_metric(labels, buckets, histogram.sum_s)
            for outcome in stage_stats.OUTCOMES:
                runs.add_metric([*labels, outcome], getattr(histogram, outcome))
        yield durations
        yield runs

    def _failures(self) -> Metric:
        family = GaugeMetricFamily("framequeue_failures", "Dead-lettered messages with a recorded reason, by "
                                   "stage and reason class (the reason's text before its first ':').",
                                   labels=["stage", "reason"])
        counts: dict[tuple[str, str], int] = {}
        for _, raw in self.status.client.hscan_iter(self.status.dead_letters_key, count=1000):
            entry = json.loads(raw)
            key = (entry.get("actor", ""), str(entry.get("reason", "")).split(":", 1)[0].strip() or "unknown")
            counts[key] = counts.get(key, 0) + 1
        for (stage, reason), count in sorted(counts.items()):
            family.add_metric([stage, reason], count)
        return family

    def _event_counters(self) -> Iterator[Metric]:
        with self._lock:
            for event_id, fields in ops.events_since(self.status, self._last_event_id):
                event = fields.get("event", "")
                self._events[event] = self._events.get(event, 0) + 1
                if event == "waiting":
                    stage = fields.get("stage", "")
                    self._waits[stage] = self._waits.get(stage, 0) + 1
                self._last_event_id = event_id
            waits, events = dict(self._waits), dict(self._events)
        family = CounterMetricFamily("framequeue_rate_limit_waits", "Messages put back to wait for quota, a "
                                     "key or a slot (`waiting` events in the stream), by stage.", labels=["stage"])
        for stage, count in sorted(waits.items()):
            family.add_metric([stage], count)
        yield family
        family = CounterMetricFamily("framequeue_job_events", "Job events in the stream (state changes, "
                                     "retries), by event, since this API process first read it.", labels=["event"])
        for event, count in sorted(events.items()):
            family.add_metric([event], count)
        yield family

    def _keys(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("framequeue_api_keys", "Pooled provider API keys by state (ok, cooling_down, "
                                   "disabled).", labels=["provider", "state"])
        counts: dict[tuple[str, str], int] = {}
        usable: dict[str, int] = {}
        for key in key_health(self.status.client, self.status.namespace):
            state = "cooling_down" if key.state.startswith("cooling") else key.state
            counts[(key.provider, state)] = counts.get((key.provider, state), 0) + 1
            usable[key.provider] = usable.get(key.provider, 0) + (state != "disabled")
        for (provider, state), count in sorted(counts.items()):
            family.add_metric([provider, state], count)
        yield family
        family = GaugeMetricFamily("framequeue_usable_keys", "Pooled keys of a provider that are not disabled "
                                   "(a cooling-down key is usable again soon); 0 means that provider's stages "
                                   "cannot run. Only providers whose keys a worker has used are listed.",
                                   labels=["provider"])
        for provider, count in sorted(usable.items()):
            family.add_metric([provider], count)
        yield family


    def _repairs(self) -> Iterator[Metric]:
        stats = repair_stats(self.status)
        yield CounterMetricFamily("framequeue_reconciler_repairs", "Jobs that had lost their message and were "
                                  "sent on again by the reconciler.", value=stats.repaired)
        yield CounterMetricFamily("framequeue_reconciler_gave_up", "Jobs the reconciler failed after losing "
                                  "their message too often.", value=stats.gave_up)


    def _safety_blocks(self) -> Metric:
        family = CounterMetricFamily("framequeue_safety_blocks", "Jobs blocked by a safety check, by the check "
                                     "that fired (prompt, image, frames...) and the category it found.",
                                     labels=["check", "category"])
        for found in ops.block_counts(self.status):
            family.add_metric([found.check, found.category], found.count)
        return family

    def _stage_cache(self) -> Metric:
        family = CounterMetricFamily("framequeue_stage_cache", "Runs of a cacheable stage served from an earlier "
                                     "identical run (hit) or computed (miss); jobs with cache: false are not "
                                     "counted. Hit ratio: hit / (hit + miss).", labels=["stage", "result"])
        for (stage, result), count in cache_counts(self.status.client, self.status.namespace).items():
            family.add_metric([stage, result], count)
        return family

    def _usage(self) -> Iterator[Metric]:
        """What each tenant's stage runs used, by stage and catalog model (model "" for a stage that runs none)."""
        labels = ["tenant", "stage", "model"]
        families = {
            "jobs": CounterMetricFamily("framequeue_usage_jobs", "Stage runs that completed, by tenant: a job "
                                        "counts once for each stage it completed.", labels=labels),
            "wall_s": CounterMetricFamily("framequeue_usage_wall_seconds", "Worker seconds of stage runs, retried "
                                          "and put-back runs included, by tenant.", labels=labels),
            "device_s": CounterMetricFamily("framequeue_usage_device_seconds", "Seconds stage runs held a CUDA "
                                            "device, by tenant (0 on CPU workers).", labels=labels),
            "calls": CounterMetricFamily("framequeue_usage_provider_calls", "Requests to remote providers, one per "
                                         "key tried (a key failover is a second call), by tenant.", labels=labels),
            "cost": CounterMetricFamily("framequeue_usage_cost", "Cost of stage runs by the catalog models' costs, in "
                                        "the catalog's currency, by tenant.", labels=labels),
        }
        for (tenant, stage, model), measures in sorted(usage_totals(self.status.client, self.status.namespace).items()):
            for measure, family in families.items():
                family.add_metric([tenant, stage, model], measures.get(measure, 0.0))
        yield from families.values()


def registry_of(request: Request) -> CollectorRegistry:
    """The app's registry, made on first scrape (it keeps the events cursor between scrapes)."""
    state = request.app.state
    with _registry_lock:
        if getattr(state, "metrics_registry", None) is None:
            ctx = context(request)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(RedisCollector(ctx.status, ctx.settings.heartbeat_timeout_ms))
            state.metrics_registry = registry
    return cast(CollectorRegistry, state.metrics_registry)


@router.get("/metrics", dependencies=[Depends(require_token), Depends(within_request_rate)], include_in_schema=False)
def metrics(request: Request) -> Response:
    """Every framequeue family in Prometheus's text format."""
    return Response(generate_latest(registry_of(request)), media_type=CONTENT_TYPE_LATEST)
