"""(o) Two image models: interleaved on one worker against a worker pinned to each, and what a swap costs.

Jobs/s: image jobs of the tiny catalog (64x64, 1 step, no prompt rewrite, no stage cache), their
models alternating tiny-sd / tiny-sd-alt, all submitted at once, in three settings:

A. one image worker serving both models' queues (``framequeue worker --models tiny-sd,tiny-sd-alt``)
   with a model memory budget that holds one of them, so a job whose model is not resident swaps
   (evicts the other, loads its own; a thread already rendering with the evicted one finishes);
B. the same worker with a budget that holds both (no swaps);
C. two image workers, each pinned to one model (``--models tiny-sd`` and ``--models tiny-sd-alt``).

The image side has 2 threads in every setting (one worker of 2, or two of 1), the machine's core
count; a worker of 2 threads for prompt_enhance, safety_check and upload is the same in all three.
Each worker is a ``dramatiq.Worker`` with a broker and a ``Runtime`` of its own (so a model
registry of its own, whose loads and evictions are read afterwards), all in this process,
as the other in-process sections run theirs: the settings differ in how models map to workers and
budgets, not in the number of processes. A warm-up job per model loads them first; the rounds
alternate A, B, C, and each setting's medians are printed with the ratios A/C and B/C. What a
swap costs is scripts/bench_model_swap.py.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import dramatiq

from queue_config.catalog import Catalog, CatalogModel, catalog_of, load_catalog, shipped_catalog
from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from scripts.bench import NothingFound, wait_until
from scripts.bench_model_swap import (
    DUMMY_WIDTH,
    MODELS,
    SwapCost,
    budget_mb,
    catalog_swap_cost,
    collect_ms,
    dummy_swap_cost,
)
from workers.broker import FramequeueBroker, build_broker
from workers.cli.main import worker_queues
from workers.jobs.record import TERMINAL_STATES, JobStatusStore
from workers.jobs.submit import submit_job
from workers.runtime import Runtime
from workers.stage_actor import declare_stage_actors
from workers.stages import STAGE_FUNCTIONS

JOBS = 24
ROUNDS = 3
SWAPS = 7
IMAGE_THREADS = 2
OTHER_THREADS = 2
OTHER_STAGES = ["prompt_enhance", "safety_check", "upload"]
SIDE_PX = 64

class CountedLoads(Runtime):
    """A runtime that counts the catalog models it loads (``model_loads``), swaps included."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.model_loads = 0

    def _load(self, entry: CatalogModel, device: str) -> Any:
        self.model_loads += 1
        return super()._load(entry, device)


@dataclass(frozen=True)
class Setting:
    letter: str
    label: str
    #: The models each image worker serves; threads are shared out evenly among the workers.
    workers: tuple[tuple[str, ...], ...]
    models_held: int


SETTINGS = (
    Setting("A", "one worker, both models, budget holds one", (MODELS,), 1),
    Setting("B", "one worker, both models, budget holds both", (MODELS,), 2),
    Setting("C", "two workers, each pinned to one model", tuple((model,) for model in MODELS), 1),
)


@dataclass(frozen=True)
class Round:
    jobs_per_s: float
    #: Of the image workers, during the timed jobs (a median of rounds may end in .5): catalog models
    #: loaded, and their registries' loads and evictions (of entries: a model, the batcher wrapping it).
    model_loads: float
    loads: float
    evictions: float


def spec_of(number: int) -> JobSpec:
    return JobSpec(prompt=f"a harbour at dawn, take {number}", kind=JobKind.image, width=SIDE_PX, height=SIDE_PX,
                   steps=1, seed=number, enhance_prompt=False, cache=False,
                   models={"image": MODELS[number % len(MODELS)]})


def run_round(redis_url: str, data_dir: Path, setting: Setting, jobs: int) -> Round:
    """Jobs/s of ``jobs`` alternating jobs in ``setting``, and its image registries' loads and evictions."""
    settings = Settings(redis_url=redis_url, namespace=f"bench-models-{uuid.uuid4().hex[:6]}", data_dir=data_dir,
                        model_profile="tiny", device="cpu")
    catalog = catalog_of(settings)
    settings = settings.model_copy(update={"model_memory_budget_mb": budget_mb(catalog, setting.models_held)})
    threads = IMAGE_THREADS // len(setting.workers)
    plan = [(worker_queues(catalog, [], list(models)), threads) for models in setting.workers]
    plan.append((worker_queues(catalog, OTHER_STAGES, []), OTHER_THREADS))
    started: list[tuple[FramequeueBroker, CountedLoads, dramatiq.Worker]] = []
    for queues, worker_threads in plan:
        broker, runtime = build_broker(settings), CountedLoads(settings)
        declare_stage_actors(broker, STAGE_FUNCTIONS, held(runtime), catalog=catalog)
        worker = dramatiq.Worker(broker, queues=set(queues), worker_threads=worker_threads, worker_timeout=100)
        worker.start()
        started.append((broker, runtime, worker))
    broker, status = started[-1][0], started[-1][1].status
    image_runtimes = [runtime for _, runtime, _ in started[:-1]]

    def counts() -> tuple[int, int, int]:
        return (sum(runtime.model_loads for runtime in image_runtimes),
                sum(runtime.models.loads for runtime in image_runtimes),
                sum(runtime.models.evictions for runtime in image_runtimes))

    try:
        run_jobs(broker, status, catalog, [spec_of(10_000 + number) for number in range(len(MODELS))])  # warm-up: loads
        before = counts()
        elapsed_s = run_jobs(broker, status, catalog, [spec_of(number) for number in range(jobs)])
    finally:
        for each_broker, _, worker in started:
            worker.stop()
            each_broker.close()
    return Round(jobs / elapsed_s, *(after - was for after, was in zip(counts(), before, strict=True)))


def held(runtime: Runtime) -> Callable[[], Runtime]:
    """The runtime provider of one worker's actors: always ``runtime``."""
    return lambda: runtime


def run_jobs(broker: FramequeueBroker, status: JobStatusStore, catalog: Catalog, specs: list[JobSpec]) -> float:
    """Seconds from submitting ``specs`` to the last one's end; every one must succeed."""
    started = time.perf_counter()
    for spec in specs:
        submit_job(broker, status, spec, screen=NothingFound(), catalog=catalog)  # (l) times the screen

    def states() -> list[str | None]:
        pipe = status.client.pipeline(transaction=False)
        for spec in specs:
            pipe.hget(status.job_key(spec.id), "state")
        return pipe.execute()  # type: ignore[no-any-return]

    wait_until(lambda: all(state in TERMINAL_STATES for state in states()), interval_s=0.05)
    elapsed_s = time.perf_counter() - started
    assert set(states()) == {"succeeded"}, [status.get(spec.id).error for spec in specs]  # type: ignore[union-attr]
    return elapsed_s


@dataclass(frozen=True)
class ModelsResult:
    """Each setting's median round (by its letter), the swap costs and a full collection's ms."""

    rounds: dict[str, Round]
    tiny: SwapCost
    dummy: SwapCost | None
    collect_ms: float


def bench_models(redis_url: str, data_dir: Path, *, jobs: int = JOBS, rounds: int = ROUNDS, swaps: int = SWAPS,
                 dummy_width: int = DUMMY_WIDTH) -> ModelsResult:
    """Print section (o) (no larger dummy when ``dummy_width`` is 0)."""
    runs: dict[str, list[Round]] = {setting.letter: [] for setting in SETTINGS}
    for _ in range(rounds):  # alternating, so that a busy spell on the machine falls on every setting
        for setting in SETTINGS:
            runs[setting.letter].append(run_round(redis_url, data_dir, setting, jobs))
    medians = {letter: Round(*(statistics.median(values) for values in zip(*map(astuple, each), strict=True)))
               for letter, each in runs.items()}
    print(f"(o) two image models: {jobs} tiny image jobs ({SIDE_PX}x{SIDE_PX}, 1 step, no prompt rewrite, no cache) "
          f"alternating {' / '.join(MODELS)}; {IMAGE_THREADS} image threads in each setting, {OTHER_THREADS} more for "
          f"the other stages; in-process workers; medians of {rounds} alternating rounds")
    for setting in SETTINGS:
        result, pinned = medians[setting.letter], medians["C"].jobs_per_s
        ratio = "" if setting.letter == "C" else f" ({setting.letter}/C {result.jobs_per_s / pinned:.2f})"
        print(f"    {setting.letter} {setting.label}: {result.jobs_per_s:.1f} jobs/s{ratio}; model loads "
              f"{result.model_loads:g} (registry loads {result.loads:g}, evictions {result.evictions:g})")
    print("    (registry entries: a model and the batcher wrapping it are two, loaded and evicted together)")
    tiny, collect = catalog_swap_cost(data_dir, swaps), collect_ms(swaps)
    print(f"    swap in the registry, medians of {swaps}: {MODELS[0]} ({tiny.size_bytes / 2**20:.1f} MB) cold load "
          f"{tiny.cold_ms:.0f} ms, cache hit {tiny.hit_ms:.3f} ms, swap (evict + load) {tiny.swap_ms:.0f} ms; "
          f"a full gc.collect() here, which the registry runs after an eviction only on CUDA: {collect:.0f} ms. "
          f"Tiny models make the load cheap")
    dummy = dummy_swap_cost(dummy_width, swaps) if dummy_width else None
    if dummy is not None:
        size_mb = dummy.size_bytes / 2**20
        rate = size_mb / dummy.cold_ms * 1000
        print(f"    a larger dummy (SD layout, random weights, {size_mb:.0f} MB float32): cold load "
              f"{dummy.cold_ms:.0f} ms ({rate:.0f} MB/s from the page cache, mapped, not copied), "
              f"swap {dummy.swap_ms:.0f} ms")
    standard = load_catalog(shipped_catalog("standard")).models["sd-turbo"]
    print(f"    a GPU swap reads every byte and copies it to the device: the standard models' swap (sd-turbo, "
          f"{standard.memory_mb:,} MB) is what a GPU run would measure; not measured here")
    return ModelsResult(medians, tiny, dummy, collect)


if __name__ == "__main__":
    import logging

    from workers.embedded_redis import private_redis_server

    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="framequeue-bench-") as tmp, private_redis_server(Path(tmp)) as url:
        bench_models(url, Path(tmp) / "data")
