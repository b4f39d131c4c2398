"""The model catalog: every model a deployment can run, and which one serves each stage of a job.

One TOML file, validated whole when a process starts. A model serves one stage; it runs either
locally (a diffusers or transformers pipeline class loaded with ``from_pretrained`` from a hub id
or a directory, or one of framequeue's model-free makers) or at a remote provider named in the
remote configuration (queue_config/remote.py). Example::

    [defaults]                     # the model of each stage a job leaves unnamed
    image = "sd-turbo"

    [models.sd-turbo]
    stage = "image"
    memory_mb = 2600               # what the worker's memory budget reserves before loading it
    fallbacks = ["sim-image"]      # tried in order when this one cannot serve
    max_wait_s = 120               # a message waiting longer than this moves to the next fallback
    backend = { kind = "local", pipeline = "AutoPipelineForText2Image", model = "stabilityai/sd-turbo" }
    params = { steps = 2, width = 512, height = 512, guidance = 0.0 }
    capabilities = { max_side = 768 }
    cost = { per_second = 0.0004 }

    [models.sim-image]
    stage = "image"
    backend = { kind = "remote", provider = "sim", model = "sim-image" }
    limits = { requests_per_minute = 150, concurrency = 8 }
    cost = { per_megapixel = 0.002 }

A job names a model per stage (``JobSpec.models``); ``Catalog.route`` decides the model a stage
runs, and each (stage, model) pair has its own queue (``queue_config.stages.queue_name``), so a
GPU host can serve only the models it keeps resident. Local model paths of the form ``tiny:NAME``
are the tiny random-weight models the ``tiny`` profile builds offline (pipelines/profiles.py).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from queue_config.jobs import JobKind, JobSpec, ModelStage
from queue_config.remote import ModelLimits, RemoteConfig, load_remote_config
from queue_config.settings import Settings
from queue_config.stages import MODEL_STAGES, stage_plan

#: The catalogs that ship with framequeue, one per model profile.
SHIPPED_CATALOGS = Path(__file__).with_name("catalogs")
#: A model id: lower case letters, digits, ``-`` and ``.``, so that it can end a queue name.
MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9.-]{0,47}$"
ModelId = Annotated[str, StringConstraints(pattern=MODEL_ID_PATTERN)]
#: framequeue's own frame makers, which load no weights of their own.
MAKERS = ("camera", "img2img")
#: The pipeline classes each model stage's local backends can drive (pipelines/); an image model may
#: name any diffusers text-to-image class, checked when it loads.
STAGE_PIPELINES: dict[str, tuple[str, ...]] = {
    "prompt_enhance": ("AutoModelForCausalLM",),
    "frames": (*MAKERS, "StableVideoDiffusionPipeline"),
}


class CatalogError(ValueError):
    """The catalog file is missing, not TOML, or not a valid catalog; the message says where."""


class ModelRefused(ValueError):
    """A job this catalog cannot serve: an unknown model, or a size, step or frame count out of its reach."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalBackend(_Strict):
    """A model this host loads: ``pipeline.from_pretrained(model, revision=...)`` onto ``device``."""

    kind: Literal["local"]
    #: A diffusers or transformers class name (``AutoPipelineForText2Image``,
    #: ``StableVideoDiffusionPipeline``, ``AutoModelForCausalLM``), or one of :data:`MAKERS`.
    pipeline: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    #: Hub id, directory, or ``tiny:NAME``; empty for a maker with no weights (``camera``).
    model: str = ""
    #: Hub commit, branch or tag to load (pinned for reproducible outputs); None: the default branch.
    revision: str | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    #: ``auto`` is the worker's device (the ``device`` setting, else CUDA when present).
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda|cuda:\d+)$")
    #: The image model whose components an ``img2img`` maker reuses (a catalog id of the image stage).
    base: ModelId | None = None


class RemoteBackend(_Strict):
    """A model a provider of the remote configuration runs."""

    kind: Literal["remote"]
    provider: str
    model: str


class Params(_Strict):
    """What a job that leaves them out gets from this model (a version 2 job; version 1 keeps its defaults)."""

    steps: int | None = Field(default=None, ge=1)
    width: int | None = Field(default=None, ge=8)
    height: int | None = Field(default=None, ge=8)
    guidance: float | None = Field(default=None, ge=0)


class Capabilities(_Strict):
    """What the model can make; a job asking for more is refused at the door."""

    #: Exact sizes it takes, as ``WxH``; empty: any size within ``min_side``..``max_side``.
    sizes: list[Annotated[str, StringConstraints(pattern=r"^\d+x\d+$")]] = []
    min_side: int = Field(default=8, ge=8)
    max_side: int = Field(default=4096, ge=8)
    max_steps: int | None = Field(default=None, ge=1)
    #: Most frames one call makes (frames models).
    max_frames: int | None = Field(default=None, ge=2)
    #: Whether the model starts from an input image (frames models do).
    input_image: bool = False


class Limits(_Strict):
    """Shared by every worker on every host (workers/middleware/rate_limit.py), keyed by the model's id."""

    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, ge=1)


class Cost(_Strict):
    """What one use costs, in the deployment's currency: the three add up."""

    per_call: float = Field(default=0.0, ge=0)
    per_second: float = Field(default=0.0, ge=0)
    per_megapixel: float = Field(default=0.0, ge=0)

    def of(self, *, seconds: float, megapixels: float) -> float:
        return self.per_call + self.per_second * seconds + self.per_megapixel * megapixels


class CatalogModel(_Strict):
    """One model of the catalog. Its id is its key in the file."""

    id: ModelId
    stage: ModelStage
    backend: Annotated[LocalBackend | RemoteBackend, Field(discriminator="kind")]
    description: str = ""
    params: Params = Params()
    capabilities: Capabilities = Capabilities()
    limits: Limits = Limits()
    cost: Cost = Cost()
    #: Tried in order when this model cannot serve (no usable key, repeated 5xx or timeouts, ``max_wait_s``).
    fallbacks: list[ModelId] = []
    #: A message that has waited longer than this for the model moves to its first fallback.
    max_wait_s: float | None = Field(default=None, gt=0)
    #: Provider 5xx answers or timeouts in a row before the stage moves to the next fallback.
    failures_before_fallback: int = Field(default=3, ge=1)
    #: How long a model stays skipped after those failures (LiteLLM's ``cooldown_time``, 5 s there; a queue
    #: can wait longer before it probes again). After it, one more failure starts the next cooldown.
    cooldown_s: float = Field(default=30.0, gt=0)
    #: Resident size, for the worker's memory budget before the model has been loaded and measured.
    memory_mb: int | None = Field(default=None, ge=0)

    @property
    def is_local(self) -> bool:
        return isinstance(self.backend, LocalBackend)

    def rate_limits(self) -> ModelLimits | None:
        """The model's limits for the rate-limit middleware, or None when it has none. A remote model's
        are named by its provider and the provider's model name, so that catalog entries sharing one
        provider model share its limit."""
        limits = self.limits
        if limits.requests_per_minute is None and limits.concurrency is None:
            return None
        backend = self.backend
        remote = isinstance(backend, RemoteBackend)
        provider, model = (backend.provider, backend.model) if remote else ("local", self.id)  # type: ignore[union-attr]
        return ModelLimits(provider=provider, model=model, requests_per_minute=limits.requests_per_minute,
                           concurrency=limits.concurrency)

    def refusal(self, job: JobSpec) -> str | None:
        """Why this model cannot serve ``job``, or None when it can."""
        caps, where = self.capabilities, f"model {self.id!r} ({self.stage})"
        if self.stage in ("image", "frames"):
            size = f"{job.width}x{job.height}"
            if caps.sizes and size not in caps.sizes:
                return f"{where} makes {', '.join(caps.sizes)}, not {size}"
            if not caps.min_side <= min(job.width, job.height) <= max(job.width, job.height) <= caps.max_side:
                return f"{where} takes sides of {caps.min_side} to {caps.max_side} px, not {size}"
            if caps.max_steps is not None and job.steps > caps.max_steps:
                return f"{where} runs at most {caps.max_steps} steps, not {job.steps}"
        if self.stage == "frames" and caps.max_frames is not None and job.num_frames > caps.max_frames:
            return f"{where} makes at most {caps.max_frames} frames, not {job.num_frames}"
        return None


class Catalog(_Strict):
    """Every model, and the default of each model stage."""

    defaults: dict[ModelStage, ModelId]
    models: dict[ModelId, CatalogModel]

    @model_validator(mode="before")
    @classmethod
    def _ids_from_keys(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            models = {key: {"id": key, **value} if isinstance(value, dict) else value
                      for key, value in data["models"].items()}
            data = {**data, "models": models}
        return data

    @model_validator(mode="after")
    def _references_hold(self) -> Catalog:
        for stage in MODEL_STAGES:
            model = self.defaults.get(stage)  # type: ignore[call-overload]
            if model is None:
                raise ValueError(f"defaults: no default model for stage {stage!r}")
            self._check_serves(f"defaults.{stage}", model, stage)
        for model in self.models.values():
            for fallback in model.fallbacks:
                self._check_serves(f"models.{model.id}.fallbacks", fallback, model.stage)
                if fallback == model.id:
                    raise ValueError(f"models.{model.id}.fallbacks: a model cannot fall back to itself")
            backend = model.backend
            if isinstance(backend, RemoteBackend) and model.stage == "frames":
                raise ValueError(f"models.{model.id}: no provider makes frames; a frames model is local")
            if isinstance(backend, LocalBackend):
                allowed = STAGE_PIPELINES.get(model.stage)
                if allowed is not None and backend.pipeline not in allowed:
                    raise ValueError(f"models.{model.id}.backend.pipeline: {model.stage} runs {', '.join(allowed)}, "
                                     f"not {backend.pipeline}")
                if backend.pipeline == "img2img":
                    if backend.base is None:
                        raise ValueError(f"models.{model.id}.backend: an img2img maker needs base = an image model")
                    self._check_serves(f"models.{model.id}.backend.base", backend.base, "image")
                elif backend.pipeline != "camera" and not backend.model:
                    raise ValueError(f"models.{model.id}.backend: model (a hub id or a directory) is missing")
            if model.stage == "frames" and not model.capabilities.input_image:
                raise ValueError(f"models.{model.id}: a frames model grows frames from the key image "
                                 "(capabilities.input_image = true)")
        return self

    def _check_serves(self, where: str, model_id: str, stage: str) -> None:
        model = self.models.get(model_id)
        if model is None:
            raise ValueError(f"{where}: no model {model_id!r} in the catalog")
        if model.stage != stage:
            raise ValueError(f"{where}: model {model_id!r} serves {model.stage!r}, not {stage!r}")

    def check_providers(self, remote: RemoteConfig) -> None:
        """Raise ``CatalogError`` when a remote model names a provider the remote configuration lacks."""
        for model in self.models.values():
            if isinstance(model.backend, RemoteBackend) and model.backend.provider not in remote.providers:
                known = ", ".join(remote.providers) or "none: FRAMEQUEUE_REMOTE_CONFIG is unset"
                raise CatalogError(f"models.{model.id}: provider {model.backend.provider!r} is not in the "
                                   f"remote configuration (providers: {known})")

    def of_stage(self, stage: str) -> list[CatalogModel]:
        return [model for model in self.models.values() if model.stage == stage]

    def queue_models(self, stage: str) -> list[str | None]:
        """The models that have queues of their own for ``stage`` (``image.sd-turbo``); ``[None]`` for a stage
        that runs no catalog model and has one queue per priority."""
        return [model.id for model in self.of_stage(stage)] if stage in MODEL_STAGES else [None]

    def route(self, job: JobSpec, stage: str, chosen: Mapping[str, str] = {}) -> str | None:
        """The model that runs ``stage`` of ``job`` (None for a stage that runs no catalog model).

        ``chosen`` holds a message's fallbacks, which win over the job's own choice, which wins over
        the catalog's default. A version 1 job's ``frames_backend`` names its frames maker.
        """
        if stage not in MODEL_STAGES:
            return None
        named = chosen.get(stage) or job.models.get(stage)  # type: ignore[call-overload]
        if named is None and stage == "frames" and job.frames_backend is not None:
            named = job.frames_backend
        return named or self.defaults[stage]  # type: ignore[index]

    def refusal(self, job: JobSpec) -> str | None:
        """Why ``job`` cannot run here (an unknown model, a size or frame count out of a model's
        reach), or None when every stage of its plan has a model that can serve it."""
        for chosen in job.models:
            if chosen not in stage_plan(job.kind):
                return f"models.{chosen}: a {job.kind.value} job has no {chosen} stage"
        for stage in stage_plan(job.kind):
            model_id = self.route(job, stage)
            if model_id is None:
                continue
            model = self.models.get(model_id)
            if model is None:
                known = ", ".join(m.id for m in self.of_stage(stage))
                return f"models.{stage}: no model {model_id!r} in the catalog (models of {stage}: {known})"
            if model.stage != stage:
                return f"models.{stage}: model {model_id!r} serves {model.stage}, not {stage}"
            if (reason := model.refusal(job)) is not None:
                return reason
        return None

    def admit(self, job: JobSpec) -> JobSpec:
        """``job`` with its image model's default parameters, once every model of its plan can serve it.

        Every door calls this after validating a job, and the worker routes by the same catalog.

        Raises:
            ModelRefused: with the reason, naming the stage and the model.
        """
        job = self.with_params(job)
        if (reason := self.refusal(job)) is not None:
            raise ModelRefused(reason)
        return job

    def with_params(self, job: JobSpec) -> JobSpec:
        """``job`` with the steps and size its image model defaults to, where a version 2 job left them out."""
        if job.schema_version < 2 or job.kind not in (JobKind.image, JobKind.video):
            return job
        model = self.models.get(self.route(job, "image") or "")
        if model is None:
            return job
        params = model.params
        unset = {"steps": params.steps, "width": params.width, "height": params.height}
        update = {name: value for name, value in unset.items()
                  if value is not None and name not in job.model_fields_set}
        return JobSpec.model_validate({**job.model_dump(), **update}) if update else job


def load_catalog(path: Path) -> Catalog:
    """The catalog in ``path``.

    Raises:
        CatalogError: one line naming the file and what is wrong with it.
    """
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise CatalogError(f"{path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"{path}: not TOML: {error}") from None
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        # A key of the file is quoted when it holds a line break or another unprintable character.
        problems = [f"{'.'.join(_key_text(part) for part in item['loc']) or '(catalog)'}: {item['msg']}"
                    for item in error.errors(include_input=False, include_url=False)]
        raise CatalogError(f"{path}: " + "; ".join(problems[:10])) from None


def _key_text(part: object) -> str:
    text = str(part)
    return text if text.isprintable() else repr(text)


def shipped_catalog(profile: str) -> Path:
    return SHIPPED_CATALOGS / f"{profile}.toml"


def with_remote_routes(catalog: Catalog, remote: RemoteConfig) -> Catalog:
    """``catalog`` with the remote configuration's ``[stages.X]`` routes as models that are X's default.

    A route is shorthand from before the catalog: model ``PROVIDER-MODEL`` (lower-cased, other
    characters as ``-``), limited by the remote configuration's ``[[limits]]`` for that pair.
    """
    if not remote.stages:
        return catalog
    models, defaults = dict(catalog.models), dict(catalog.defaults)
    for stage, route in remote.stages.items():
        model_id = re.sub(r"[^a-z0-9.-]+", "-", f"{route.provider}-{route.model}".lower()).strip("-")[:48]
        limits = remote.limits_for(route)
        models[model_id] = CatalogModel(
            id=model_id, stage=stage,  # type: ignore[arg-type]
            backend=RemoteBackend(kind="remote", provider=route.provider, model=route.model),
            limits=Limits(requests_per_minute=limits.requests_per_minute, concurrency=limits.concurrency)
            if limits else Limits(),
            description="from the remote configuration's [stages] routes",
        )
        defaults[stage] = model_id  # type: ignore[index]
    return Catalog.model_validate({"defaults": defaults, "models": {k: v.model_dump() for k, v in models.items()}})


@lru_cache(maxsize=16)
def _catalog_for(catalog_path: Path | None, profile: str, remote_path: Path | None,
                 frames_default: str | None) -> Catalog:
    catalog = load_catalog(catalog_path or shipped_catalog(profile))
    try:
        remote = load_remote_config(remote_path)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as error:
        raise CatalogError(f"{remote_path}: {error}") from None
    catalog = with_remote_routes(catalog, remote)
    catalog.check_providers(remote)
    if frames_default is not None:
        if frames_default not in catalog.models:
            raise CatalogError(f"frames_backend {frames_default!r} is not a model of the catalog")
        catalog = catalog.model_copy(update={"defaults": {**catalog.defaults, "frames": frames_default}})
    return catalog


def catalog_of(settings: Settings) -> Catalog:
    """The deployment's catalog: ``settings.model_catalog`` (else the profile's shipped one), with
    the remote configuration's routes, and ``settings.frames_backend`` as the frames default if set.
    Read once per combination of those settings.
    """
    return _catalog_for(settings.model_catalog, settings.model_profile, settings.remote_config,
                        settings.frames_backend)
