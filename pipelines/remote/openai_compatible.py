"""A client for OpenAI-compatible APIs: OpenAI itself, and the many servers that copy its shapes.

Images: ``POST /v1/images/generations`` with ``model``, ``prompt``, ``size`` ("WxH"),
``n`` = 1 and ``response_format`` = "b64_json"; the image comes back base64-encoded in
``data[0].b64_json`` (or, from servers that ignore the format, as a URL in ``data[0].url``).
Text: ``POST /v1/chat/completions`` with ``model``, ``messages`` (system, user), ``seed``,
``max_tokens`` and ``temperature``; the reply is ``choices[0].message.content``. Both
authenticate with ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

from typing import Any

import PIL.Image
import requests

from pipelines.remote.base import DEFAULT_TEMPERATURE, DEFAULT_TIMEOUT_S, ProviderClient
from pipelines.remote.errors import BadResponse


class OpenAICompatibleClient(ProviderClient):
    """Calls an OpenAI-compatible endpoint.

    Parameters:
        base_url: The server's root, e.g. ``https://api.openai.com``; a trailing ``/v1`` (the
            form OpenAI's SDKs take) is accepted and dropped.
        timeout_s: Limit on connecting and on each wait for response bytes, in seconds.
        session: The HTTP session to use; a new one when omitted.
        name: The provider name the key provider files this endpoint's keys under.
        extra_image_fields: Send ``seed``, ``steps`` and ``negative_prompt`` with image
            requests. Servers that take extra fields (Together, LocalAI, vLLM-style gateways)
            use them; OpenAI's own API rejects unknown fields with HTTP 400, so turn this off
            there (its images are then not seeded).
        temperature: Sampling temperature for chat completions.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        session: requests.Session | None = None,
        name: str = "openai",
        extra_image_fields: bool = True,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        super().__init__(name=name, timeout_s=timeout_s, session=session)
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.extra_image_fields = extra_image_fields
        self.temperature = temperature

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
        """Render one image; see :meth:`ProviderClient.generate_image`."""
        exchange = self.exchange(key)
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "size": f"{width}x{height}",
            "n": 1,
            "response_format": "b64_json",
        }
        if self.extra_image_fields:
            body.update(seed=seed, steps=steps)
            if negative_prompt:
                body["negative_prompt"] = negative_prompt
        response = exchange.send("POST", f"{self.base_url}/v1/images/generations", json=body)
        first = exchange.field(exchange.read_json(response), "data", 0)
        if isinstance(first, dict) and first.get("b64_json"):
            return exchange.decode_base64_image(str(first["b64_json"]))
        if isinstance(first, dict) and first.get("url"):
            return exchange.fetch_image(str(first["url"]))
        raise BadResponse("data[0] has neither b64_json nor url", **exchange.context())

    def complete_text(self, *, key: str, model: str, system: str, prompt: str, seed: int, max_tokens: int) -> str:
        """Return the chat reply; see :meth:`ProviderClient.complete_text`."""
        exchange = self.exchange(key)
        body = {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            "seed": seed,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        response = exchange.send("POST", f"{self.base_url}/v1/chat/completions", json=body)
        content = exchange.field(exchange.read_json(response), "choices", 0, "message", "content")
        if not isinstance(content, str):
            raise BadResponse("choices[0].message.content is not text", **exchange.context())
        return content
