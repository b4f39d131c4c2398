"""Remote providers, their key pools, per-model limits, and which stages call them.

Declared in a TOML file (``FRAMEQUEUE_REMOTE_CONFIG``); a stage not named there
runs its local model. Keys never appear in the file: a provider names the
environment variable (comma-separated keys) or the secret file (one key per
line) that holds them. Example::

    [providers.sim]
    kind = "openai"                      # or "replicate"
    base_url = "http://127.0.0.1:8700"
    keys_env = "FRAMEQUEUE_KEYS_SIM"
    key_strategy = "least_used"          # or "round_robin"
    key_requests_per_minute = 60         # each key's quota at the provider

    [[limits]]
    provider = "sim"
    model = "sim-image"
    requests_per_minute = 150            # shared by every worker on every host
    concurrency = 8

    [stages.image]
    provider = "sim"
    model = "sim-image"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Stages that can call a remote provider instead of a local model.
REMOTE_CAPABLE_STAGES = ("prompt_enhance", "image")


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["openai", "replicate"]
    base_url: str
    keys_env: str | None = None
    keys_file: Path | None = None
    key_strategy: Literal["round_robin", "least_used"] = "round_robin"
    #: Each key's quota at the provider; the pool never sends a key more than this.
    key_requests_per_minute: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)

    def load_keys(self) -> list[str]:
        """The pool's keys, from the environment variable or the secret file."""
        if self.keys_file is not None:
            lines = self.keys_file.read_text().splitlines()
        else:
            lines = os.environ.get(self.keys_env or "", "").split(",")
        return [line.strip() for line in lines if line.strip()]


class ModelLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    model: str
    requests_per_minute: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, ge=1)


class StageRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    model: str


class RemoteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    providers: dict[str, ProviderConfig] = {}
    limits: list[ModelLimits] = []
    stages: dict[str, StageRoute] = {}

    @model_validator(mode="after")
    def _references_exist(self) -> RemoteConfig:
        for stage, route in self.stages.items():
            if stage not in REMOTE_CAPABLE_STAGES:
                raise ValueError(f"stage {stage!r} cannot call a provider (only {', '.join(REMOTE_CAPABLE_STAGES)})")
            if route.provider not in self.providers:
                raise ValueError(f"stage {stage!r} names unknown provider {route.provider!r}")
        for limits in self.limits:
            if limits.provider not in self.providers:
                raise ValueError(f"limits name unknown provider {limits.provider!r}")
        return self

    def limits_for(self, route: StageRoute) -> ModelLimits | None:
        return next((x for x in self.limits if (x.provider, x.model) == (route.provider, route.model)), None)


def load_remote_config(path: Path | None) -> RemoteConfig:
    """The remote configuration in ``path``; an empty one (everything local) when there is none."""
    if path is None:
        return RemoteConfig()
    with open(path, "rb") as file:
        return RemoteConfig.model_validate(tomllib.load(file))
