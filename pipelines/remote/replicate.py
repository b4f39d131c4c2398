"""A client for Replicate's predictions API (https://replicate.com/docs/reference/http).

Every model run is a *prediction*. An official model (``owner/name``) is started with
``POST /v1/models/{owner}/{name}/predictions``; a pinned version (``owner/name:version`` or a
bare version id) with ``POST /v1/predictions`` and ``{"version": ...}``. The body is
``{"input": {...}}`` in the model's own input schema; Replicate drops inputs a model does not
declare, so one input set serves many models. ``Prefer: wait=N`` holds the request open up
to N s (1 to 60) so quick models answer in one round trip; otherwise the prediction is
polled with ``GET /v1/predictions/{id}`` until its ``status`` is ``succeeded``, ``failed``,
``canceled`` or ``aborted``. Image models put a URL, or a list of URLs, in ``output`` (fetched
without the key); language models put a list of text chunks. Auth: ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import contextlib
import math
import time
import urllib.parse
from typing import Any

import PIL.Image
import requests

from pipelines.remote.base import DEFAULT_TEMPERATURE, DEFAULT_TIMEOUT_S, ProviderClient
from pipelines.remote.errors import BadResponse, GenerationFailed, ProviderError, ProviderTimeout
from pipelines.remote.transport import Exchange

#: The public API's root.
REPLICATE_URL = "https://api.replicate.com"
#: Statuses after which a prediction no longer changes.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
#: Aspect ratios that models sized by ``aspect_ratio`` (the Flux family) accept; they ignore width/height.
STANDARD_ASPECT_RATIOS = frozenset({"1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"})
#: How long creation may wait for the output (``Prefer: wait=N``), in seconds (Replicate allows 1-60).
DEFAULT_SYNC_WAIT_S = 30
#: Pause between polls of an unfinished prediction, in seconds.
DEFAULT_POLL_INTERVAL_S = 0.5
#: Longest a prediction may take, creation to last poll, before it is canceled, in seconds.
DEFAULT_MAX_WAIT_S = 300.0


def aspect_ratio(width: int, height: int) -> str | None:
    """Return ``width``:``height`` reduced (``"3:2"``) when it is a standard ratio, else None."""
    divisor = math.gcd(width, height) or 1
    ratio = f"{width // divisor}:{height // divisor}"
    return ratio if ratio in STANDARD_ASPECT_RATIOS else None


class ReplicateClient(ProviderClient):
    """Runs Replicate models and waits for their output.

    Parameters:
        base_url: The API's root; the public one by default.
        timeout_s: Limit on connecting and on each wait for response bytes, in seconds. Creation
            may legitimately take ``sync_wait_s``, which is lowered to stay below it.
        session: The HTTP session to use; a new one when omitted.
        name: The provider name the key provider files these keys under.
        sync_wait_s: Seconds creation may wait for the output before answering (``Prefer: wait``).
        poll_interval_s: Pause between polls of an unfinished prediction, in seconds.
        max_wait_s: Seconds a prediction may take in all; past it, it is canceled and
            :class:`ProviderTimeout` raised.
        temperature: Sampling temperature for language models.
    """

    def __init__(
        self,
        base_url: str = REPLICATE_URL,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        session: requests.Session | None = None,
        name: str = "replicate",
        sync_wait_s: int = DEFAULT_SYNC_WAIT_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        super().__init__(name=name, timeout_s=timeout_s, session=session)
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        # The wait must end before the read timeout does, or every slow model would time out.
        self.sync_wait_s = max(1, min(int(sync_wait_s), 60, math.ceil(timeout_s) - 1))
        self.poll_interval_s = poll_interval_s
        self.max_wait_s = max_wait_s
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
        """Render one image; see :meth:`ProviderClient.generate_image`.

        Models sized by ``aspect_ratio`` get it when ``width``:``height`` is a standard ratio;
        their output size is theirs, not necessarily ``width`` x ``height``.
        """
        exchange = self.exchange(key)
        inputs: dict[str, Any] = {
            "prompt": prompt,
            "width": width,
            "height": height,
            "seed": seed,
            "num_inference_steps": steps,
            "num_outputs": 1,
            "output_format": "png",
        }
        ratio = aspect_ratio(width, height)
        if ratio:
            inputs["aspect_ratio"] = ratio
        if negative_prompt:
            inputs["negative_prompt"] = negative_prompt
        output = self._run(exchange, model, inputs)
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise BadResponse("output is not an image URL or a list of them", **exchange.context())
        return exchange.fetch_image(url)

    def complete_text(self, *, key: str, model: str, system: str, prompt: str, seed: int, max_tokens: int) -> str:
        """Return the model's reply; see :meth:`ProviderClient.complete_text`.

        Both ``max_tokens`` and ``max_new_tokens`` are sent: models name the bound either way.
        """
        exchange = self.exchange(key)
        inputs = {
            "prompt": prompt,
            "system_prompt": system,
            "max_tokens": max_tokens,
            "max_new_tokens": max_tokens,
            "temperature": self.temperature,
            "seed": seed,
        }
        output = self._run(exchange, model, inputs)
        if isinstance(output, str):
            return output
        if isinstance(output, list) and all(isinstance(chunk, str) for chunk in output):
            return "".join(output)
        raise BadResponse("output is not text or a list of text chunks", **exchange.context())

    def _run(self, exchange: Exchange, model: str, inputs: dict[str, Any]) -> Any:
        """Create a prediction, poll it to a final status, and return its ``output``."""
        # 1. Create, letting quick models finish within the request.
        url, body = self._creation(model, inputs)
        prefer = {"Prefer": f"wait={self.sync_wait_s}"}
        prediction = exchange.read_json(exchange.send("POST", url, json=body, headers=prefer))
        prediction_id = urllib.parse.quote(str(exchange.field(prediction, "id")), safe="")
        poll_url = f"{self.base_url}/v1/predictions/{prediction_id}"
        # 2. Poll until final. The URL is built from our base, never taken from the response,
        #    so the key goes nowhere but the API.
        deadline = time.monotonic() + self.max_wait_s
        while prediction.get("status") not in TERMINAL_STATUSES:
            if time.monotonic() >= deadline:
                self._cancel(exchange, poll_url)
                raise ProviderTimeout(f"prediction not finished after {self.max_wait_s} s", **exchange.context())
            time.sleep(self.poll_interval_s)
            prediction = exchange.read_json(exchange.send("GET", poll_url))
        # 3. Only a success has output.
        status = str(prediction["status"])
        if status != "succeeded":
            raise GenerationFailed(
                status, exchange.clean(str(prediction.get("error") or "no error given")), **exchange.context()
            )
        return exchange.field(prediction, "output")

    def _creation(self, model: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Return the creation URL and body: the model's own endpoint, or a pinned version."""
        if "/" in model and ":" not in model:
            owner, _, name = model.partition("/")
            path = "/".join(urllib.parse.quote(part, safe="") for part in (owner, name))
            return f"{self.base_url}/v1/models/{path}/predictions", {"input": inputs}
        return f"{self.base_url}/v1/predictions", {"version": model, "input": inputs}

    def _cancel(self, exchange: Exchange, poll_url: str) -> None:
        """Ask Replicate to stop a prediction we gave up on, so it stops billing; best effort."""
        with contextlib.suppress(ProviderError):
            exchange.send("POST", f"{poll_url}/cancel")
