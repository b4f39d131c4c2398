"""The job message: what a producer asks framequeue to make.

``JobSpec`` is the wire contract. It is validated when a job is submitted and
again by every worker that reads it, so a message written by any producer, in
any language, is checked before a model sees it. The limits below protect the
workers: a job cannot ask for a 100-megapixel image or a million frames.
"""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Annotated, Final, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: Version of this contract. Version 2 added ``models``; version 1 messages are still accepted
#: (their stages run the catalog's defaults, and ``frames_backend`` names their frames maker).
SCHEMA_VERSION: Final = 2

MAX_PROMPT_CHARS = 1000
MIN_SIDE_PX = 64
MAX_SIDE_PX = 1024
MAX_STEPS = 50
MAX_FRAMES = 240
MAX_FPS = 60
#: Most compute one job may ask for, in pixel-steps: width x height x frames (1 for an image) x
#: steps. 2**30 admits a 1024x1024 video of 240 frames at the default 4 steps (1,006,632,960) and
#: a 1024x1024 image at 50 steps; the corner of the limits above (240 frames at 50 steps) is 12x over.
MAX_COMPUTE_PIXEL_STEPS = 2**30
#: Longest webhook URL a job may name.
MAX_WEBHOOK_URL_CHARS = 2048


class JobKind(str, Enum):
    image = "image"
    video = "video"


#: The stages whose model a job may choose from the catalog.
ModelStage = Literal["prompt_enhance", "image", "frames"]


class Priority(str, Enum):
    interactive = "interactive"
    batch = "batch"


def _multiple_of_8(value: int) -> int:
    if value % 8:
        raise ValueError(f"must be a multiple of 8, got {value}")
    return value


SidePx = Annotated[int, Field(ge=MIN_SIDE_PX, le=MAX_SIDE_PX), AfterValidator(_multiple_of_8)]


def split_webhook_url(url: str) -> SplitResult:
    """A webhook URL's parts, once its shape is right: http(s), ASCII, a host, no user or password.

    Where it may go is the webhook sender's policy, checked at each delivery
    (workers/doors/webhook_policy.py); this is what every door refuses at once.
    """
    if len(url) > MAX_WEBHOOK_URL_CHARS:
        raise ValueError(f"webhook_url is longer than {MAX_WEBHOOK_URL_CHARS} characters")
    if not url.isascii() or any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError("webhook_url must be printable ASCII without spaces (punycode or %-encode the rest)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("webhook_url must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("webhook_url must not carry a user name or password")
    if not parts.hostname:
        raise ValueError("webhook_url has no host")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        raise ValueError("webhook_url has a bad port") from None
    return parts


def _webhook_url(url: str) -> str:
    split_webhook_url(url)
    return url


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobSpec(BaseModel):
    """One image or video job. Immutable: stages pass it along unchanged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    id: str = Field(default_factory=new_job_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    kind: JobKind = JobKind.image
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    width: SidePx = 256
    height: SidePx = 256
    steps: int = Field(default=4, ge=1, le=MAX_STEPS)
    num_frames: int = Field(default=16, ge=2, le=MAX_FRAMES)
    fps: int = Field(default=8, ge=1, le=MAX_FPS)
    enhance_prompt: bool = True
    #: The catalog model (queue_config/catalog.py) of each stage it names; a stage left out runs the
    #: catalog's default. Version 2 only.
    models: dict[ModelStage, Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,47}$")]] = Field(
        default={}, description="The catalog model of each stage named (prompt_enhance, image, frames).")
    #: Version 1's frames choice: the frames model ``camera`` or ``img2img`` (as ``models.frames``).
    frames_backend: Literal["camera", "img2img"] | None = None
    #: Reuse the output of an earlier finished stage whose inputs were the same (workers/jobs/stage_cache.py);
    #: false recomputes every stage. Messages written before this field existed read as true.
    cache: bool = Field(default=True, description="Reuse the outputs of identical earlier stages; false recomputes.")
    #: Where to POST this job's state changes (signed; see workers/doors/webhooks.py).
    webhook_url: Annotated[str, AfterValidator(_webhook_url)] | None = None
    priority: Priority = Priority.interactive
    batch_id: str | None = Field(default=None, max_length=64)
    #: The tenant that submitted the job (queue_config/tenants.py), set by the door from the credentials
    #: the job came with: whatever a client writes here is replaced. None: the operator, or no tenants.
    tenant: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")

    @property
    def compute_pixel_steps(self) -> int:
        """What the job asks of the models: width x height x frames (1 for an image) x steps."""
        frames = self.num_frames if self.kind is JobKind.video else 1
        return self.width * self.height * frames * self.steps

    @model_validator(mode="after")
    def _models_need_version_2(self) -> JobSpec:
        if self.models and self.schema_version < 2:
            raise ValueError("models needs schema_version 2")
        frames = self.models.get("frames")
        if frames is not None and self.frames_backend is not None and frames != self.frames_backend:
            raise ValueError(f"frames_backend {self.frames_backend!r} and models.frames {frames!r} disagree")
        return self

    @model_validator(mode="after")
    def _within_compute_budget(self) -> JobSpec:
        if self.compute_pixel_steps > MAX_COMPUTE_PIXEL_STEPS:
            frames = f" x {self.num_frames} frames" if self.kind is JobKind.video else ""
            raise ValueError(
                f"the job asks for {self.width}x{self.height}{frames} x {self.steps} steps = "
                f"{self.compute_pixel_steps:,} pixel-steps, over the budget of {MAX_COMPUTE_PIXEL_STEPS:,} per job "
                f"(fewer pixels, frames or steps)"
            )
        return self
