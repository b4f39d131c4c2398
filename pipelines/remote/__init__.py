"""Remote model providers: clients for their HTTP APIs, stage backends on top, and a simulator.

A :class:`ProviderClient` speaks one provider's API (:class:`OpenAICompatibleClient`,
:class:`ReplicateClient`); :class:`RemoteTextToImage` and :class:`RemotePromptEnhancer` wrap
a client with the local backends' call shapes; a :class:`KeyProvider` picks the key for each
request. :class:`ProviderSimulator` serves both APIs on loopback for tests and demos.
Nothing here imports torch.
"""

from __future__ import annotations

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
