"""Stage backends that call a remote provider, with the local backends' call shapes.

:class:`RemoteTextToImage` stands in for :class:`pipelines.TextToImage` and
:class:`RemotePromptEnhancer` for :class:`pipelines.PromptEnhancer`: same arguments, same
output dataclasses, so a stage actor does not care which it was given. Each request goes
through the key provider, which picks the key and fails over between keys.

This module imports neither torch nor transformers: a worker that only calls providers
starts in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

import PIL.Image

from pipelines.errors import InvalidInputError
from pipelines.outputs import EnhancedPrompt, ImageOutput
from pipelines.prompt_text import MAX_PROMPT_CHARS, SYSTEM_PROMPT, clean_continuation, compose_prompt
from pipelines.remote.base import ProviderClient
from pipelines.remote.keys import KeyProvider

#: Image sides must be multiples of this, as for the local backend, so a job valid for one is valid for both.
SIZE_MULTIPLE_PX = 8


class RemoteTextToImage:
    """Renders a batch of prompts through a provider, one request per prompt.

    Parameters:
        client: The provider client.
        model: The provider's model name (``"black-forest-labs/flux-schnell"``, ``"dall-e-2"``...).
        key_provider: Chooses the key for each request and fails over between keys.
        max_concurrency: How many prompts of one batch are in flight at once.
    """

    def __init__(
        self, client: ProviderClient, model: str, key_provider: KeyProvider, *, max_concurrency: int = 4
    ) -> None:
        self.client = client
        self.model = model
        self.key_provider = key_provider
        self.max_concurrency = max(1, max_concurrency)

    def __call__(
        self,
        prompts: list[str],
        seeds: list[int],
        width: int,
        height: int,
        steps: int,
        negative_prompt: str | None = None,
        guidance_scale: float = 0.0,
    ) -> ImageOutput:
        """Render ``prompts[i]`` with ``seeds[i]`` at ``width`` x ``height`` px.

        ``guidance_scale`` is accepted for the local backend's call shape and not sent: each
        provider's model applies its own. ``negative_prompt`` is sent whenever given.

        Raises:
            InvalidInputError: On mismatched prompts and seeds, bad sizes or steps.
            ProviderError: The first failure among the batch's requests.
        """
        # 1. Check inputs.
        if not prompts or len(prompts) != len(seeds):
            raise InvalidInputError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
        for name, value in (("width", width), ("height", height)):
            if value <= 0 or value % SIZE_MULTIPLE_PX:
                raise InvalidInputError(f"{name} must be a positive multiple of 8, got {value}")
        if steps < 1:
            raise InvalidInputError(f"steps must be at least 1, got {steps}")

        # 2. One request per prompt, through the key provider; results in input order.
        def render(prompt: str, seed: int) -> PIL.Image.Image:
            return self.key_provider.call(
                self.client.name,
                self.model,
                lambda key: self.client.generate_image(
                    key=key,
                    model=self.model,
                    prompt=prompt,
                    width=width,
                    height=height,
                    seed=seed,
                    steps=steps,
                    negative_prompt=negative_prompt,
                ),
            )

        if len(prompts) == 1 or self.max_concurrency == 1:
            return ImageOutput(images=[render(prompt, seed) for prompt, seed in zip(prompts, seeds, strict=True)])
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            # Each request in a copy of this context, so the stage's meter counts it (pipelines/metering.py).
            futures = [pool.submit(copy_context().run, render, prompt, seed)
                       for prompt, seed in zip(prompts, seeds, strict=True)]
            return ImageOutput(images=[future.result() for future in futures])


class RemotePromptEnhancer:
    """Extends a prompt with a provider's language model.

    Parameters:
        client: The provider client.
        model: The provider's chat/language model name.
        key_provider: Chooses the key for each request and fails over between keys.
        retrieve_modifiers: Optional style-modifier retrieval (e.g. a local
            :meth:`pipelines.PromptEnhancer.retrieve_modifiers`); without it ``modifiers`` is empty.
        max_prompt_chars: Bound on the final prompt's length.
    """

    def __init__(
        self,
        client: ProviderClient,
        model: str,
        key_provider: KeyProvider,
        *,
        retrieve_modifiers: Callable[[str], list[str]] | None = None,
        max_prompt_chars: int = MAX_PROMPT_CHARS,
    ) -> None:
        self.client = client
        self.model = model
        self.key_provider = key_provider
        self.retrieve_modifiers = retrieve_modifiers
        self.max_prompt_chars = max_prompt_chars

    def __call__(self, prompt: str, seed: int, max_new_tokens: int = 24) -> EnhancedPrompt:
        """Enhance ``prompt``; as deterministic as the provider's seeding.

        Raises:
            InvalidInputError: When the prompt is empty.
            ProviderError: When the provider call fails on every key tried.
        """
        # 1. Check inputs.
        prompt = " ".join(prompt.split())
        if not prompt:
            raise InvalidInputError("prompt is empty")
        # 2. Ask the model for a continuation, and clean it.
        reply = self.key_provider.call(
            self.client.name,
            self.model,
            lambda key: self.client.complete_text(
                key=key,
                model=self.model,
                system=SYSTEM_PROMPT,
                prompt=prompt,
                seed=seed,
                max_tokens=max_new_tokens,
            ),
        )
        continuation = clean_continuation(reply)
        # 3. Style modifiers, when a retriever was given; 4. compose within the bound.
        modifiers = self.retrieve_modifiers(prompt) if self.retrieve_modifiers else []
        final = compose_prompt(prompt, continuation, modifiers, self.max_prompt_chars)
        return EnhancedPrompt(prompt=final, continuation=continuation, modifiers=modifiers)
