"""The interface every remote provider client implements.

A client knows one provider's HTTP API and nothing else: it holds no keys (each call is
given one), keeps no queue state and never retries on its own. Failures surface as
:mod:`pipelines.remote.errors`, so the key provider and the stage actors can decide what to
do about them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import PIL.Image
import requests

from pipelines.metering import count_provider_call
from pipelines.remote.transport import Exchange

#: Default limit on connecting and on each wait for response bytes, in seconds.
DEFAULT_TIMEOUT_S = 60.0
#: Sampling temperature for text completions; the local enhancer samples at the same value.
DEFAULT_TEMPERATURE = 0.8


class ProviderClient(ABC):
    """One provider's text-to-image and text completion API.

    Attributes:
        name: The provider's name, as the key provider knows it (``"openai"``, ``"replicate"``).
            Two endpoints that take different keys need different names.
        timeout_s: Limit on connecting and on each wait for response bytes, in seconds.
        session: The HTTP session requests go through (its connection pool is reused).
    """

    name: str

    def __init__(self, *, name: str, timeout_s: float, session: requests.Session | None) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def exchange(self, key: str) -> Exchange:
        """Start the requests of one call, made with ``key``; the running stage counts it as a provider call."""
        count_provider_call()
        return Exchange(self.session, self.name, key, self.timeout_s)

    @abstractmethod
    def generate_image(
        self,
        *,
        key: str,
        model: str,
        prompt: str,
        width: int,
        height: int,
        seed: int,
        steps: int,
        negative_prompt: str | None,
    ) -> PIL.Image.Image:
        """Render ``prompt`` with ``model`` at ``width`` x ``height`` px and return it as RGB.

        Raises:
            ProviderError: A subclass saying what went wrong (see :mod:`pipelines.remote.errors`).
        """

    @abstractmethod
    def complete_text(self, *, key: str, model: str, system: str, prompt: str, seed: int, max_tokens: int) -> str:
        """Return ``model``'s reply to ``prompt`` under the ``system`` instruction, at most ``max_tokens`` long.

        Raises:
            ProviderError: A subclass saying what went wrong (see :mod:`pipelines.remote.errors`).
        """
