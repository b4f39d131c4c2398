from __future__ import annotations

import pathlib
from types import SimpleNamespace

import torch

from pipelines.model_memory import measure_bytes, tensor_storages
from pipelines.text_to_image import TextToImage
from pipelines.tiny_models import build_tiny_image_model

MIB = 1024 * 1024


def linear_of_mib(mib: int) -> torch.nn.Linear:
    """A bias-free float32 linear layer whose weight is exactly ``mib`` MiB."""
    return torch.nn.Linear(256, 1024 * mib, bias=False)


def test_a_module_measures_its_parameters_and_buffers() -> None:
    model = torch.nn.BatchNorm1d(1000)  # 2 parameters and 2 float buffers of 1000, plus a counter
    expected = sum(tensor.numel() * tensor.element_size() for tensor in [*model.parameters(), *model.buffers()])
    assert measure_bytes(model) == expected == 4 * 1000 * 4 + 8


def test_a_tensor_reached_by_two_paths_counts_once() -> None:
    shared = linear_of_mib(1)
    tied = torch.nn.Linear(256, 1024, bias=False)
    tied.weight = shared.weight
    holder = SimpleNamespace(model=shared, pipeline=SimpleNamespace(parts={"a": tied, "b": [shared]}))
    assert measure_bytes(holder) == MIB


def test_views_of_one_storage_count_the_storage_once() -> None:
    base = torch.zeros(1024, 256)
    views = (base[:512], base[512:], base.t())
    assert measure_bytes(views) == base.numel() * base.element_size()


def test_a_model_wrapped_in_wrappers_is_found_through_pipeline_and_model_attributes() -> None:
    inner = linear_of_mib(2)
    wrapped = SimpleNamespace(model=SimpleNamespace(pipeline=SimpleNamespace(unet=inner)))
    assert measure_bytes(wrapped) == 2 * MIB


def test_cycles_end_the_walk_and_objects_without_tensors_measure_zero() -> None:
    node = SimpleNamespace()
    node.self_ref = node
    node.items = [node, "text", 3, {"k": node}]
    assert measure_bytes(node) == 0


def test_storages_are_keyed_by_device_and_address() -> None:
    model = linear_of_mib(1)
    assert tensor_storages(model) == {("cpu", model.weight.untyped_storage().data_ptr()): MIB}


def test_a_tiny_diffusers_pipeline_measures_the_bytes_of_its_components(tmp_path: pathlib.Path) -> None:
    build_tiny_image_model(tmp_path)
    text_to_image = TextToImage.from_pretrained(str(tmp_path), device="cpu")
    modules = [c for c in text_to_image.pipeline.components.values() if isinstance(c, torch.nn.Module)]
    assert {type(module).__name__ for module in modules} == {"UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel"}
    parameter_bytes = sum(p.numel() * p.element_size() for module in modules for p in module.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for module in modules for b in module.buffers())
    # The scheduler is no module, but holds its noise schedule (betas, sigmas...) as tensors.
    schedule = [v for v in vars(text_to_image.pipeline.scheduler).values() if isinstance(v, torch.Tensor)]
    schedule_bytes = sum(tensor.numel() * tensor.element_size() for tensor in schedule)
    assert parameter_bytes > 1_000_000 and 0 < schedule_bytes < 50_000

    assert measure_bytes(text_to_image) == parameter_bytes + buffer_bytes + schedule_bytes
    assert measure_bytes(text_to_image.pipeline) == parameter_bytes + buffer_bytes + schedule_bytes
