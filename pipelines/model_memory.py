"""How much memory a loaded model holds: the torch tensors reachable from it, each counted once.

A loaded model is rarely a bare ``torch.nn.Module``: framequeue's backends wrap a diffusers
pipeline (whose components are modules), a causal LM and a sentence embedder, or another
backend (a batcher wraps a text-to-image model). :func:`tensor_storages` walks all of these and
returns the storages it reached, keyed by device and address, so that a tensor reachable by two
paths (tied weights, a component shared through ``from_pipe``, a wrapper and what it wraps) is
counted once. :class:`pipelines.ModelRegistry` charges its memory budget with them.

What it cannot see is memory that torch does not own: an ONNX Runtime session, a remote
client's connection pool. Such an object measures 0 bytes.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from itertools import chain

import torch

#: Bytes in one MB as framequeue reports model sizes (a MiB, as ``nvidia-smi`` counts).
MB = 1024 * 1024
#: How many plain objects deep the walk follows attributes (containers do not count): enough for
#: batcher -> text-to-image -> diffusers pipeline -> module, and it stops a walk that wanders
#: into a library's internals from going on forever.
MAX_DEPTH = 6

#: Where a storage lives: its device and its address there. Two tensors with one key share memory.
StorageKey = tuple[str, int]

#: Not walked: values that cannot hold a tensor, and code (classes, modules, functions), whose
#: attributes lead to globals rather than to what the model holds.
_NOT_WALKED = (
    str, bytes, bytearray, int, float, complex, bool, type(None), range,
    type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
)


def tensor_storages(obj: object) -> dict[StorageKey, int]:
    """The storages of every torch tensor reachable from ``obj``, with their sizes in bytes.

    Followed: tensors; a module's parameters and buffers; the values of mappings, lists, tuples
    and sets; and the instance attributes of any other object (a diffusers pipeline holds its
    components as attributes, a backend its ``.pipeline`` or ``.model``), up to
    :data:`MAX_DEPTH` objects deep. Each storage counts in full once, however many tensors view
    it. Tensors without memory (empty, or on the ``meta`` device) are left out.
    """
    found: dict[StorageKey, int] = {}
    _walk(obj, 0, set(), found)
    return found


def measure_bytes(obj: object) -> int:
    """Bytes of torch memory ``obj`` holds: the sum of :func:`tensor_storages`."""
    return sum(tensor_storages(obj).values())


def _walk(obj: object, depth: int, visited: set[int], found: dict[StorageKey, int]) -> None:
    if isinstance(obj, _NOT_WALKED) or id(obj) in visited:
        return
    visited.add(id(obj))
    if isinstance(obj, torch.Tensor):
        _add(obj, found)
    elif isinstance(obj, torch.nn.Module):
        for tensor in chain(obj.parameters(), obj.buffers()):
            _add(tensor, found)
    elif isinstance(obj, Mapping | list | tuple | set | frozenset):
        try:
            items = list(obj.values() if isinstance(obj, Mapping) else obj)
        except Exception:  # one that refuses to be read (urllib3's pool of connections) holds no weights
            return
        for item in items:
            _walk(item, depth, visited, found)
    elif depth < MAX_DEPTH and hasattr(obj, "__dict__"):
        for value in vars(obj).values():
            _walk(value, depth + 1, visited, found)


def _add(tensor: torch.Tensor, found: dict[StorageKey, int]) -> None:
    if tensor.is_meta:
        return
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse and other layouts without one storage
        found[(str(tensor.device), id(tensor))] = tensor.numel() * tensor.element_size()
        return
    if storage.nbytes() and storage.data_ptr():
        found[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
