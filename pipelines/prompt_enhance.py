"""Prompt enhancement: a small LM extends the prompt, an embedder adds matching styles.

Short prompts ("a fox") give flat images. The enhancer asks a causal LM for a short phrase
of extra visual detail, then retrieves the style modifiers closest in meaning to the prompt
(cosine similarity of sentence embeddings) and appends both, bounded to a length that
text encoders accept.
"""

from __future__ import annotations

import threading
from typing import cast

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForCausalLM, AutoTokenizer, BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from pipelines.errors import InvalidInputError
from pipelines.loading import resolve_dtype
from pipelines.outputs import EnhancedPrompt
from pipelines.prompt_text import (
    MAX_PROMPT_CHARS,
    SYSTEM_PROMPT,
    clean_continuation,
    compose_prompt,
)
from pipelines.registry import LOADING_LOCK
from pipelines.style_modifiers import STYLE_MODIFIERS

#: How many style modifiers are retrieved per prompt.
TOP_K_MODIFIERS = 3

# Sampling draws from torch's process-wide RNG, so seeded generation must not interleave.
_SAMPLING_LOCK = threading.Lock()


class PromptEnhancer:
    """Extends a prompt with an LM continuation and retrieved style modifiers.

    Parameters:
        model: A causal LM; sampled with ``do_sample=True`` under the caller's seed.
        tokenizer: Its tokenizer; its chat template is used when it has one.
        embedder: A sentence embedder used to rank ``modifiers`` against the prompt.
        modifiers: The candidate style phrases; embedded once, here.
        top_k: How many modifiers to retrieve per prompt.
        max_prompt_chars: Bound on the final prompt's length.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        embedder: SentenceTransformer,
        modifiers: tuple[str, ...] = STYLE_MODIFIERS,
        *,
        top_k: int = TOP_K_MODIFIERS,
        max_prompt_chars: int = MAX_PROMPT_CHARS,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.embedder = embedder
        self.modifiers = modifiers
        self.top_k = top_k
        self.max_prompt_chars = max_prompt_chars
        self._modifier_vectors = self._embed(list(modifiers))

    @classmethod
    def from_pretrained(
        cls, text_model: str, embedding_model: str, device: str = "cpu", *, revision: str | None = None,
        dtype: str | None = None,
    ) -> PromptEnhancer:
        """Load the LM (float16 on CUDA, float32 elsewhere, unless ``dtype`` names another; ``revision``
        pins a hub commit) and the embedder onto ``device``."""
        pinned = {"revision": revision} if revision else {}
        with LOADING_LOCK:
            tokenizer = AutoTokenizer.from_pretrained(text_model, **pinned)
            model = AutoModelForCausalLM.from_pretrained(
                text_model, dtype=resolve_dtype(dtype, device), device_map=device, **pinned)
            embedder = SentenceTransformer(embedding_model, device=device)
        return cls(model, tokenizer, embedder)

    def __call__(self, prompt: str, seed: int, max_new_tokens: int = 24) -> EnhancedPrompt:
        """Enhance ``prompt``; the same prompt, seed and models always give the same result."""
        # 1. Check inputs.
        prompt = " ".join(prompt.split())
        if not prompt:
            raise InvalidInputError("prompt is empty")
        # 2. Generate and clean the continuation.
        continuation = self.clean_continuation(self._generate(prompt, seed, max_new_tokens))
        # 3. Retrieve the style modifiers closest to the prompt.
        modifiers = self.retrieve_modifiers(prompt)
        # 4. Compose, within the length bound.
        final = compose_prompt(prompt, continuation, modifiers, self.max_prompt_chars)
        return EnhancedPrompt(prompt=final, continuation=continuation, modifiers=modifiers)

    def retrieve_modifiers(self, prompt: str) -> list[str]:
        """Return the ``top_k`` modifiers by cosine similarity to ``prompt``, best first."""
        scores = self._modifier_vectors @ self._embed([prompt])[0]
        best = np.argsort(-scores, kind="stable")[: self.top_k]
        return [self.modifiers[index] for index in best]

    clean_continuation = staticmethod(clean_continuation)

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.embedder.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def _model_inputs(self, prompt: str) -> dict[str, torch.Tensor]:
        """Tokenize with the chat template when the tokenizer has one, else the plain prompt."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt},
            ]
            encoded = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            encoded = self.tokenizer(prompt + ",", return_tensors="pt")
        batch = cast(BatchEncoding, encoded)  # return_dict=True gives a BatchEncoding
        return {key: value.to(self.model.device) for key, value in batch.items()}

    def _generate(self, prompt: str, seed: int, max_new_tokens: int) -> str:
        inputs = self._model_inputs(prompt)
        device = self.model.device
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        pad_id = self.tokenizer.pad_token_id
        with _SAMPLING_LOCK, torch.random.fork_rng(devices=rng_devices), torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(
                **inputs,
                do_sample=True,
                temperature=0.8,
                top_p=0.95,
                top_k=50,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id if pad_id is not None else self.tokenizer.eos_token_id,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return str(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
