"""Fallbacks: a stage whose model cannot serve moves to the next model of its chain, and says so.

A dramatiq worker runs in this process (two threads, on the real Redis broker, in a namespace of
its own) with a catalog written here: remote image models on four provider simulators (real HTTP
on loopback), each falling back to another remote model or to the local tiny Stable Diffusion.

- ``down``: every answer is a 503 (three models use it: ``down-first``, ``down-second``, ``down-last``).
- ``revoked``: both keys are revoked (401).
- ``slow``: answers after ``SLOW_LATENCY_MS``, one call at a time (the model's concurrency).
- ``b``: healthy, but its content policy refuses prompts about a castle (400: the job's fault).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import dramatiq
import pytest

from pipelines.remote import KeyConfig, ProviderSimulator
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import STAGES
from tests.workers.test_job_flow import wait_until_finished
from workers.broker import FramequeueBroker, build_broker
from workers.jobs.record import JobRecord
from workers.jobs.submit import submit_job
from workers.limits import ModelCooldowns
from workers.middleware.fallback import fallbacks_of
from workers.remote import add_remote_middleware
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors
from workers.stages import STAGE_FUNCTIONS

#: ``down`` has a key for each of its failures in this file, so that the key pool's own backoff after
#: a 5xx (which doubles with each error of a key in a row) stays short.
KEYS = {"down": [f"sk-fb-down-{n}-3c9e1a" for n in range(8)],
        "revoked": ["sk-fb-revoked-one-81d2", "sk-fb-revoked-two-47aa"],
        "slow": ["sk-fb-slow-5b07f3"], "b": ["sk-fb-b-e6104c"]}
#: What the ``slow`` provider takes to answer; its model's ``max_wait_s`` is ``MAX_WAIT_S``.
SLOW_LATENCY_MS = 2500
MAX_WAIT_S = 1.0
REFUSED_WORD = "castle"

CATALOG = f"""
[defaults]
prompt_enhance = "tiny-text"
image = "tiny-sd"
frames = "camera"

[models.tiny-text]
stage = "prompt_enhance"
backend = {{ kind = "local", pipeline = "AutoModelForCausalLM", model = "tiny:text" }}

[models.tiny-sd]
stage = "image"
backend = {{ kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }}
params = {{ guidance = 0.0 }}

[models.camera]
stage = "frames"
backend = {{ kind = "local", pipeline = "camera" }}
capabilities = {{ input_image = true }}

[models.down-first]
stage = "image"
backend = {{ kind = "remote", provider = "down", model = "sim-image" }}
fallbacks = ["sim-b"]
failures_before_fallback = 2

[models.sim-b]
stage = "image"
backend = {{ kind = "remote", provider = "b", model = "sim-image" }}

[models.revoked]
stage = "image"
backend = {{ kind = "remote", provider = "revoked", model = "sim-image" }}
fallbacks = ["tiny-sd"]

[models.slow]
stage = "image"
backend = {{ kind = "remote", provider = "slow", model = "sim-image" }}
limits = {{ concurrency = 1 }}
fallbacks = ["tiny-sd"]
max_wait_s = {MAX_WAIT_S}

[models.down-second]
stage = "image"
backend = {{ kind = "remote", provider = "down", model = "sim-image" }}
fallbacks = ["down-last"]
failures_before_fallback = 2

[models.down-last]
stage = "image"
backend = {{ kind = "remote", provider = "down", model = "sim-image" }}
failures_before_fallback = 2

[models.chain-a]
stage = "image"
backend = {{ kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }}
fallbacks = ["chain-b", "chain-c"]

[models.chain-b]
stage = "image"
backend = {{ kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }}
capabilities = {{ max_side = 64 }}
fallbacks = ["chain-d", "chain-a"]

[models.chain-c]
stage = "image"
backend = {{ kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }}

[models.chain-d]
stage = "image"
backend = {{ kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }}

[models.picky]
stage = "image"
backend = {{ kind = "remote", provider = "b", model = "sim-image" }}
fallbacks = ["tiny-sd"]
failures_before_fallback = 1
"""


@dataclass
class FallbackWorker:
    """The worker, its simulators, and what the tests read back."""

    broker: FramequeueBroker
    runtime: Runtime
    simulators: dict[str, ProviderSimulator]

    def run(self, model: str, prompt: str = "a lantern", count: int = 1) -> list[JobRecord]:
        """``count`` image jobs that choose ``model`` for their image, each to its end."""
        specs = [JobSpec(prompt=f"{prompt} {uuid.uuid4().hex[:6]}", kind=JobKind.image, width=64, height=64,
                         steps=1, enhance_prompt=False, models={"image": model}) for _ in range(count)]
        for spec in specs:
            submit_job(self.broker, self.runtime.status, spec, catalog=self.runtime.catalog)
        return [wait_until_finished(self.runtime.status, spec.id, timeout_s=60) for spec in specs]

    def events(self, job_id: str, event: str) -> list[dict[str, str]]:
        entries = cast("list[tuple[str, dict[str, str]]]", self.runtime.status.client.xrange(
            self.runtime.status.events_key))
        return [fields for _, fields in entries if fields.get("job_id") == job_id and fields["event"] == event]

    def server_errors(self, provider: str) -> int:
        return sum(int(entry["server_errors"]) for entry in self.simulators[provider].stats().values())  # type: ignore[call-overload]

    @property
    def cooldowns(self) -> ModelCooldowns:
        return ModelCooldowns(self.runtime.status.client, self.runtime.settings.namespace)


@pytest.fixture(scope="module")
def worker(settings: Settings, tiny_profile, tmp_path_factory) -> Iterator[FallbackWorker]:  # type: ignore[no-untyped-def]
    revoked = {key: KeyConfig(requests_per_minute=1000, revoked=True) for key in KEYS["revoked"]}
    simulators = {
        "down": ProviderSimulator({key: KeyConfig(requests_per_minute=1000) for key in KEYS["down"]}).start(),
        "revoked": ProviderSimulator(revoked).start(),
        "slow": ProviderSimulator({KEYS["slow"][0]: KeyConfig(requests_per_minute=1000)},
                                  latency_ms=SLOW_LATENCY_MS).start(),
        "b": ProviderSimulator({KEYS["b"][0]: KeyConfig(requests_per_minute=1000)}).start(),
    }
    simulators["down"].start_fault_burst(1_000_000, status=503)
    simulators["b"].refuse_prompts_with(REFUSED_WORD)
    folder = tmp_path_factory.mktemp("fallbacks")
    (folder / "catalog.toml").write_text(CATALOG)
    (folder / "remote.toml").write_text("".join(
        f'[providers.{name}]\nkind = "openai"\nbase_url = "{simulator.base_url}"\n'
        f'keys_env = "FRAMEQUEUE_KEYS_FB_{name.upper()}"\n' for name, simulator in simulators.items()))
    own = settings.model_copy(update={"namespace": f"fallbacks-{uuid.uuid4().hex[:8]}",
                                      "model_catalog": folder / "catalog.toml",
                                      "remote_config": folder / "remote.toml"})
    with pytest.MonkeyPatch.context() as environment:
        for name, keys in KEYS.items():
            environment.setenv(f"FRAMEQUEUE_KEYS_FB_{name.upper()}", ",".join(keys))
        broker, runtime = build_broker(own), Runtime(own)
        add_remote_middleware(broker, runtime)
        declare_stage_actors(broker, STAGE_FUNCTIONS, lambda: runtime, catalog=runtime.catalog)
        dramatiq_worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
        dramatiq_worker.start()
        try:
            yield FallbackWorker(broker, runtime, simulators)
        finally:
            dramatiq_worker.stop()
            broker.close()
            for simulator in simulators.values():
                simulator.stop()


def test_a_model_whose_provider_keeps_failing_falls_back_after_n_failures_then_cools_down(
    worker: FallbackWorker,
) -> None:
    before = worker.server_errors("down")

    [record] = worker.run("down-first")

    assert record.state == "succeeded", record.error
    assert record.models["image"] == "sim-b@b:sim-image"  # the model that finally served
    [moved] = worker.events(record.id, "fallback")
    assert (moved["stage"], moved["from_model"], moved["to_model"]) == ("image", "down-first", "sim-b")
    assert moved["reason"].startswith("down-first is cooling down after 2 provider failures in a row")
    assert "ProviderUnavailable" in moved["reason"] and "HTTP 503" in moved["reason"]
    assert len(worker.events(record.id, "retrying")) == 1  # the first failure; the second moved it
    assert record.attempts["image"] == 3  # two at down-first, one at sim-b
    assert worker.server_errors("down") - before == 2
    assert worker.cooldowns.cooling_down("down-first") is not None

    [cooled] = worker.run("down-first")  # while down-first cools down, its messages move without trying it

    assert cooled.state == "succeeded" and cooled.models["image"] == "sim-b@b:sim-image"
    [moved] = worker.events(cooled.id, "fallback")
    assert moved["to_model"] == "sim-b" and moved["reason"].startswith("down-first is cooling down after")
    assert cooled.attempts["image"] == 1 and not worker.events(cooled.id, "retrying")
    assert worker.server_errors("down") - before == 2


def test_a_provider_with_every_key_revoked_falls_back_at_once_from_the_call_and_from_the_gate(
    worker: FallbackWorker,
) -> None:
    first, second = (worker.run("revoked")[0] for _ in range(2))

    for record in (first, second):
        assert record.state == "succeeded", record.error
        assert record.models["image"].startswith("tiny-sd@")
        [moved] = worker.events(record.id, "fallback")
        assert (moved["from_model"], moved["to_model"]) == ("revoked", "tiny-sd")
        assert moved["reason"].startswith("NoUsableKey: every revoked key is disabled")
        assert not worker.events(record.id, "retrying")  # no retry spent on a provider with no key
    assert first.attempts["image"] == 2  # the call that found both keys revoked, then tiny-sd
    assert second.attempts["image"] == 1  # the key-rotation gate moved it before it ran
    unauthorized = sum(int(entry["unauthorized"]) for entry in worker.simulators["revoked"].stats().values())  # type: ignore[call-overload]
    assert unauthorized == len(KEYS["revoked"])
    assert not [key for key in KEYS["revoked"] for record in (first, second)
                for event in worker.events(record.id, "fallback") if key in str(event)]


def test_a_message_that_waits_past_max_wait_moves_to_the_fallback(worker: FallbackWorker) -> None:
    records = worker.run("slow", count=2)  # one takes the model's only slot; the other waits for it

    assert [record.state for record in records] == ["succeeded"] * 2
    served = sorted(record.models["image"].partition("@")[0] for record in records)
    assert served == ["slow", "tiny-sd"]
    [waited] = [record for record in records if record.models["image"].startswith("tiny-sd@")]
    [moved] = worker.events(waited.id, "fallback")
    assert (moved["from_model"], moved["to_model"]) == ("slow", "tiny-sd")
    assert moved["reason"].startswith("waited ") and f"over its max_wait_s of {MAX_WAIT_S:g} s" in moved["reason"]
    assert "slow:sim-image has 1 calls in flight" in waited.wait_reason  # it waited for the slot
    [stayed] = [record for record in records if record is not waited]
    assert not worker.events(stayed.id, "fallback")


def test_with_no_fallback_left_the_stage_spends_its_retries_and_fails_with_the_reason(
    worker: FallbackWorker,
) -> None:
    [record] = worker.run("down-second")

    assert record.state == "failed" and record.stage == "image"
    assert record.error.startswith("ProviderUnavailable") and "HTTP 503" in record.error
    [moved] = worker.events(record.id, "fallback")  # down-second to down-last, and no further
    assert (moved["from_model"], moved["to_model"]) == ("down-second", "down-last")
    budget = STAGES["image"].max_retries
    assert record.attempts["image"] == 2 + budget + 1  # down-last's retries start afresh
    assert len(worker.events(record.id, "retrying")) == 1 + budget
    assert worker.cooldowns.cooling_down("down-last") is not None  # cooling, with nowhere left to go


def test_a_4xx_the_job_caused_is_not_the_providers_failure_and_does_not_fall_back(
    worker: FallbackWorker,
) -> None:
    [record] = worker.run("picky", prompt=f"a {REFUSED_WORD} at dusk")  # one failure would move it

    assert record.state == "failed" and record.stage == "image"
    assert record.error.startswith("RequestRejected") and "HTTP 400" in record.error
    assert not worker.events(record.id, "fallback")
    assert worker.cooldowns.failures("picky") == 0 and worker.cooldowns.cooling_down("picky") is None
    [served] = worker.run("picky")  # the provider is fine: a prompt it takes is served there
    assert served.state == "succeeded" and served.models["image"] == "picky@b:sim-image"


def test_the_next_model_is_the_first_untried_one_that_can_serve_in_the_chains_of_the_models_tried(
    worker: FallbackWorker,
) -> None:
    fallbacks = fallbacks_of(worker.broker)
    assert fallbacks is not None
    small, large = (JobSpec(prompt="a kite", width=side, height=side, models={"image": "chain-a"})
                    for side in (64, 128))

    assert fallbacks.next_model(small, ["chain-a"]) == "chain-b"
    assert fallbacks.next_model(large, ["chain-a"]) == "chain-c"  # chain-b makes at most 64 px
    assert fallbacks.next_model(small, ["chain-a", "chain-b"]) == "chain-c"  # chain-a's list before chain-b's
    assert fallbacks.next_model(small, ["chain-a", "chain-b", "chain-c"]) == "chain-d"
    assert fallbacks.next_model(small, ["chain-a", "chain-b", "chain-c", "chain-d"]) is None  # never back to chain-a
