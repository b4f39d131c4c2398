"""Remote model providers: clients for their HTTP APIs, stage backends on top, and a simulator.

A :class:`ProviderClient` speaks one provider's API (:class:`OpenAICompatibleClient`,
:class:`ReplicateClient`); :class:`RemoteTextToImage` and :class:`RemotePromptEnhancer` wrap
a client with the local backends' call shapes; a :class:`KeyProvider` picks the key for each
request. :class:`ProviderSimulator` serves both APIs on loopback for tests and demos.
Nothing here imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.remote.backends import RemotePromptEnhancer, RemoteTextToImage
from pipelines.remote.base import ProviderClient
from pipelines.remote.errors import (
    BadResponse,
    GenerationFailed,
    KeyRejected,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from pipelines.remote.keys import KeyProvider, StaticKeyProvider, key_fingerprint
from pipelines.remote.openai_compatible import OpenAICompatibleClient
from pipelines.remote.replicate import ReplicateClient

if TYPE_CHECKING:
    from pipelines.remote.simulator import KeyConfig, ProviderSimulator

__all__ = [
    "BadResponse",
    "GenerationFailed",
    "KeyConfig",
    "KeyProvider",
    "KeyRejected",
    "OpenAICompatibleClient",
    "ProviderClient",
    "ProviderError",
    "ProviderSimulator",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RemotePromptEnhancer",
    "RemoteTextToImage",
    "ReplicateClient",
    "RequestRejected",
    "StaticKeyProvider",
    "key_fingerprint",
]


def __getattr__(name: str) -> Any:
    """Import the simulator only when asked for: ``python -m pipelines.remote.simulator`` then runs it once."""
    if name in ("KeyConfig", "ProviderSimulator"):
        from pipelines.remote import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
