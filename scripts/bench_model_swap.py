"""(o), second part: what a model swap costs in the worker's model registry.

Median ms of a cold load (a model into an empty registry), a cache hit, and a swap (a registry
whose budget holds one model evicts it and loads the other), for the tiny catalog's two image
models through ``Runtime.model`` (the worker's own path), and for a larger dummy of the Stable
Diffusion layout with random weights, to show how a swap on this CPU grows with the bytes. A load
counts until its weights are in memory: safetensors maps the files, and a load reads nothing until
the weights are touched, so each page is touched once. After an eviction the registry runs a full
``gc.collect()``; its time in this process is measured on its own.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines import ModelRegistry, TextToImage
from queue_config.catalog import Catalog, catalog_of
from queue_config.settings import Settings
from workers.runtime import Runtime

#: The two catalog models (of the tiny profile) a swap alternates between.
MODELS = ("tiny-sd", "tiny-sd-alt")
#: Width of the larger dummy's UNet at its first level (the levels go 1x, 2x, 4x, 4x): 64 gives 129 MB of float32.
DUMMY_WIDTH = 64
PAGE_BYTES = 4096

#: Loads a model by name, or hands out the resident one.
Getter = Callable[[str], Any]


@dataclass(frozen=True)
class SwapCost:
    cold_ms: float
    hit_ms: float
    swap_ms: float
    #: The resident size of one of the two models, as the registry measured it.
    size_bytes: int
    evictions: int


def budget_mb(catalog: Catalog, models_held: int) -> int:
    """A model memory budget that holds the ``models_held`` largest of :data:`MODELS` (by catalog memory_mb)."""
    sizes_mb = sorted(catalog.models[model].memory_mb or 0 for model in MODELS)
    return sum(sizes_mb[-models_held:])


def page_in(model: TextToImage) -> TextToImage:
    """``model`` after reading one byte of each page of its weights."""
    for component in model.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in itertools.chain(component.parameters(), component.buffers()):
                tensor.detach().reshape(-1).view(torch.uint8)[::PAGE_BYTES].sum()
    return model


def ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def swap_cost(fresh: Callable[[], tuple[ModelRegistry, Getter]], names: tuple[str, str], swaps: int) -> SwapCost:
    """Medians of ``swaps`` cold loads, hits and swaps; ``fresh`` makes an empty registry holding one of ``names``."""
    cold = [ms(lambda: page_in(fresh()[1](names[0]))) for _ in range(swaps)]
    registry, get = fresh()
    get(names[0])
    hit = [ms(lambda: get(names[0])) for _ in range(swaps)]
    swap = []
    for number in range(swaps):
        name = names[(number + 1) % 2]
        swap.append(ms(lambda: page_in(get(name))))  # noqa: B023 - called at once
    size_bytes = max(size for _, size in registry.resident())
    return SwapCost(statistics.median(cold), statistics.median(hit), statistics.median(swap), size_bytes,
                    registry.evictions)


def catalog_swap_cost(data_dir: Path, swaps: int) -> SwapCost:
    """The tiny image models' swap cost through ``Runtime.model``, with a budget that holds one of them."""
    settings = Settings(data_dir=data_dir, model_profile="tiny", device="cpu")
    settings = settings.model_copy(update={"model_memory_budget_mb": budget_mb(catalog_of(settings), 1)})

    def fresh() -> tuple[ModelRegistry, Getter]:
        runtime = Runtime(settings)
        return runtime.models, runtime.model

    return swap_cost(fresh, MODELS, swaps)


def dummy_swap_cost(width: int, swaps: int) -> SwapCost:
    """The swap cost of two random-weight text-to-image pipelines of the Stable Diffusion layout (a
    four-level UNet whose first level is ``width`` channels wide, a multiple of 32), with a budget
    that holds one."""
    from diffusers import UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

    from pipelines.tiny_models import TEXT_ENCODER_DIM, tiny_image_components

    with tempfile.TemporaryDirectory(prefix="framequeue-bench-dummy-") as tmp:
        paths = {}
        for seed, name in enumerate(("dummy-a", "dummy-b")):
            components = tiny_image_components(seed)
            components["unet"] = UNet2DConditionModel(
                block_out_channels=(width, 2 * width, 4 * width, 4 * width), layers_per_block=2, sample_size=64,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                cross_attention_dim=TEXT_ENCODER_DIM, attention_head_dim=8)
            paths[name] = Path(tmp) / name
            StableDiffusionPipeline(**components).save_pretrained(paths[name])
        declared = sum(file.stat().st_size for file in paths["dummy-a"].rglob("*") if file.is_file())

        def fresh() -> tuple[ModelRegistry, Getter]:
            registry = ModelRegistry("cpu", memory_budget_bytes=declared * 3 // 2)
            return registry, lambda name: registry.get(
                name, lambda device: TextToImage.from_pretrained(str(paths[name]), device), size_bytes=declared)

        return swap_cost(fresh, ("dummy-a", "dummy-b"), swaps)


def collect_ms(repeats: int) -> float:
    """Median ms of a full ``gc.collect()`` in this process, as the registry runs after an eviction."""
    return statistics.median(ms(gc.collect) for _ in range(repeats))
