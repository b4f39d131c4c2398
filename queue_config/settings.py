"""One settings object for every framequeue process.

Values come from the environment (``FRAMEQUEUE_*``, plus the conventional
``REDIS_URL``), then from a ``.env`` file, then from the defaults below.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from queue_config.safety_policy import Category, SafetyPolicy, parse_categories
from queue_config.stages import STAGES

#: Bounds of ``presigned_url_ttl_s`` and of every presigned URL's lifetime (storage/s3.py): a SigV4
#: presigned URL lives at most 7 days.
MIN_PRESIGNED_URL_TTL_S = 1
MAX_PRESIGNED_URL_TTL_S = 7 * 24 * 3600


class Settings(BaseSettings):
    """Where framequeue finds its broker, storage and models, and how it treats them."""

    model_config = SettingsConfigDict(env_prefix="FRAMEQUEUE_", env_file=".env", extra="ignore")

    #: Redis URL of the broker and job records. Empty: an embedded Redis under ``data_dir``.
    redis_url: str = Field(default="", validation_alias=AliasChoices("REDIS_URL", "FRAMEQUEUE_REDIS_URL"))
    #: Prefix of every Redis key framequeue and its dramatiq queues write.
    namespace: str = "framequeue"
    #: A worker silent this long is presumed dead and its messages go to other workers.
    heartbeat_timeout_ms: int = 60_000
    #: How many broker commands in a million also run queue maintenance (dead-worker requeue).
    maintenance_chance: int = 1_000
    #: Longest an idle stage queue goes unpolled: the most a job waits between two stages.
    #: (dramatiq's default is 1000 ms: with six stages that adds seconds to every job.)
    queue_poll_max_ms: int = 100
    #: How long a finished job stays in Redis: its record expires this long after it finished, and
    #: the reconciler trims its index entry, events, cancellation and dead-letter reasons once they
    #: are this old (workers/jobs/retention.py). Its outputs and manifest in storage stay.
    retention_s: float = 7 * 24 * 3600.0

    #: Home of the embedded Redis, local storage and the tiny model cache.
    data_dir: Path = Path.home() / ".framequeue"

    #: S3-compatible endpoint (MinIO, moto, R2...). Empty: store outputs under ``data_dir/objects``.
    s3_endpoint_url: str = ""
    s3_bucket: str = "framequeue"
    s3_region: str = "us-east-1"
    #: How long a read or write of storage (S3 or the local directory) waits out an outage, with
    #: backoff, before the stage fails; apart from the stage's own retries (storage/retry.py).
    storage_retry_s: float = 180.0
    #: How long a result's presigned URL stays valid: 1 s to 7 days (SigV4's longest).
    presigned_url_ttl_s: int = Field(default=24 * 3600, ge=MIN_PRESIGNED_URL_TTL_S, le=MAX_PRESIGNED_URL_TTL_S)

    #: Model profile: ``tiny`` (random weights built offline) or ``standard`` (real model ids).
    model_profile: Literal["tiny", "standard"] = "tiny"
    #: ``cuda`` (or ``cuda:N``), ``cpu``, or empty for cuda when present.
    device: str = ""
    #: Most memory, in MB (MiB), the models a worker process keeps loaded may hold together; when a
    #: model would not fit, the least recently used are evicted (pipelines/registry.py). Unset: no limit.
    model_memory_budget_mb: int | None = Field(default=None, ge=1)
    #: The model catalog (queue_config/catalog.py): every model jobs may choose, per stage, and the
    #: defaults. Unset: the catalog shipped for ``model_profile`` (queue_config/catalogs/).
    model_catalog: Path | None = None
    #: Where ``framequeue models pull`` puts hub models, and workers load them from without the hub.
    #: Unset: ``data_dir/models/pulled``.
    models_dir: Path | None = None
    #: The frames model of video jobs that name none (``camera``, ``img2img`` or another frames model
    #: of the catalog); unset: the catalog's default.
    frames_backend: str | None = None
    #: Most image renders of one shape (size, steps, negative prompt) a worker process makes in one
    #: model call, gathered from its threads (so give it as many threads); 1: each renders alone.
    #: The img2img frames backend's keyframes are batched by the same setting (different jobs' keyframes
    #: of one shape: workers/stages/keyframe_batching.py); both batchers are per model, but the setting
    #: is one for every model (workers/stages/batching.py).
    image_batch_max: int = Field(default=1, ge=1)
    #: How long the first render of a batch waits for others of its shape, in ms.
    image_batch_window_ms: float = Field(default=50.0, ge=0)

    #: TOML file naming remote providers, key pools, model limits and the stages that use them
    #: (see queue_config/remote.py). Unset: every stage runs its local model.
    remote_config: Path | None = None
    #: A stage message older than this fails (e.g. one that has waited this long for quota).
    stage_max_age_ms: int = 6 * 3600 * 1000
    #: Longest run of a stage before it is interrupted and retried, in seconds, per stage, as JSON
    #: (``{"image": 1800}``); a stage left out keeps its default (queue_config/stages.py). Keep each
    #: above ``storage_retry_s``, or a storage outage ends as a time-limit retry.
    stage_time_limits_s: dict[str, float] = {}

    #: The reconciler looks at an unfinished job once it has not moved for this long, and sends it
    #: on again if its message was lost (``framequeue reconciler``; workers/jobs/reconciler.py).
    reconcile_after_s: float = 60.0
    #: Seconds between the reconciler's passes.
    reconcile_interval_s: float = 10.0
    #: Repairs of one job before it fails with the reason instead.
    reconcile_max_repairs: int = 3
    #: Unfinished tenant jobs the fair-share dispatcher keeps admitted to each first-stage queue
    #: (``framequeue dispatcher``; workers/jobs/fair_share.py): about the workers' threads on that
    #: stage's path, so they stay busy while a tenant's new job waits for one place, not a backlog.
    fair_share_window: int = 16
    #: An intake entry read by an intake that has been silent this long is claimed by another.
    intake_claim_idle_ms: int = 30_000

    #: Shared secret that signs webhook deliveries (HMAC-SHA256). Empty: webhooks are not sent.
    webhook_secret: str = ""
    #: Deliveries of one event tried before giving up, the first retry after this many seconds
    #: (doubling each time).
    webhook_max_attempts: int = 6
    webhook_first_retry_s: float = 2.0
    #: Longest one delivery attempt may take; a delivery whose sender died is due again a little
    #: after that (see workers/doors/webhooks.py).
    webhook_timeout_s: float = 10.0
    #: Webhook URLs may be plain ``http://`` (by default only ``https://`` is delivered to).
    webhook_allow_http: bool = False
    #: Destinations a webhook may reach although they are loopback, private or link-local: host
    #: names, addresses or CIDR ranges, comma-separated (``hooks.internal,10.2.0.0/16``). Any other
    #: such destination is refused at delivery (workers/doors/webhook_policy.py).
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = []

    #: When batch work may run, e.g. ``22:00-06:00`` (HH:MM[:SS]); empty: any time.
    batch_window: str = ""
    #: The time zone of ``batch_window``.
    batch_timezone: str = "UTC"

    #: Bearer token of the HTTP API and dashboard. Empty: every request is refused.
    api_token: str = ""
    #: URL prefix the API is served under (behind a reverse proxy), e.g. ``/framequeue``.
    api_root_path: str = ""
    #: True: ``/docs`` and ``/openapi.json`` open to anyone; False: they need the token (or a dashboard session).
    api_public_docs: bool = False
    #: How long a dashboard sign-in lasts (from signing in; signing out ends it at once).
    dashboard_session_ttl_s: int = 12 * 3600
    #: Requests one API token may make per minute (steady rate), and how many more it may make at once.
    #: Over them: 429 with Retry-After (workers/api/bounds.py).
    api_requests_per_minute: float = Field(default=600.0, gt=0)
    api_request_burst: int = Field(default=60, ge=0)
    #: Unfinished jobs one API token may have; a submission that would go over is refused (429).
    api_max_queued_jobs: int = Field(default=10_000, ge=1)

    #: NSFW probability at or above which an image or video is blocked.
    safety_threshold: float = 0.8
    #: How many frames of a video the safety check samples.
    safety_sampled_frames: int = 4
    #: Safety categories (queue_config/safety_policy.py) that block a job, and those that only
    #: flag it in its record; comma-separated. A category in neither is not acted on.
    safety_block_categories: Annotated[frozenset[Category], NoDecode] = frozenset(Category)
    safety_flag_categories: Annotated[frozenset[Category], NoDecode] = frozenset()

    @field_validator("safety_block_categories", "safety_flag_categories", mode="before")
    @classmethod
    def _category_names(cls, value: object) -> object:
        return parse_categories(value)

    @property
    def model_memory_budget_bytes(self) -> int | None:
        """``model_memory_budget_mb`` in bytes, as :class:`pipelines.ModelRegistry` takes it."""
        mb = self.model_memory_budget_mb
        return mb * 1024 * 1024 if mb is not None else None

    @property
    def pulled_models_dir(self) -> Path:
        """``models_dir``, else ``data_dir/models/pulled``: where pulled hub models are, for pulls and workers."""
        return self.models_dir or self.data_dir / "models" / "pulled"

    @property
    def safety_policy(self) -> SafetyPolicy:
        return SafetyPolicy(blocked=self.safety_block_categories, flagged=self.safety_flag_categories)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"(cpu|cuda|cuda:\d+)?", value):
            raise ValueError("allowed: cpu, cuda, cuda:N, or empty for cuda when present")
        return value

    @field_validator("batch_window")
    @classmethod
    def _window_of_day(cls, value: str) -> str:
        time_of_day = r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?"
        if value and not re.fullmatch(f"{time_of_day}-{time_of_day}", value.strip()):
            raise ValueError("allowed: HH:MM[:SS]-HH:MM[:SS] (e.g. 22:00-06:00), or empty for any time")
        return value

    @field_validator("batch_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("allowed: an IANA time zone name such as UTC or Europe/Paris") from None
        return value

    @field_validator("stage_time_limits_s")
    @classmethod
    def _known_stages(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stages {unknown}; expected some of {sorted(STAGES)}")
        if any(seconds <= 0 for seconds in value.values()):
            raise ValueError("a stage time limit must be more than 0 seconds")
        return value

    def stage_time_limit_ms(self, stage: str) -> int:
        """The time limit of ``stage``: its setting, else the stage's default."""
        seconds = self.stage_time_limits_s.get(stage)
        return round(seconds * 1000) if seconds is not None else STAGES[stage].time_limit_ms

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
