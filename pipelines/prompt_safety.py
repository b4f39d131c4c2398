"""The prompt screen: how close in meaning a prompt comes to each safety category.

A prompt is first undone of its spelling tricks (``queue_config.prompt_screen.normalise``),
then cut into its clauses, since "a lake at dawn, mist, a beheading" hides its meaning in a
list of harmless ones. The whole prompt and each clause are embedded with the MiniLM sentence
embedder. For each clause and category, ``u`` is its cosine similarity to the nearest of the
category's concept descriptions and ``s`` its similarity to the nearest harmless look-alike
scene (``pipelines.safety_concepts``); the clause scores ``u - MARGIN_WEIGHT * max(0, s - u)``,
so "a knife on a cutting board", nearer a kitchen than a stabbing, scores below its raw
similarity. A category's score is its best clause's, capped for ``minors`` by how clearly a
child is in the prompt (``REQUIRED_PRESENCE``), and a score at or above the category's threshold
is a finding. A negative prompt is compared with ``NEGATIVE_CONCEPTS`` only.

The thresholds were chosen on the calibration half of the labelled set in
``tests/data/safety_prompts.csv`` (midway between the highest benign and the lowest unsafe
score, and at least 0.02 above the benign) and are measured on its held-out half
(``scripts/bench.py`` prints both). Embeddings of recent clauses are kept, so a resubmitted
prompt costs no model call.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
from sentence_transformers import SentenceTransformer

from pipelines.registry import LOADING_LOCK
from pipelines.safety_concepts import CONCEPTS, NEGATIVE_CONCEPTS, REQUIRED_PRESENCE, SAFE_SCENES
from queue_config.prompt_screen import normalise
from queue_config.safety_policy import Category, Check, SafetyFinding

#: Per category, the cosine similarity at which a prompt (or enhanced prompt) is a finding.
THRESHOLDS: dict[Category, float] = {
    Category.sexual: 0.485,
    Category.minors: 0.363,
    Category.violence: 0.502,
    Category.self_harm: 0.460,
    Category.hate: 0.490,
}
#: The same for negative prompts, against ``NEGATIVE_CONCEPTS``.
NEGATIVE_THRESHOLDS: dict[Category, float] = {Category.sexual: 0.742}
#: How much a clause loses for each point it sits closer to a harmless scene than to a concept.
MARGIN_WEIGHT = 2.0
#: At most this many clauses of a prompt are embedded on their own (the whole prompt always is),
#: so that a prompt of a thousand commas costs no more than a long one.
MAX_CLAUSES = 64
#: Clauses longer than ``LONG_CLAUSE_WORDS`` words are also read in windows of ``WINDOW_WORDS``,
#: half overlapping, the last ending with the clause.
LONG_CLAUSE_WORDS = 24
WINDOW_WORDS = 8
#: How many clause embeddings are kept for repeated prompts.
CACHE_SIZE = 4096
_CONJUNCTION = re.compile(r"\s+(?:and|with|while|but|then|where|as)\s+")
_CLAUSE_BREAK = re.compile(r"[,;:.!?()\[\]{}|/\n]+|\s+-+\s+")


def _windows(words: list[str]) -> list[str]:
    """The clause; if longer than ``LONG_CLAUSE_WORDS``, also its parts between conjunctions and its
    half-overlapping windows."""
    clause = " ".join(words)
    if len(words) <= LONG_CLAUSE_WORDS:
        return [clause]
    step = WINDOW_WORDS // 2
    starts = [*range(0, len(words) - WINDOW_WORDS, step), len(words) - WINDOW_WORDS]
    return [clause, *_CONJUNCTION.split(clause), *(" ".join(words[start : start + WINDOW_WORDS]) for start in starts)]


class PromptScreen:
    """Scores prompts against the safety categories' concept descriptions.

    Parameters:
        embedder: A sentence embedder (the MiniLM of ``pipelines.profiles.EMBEDDING_MODEL``).
        concepts, thresholds: What the prompt and the enhanced prompt are compared with.
        safe_scenes: Harmless look-alike scenes a clause must be nearer the concepts than.
        required_presence: Per category, what must also be in the prompt; its score is capped there.
        negative_concepts, negative_thresholds: What the negative prompt is compared with.
        cache_size: How many clause embeddings to keep.
    """

    def __init__(
        self,
        embedder: SentenceTransformer,
        concepts: Mapping[Category, Sequence[str]] = CONCEPTS,
        thresholds: Mapping[Category, float] = THRESHOLDS,
        safe_scenes: Sequence[str] = SAFE_SCENES,
        required_presence: Mapping[Category, Sequence[str]] = REQUIRED_PRESENCE,
        negative_concepts: Mapping[Category, Sequence[str]] = NEGATIVE_CONCEPTS,
        negative_thresholds: Mapping[Category, float] = NEGATIVE_THRESHOLDS,
        *,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.embedder = embedder
        self.thresholds = dict(thresholds)
        self.negative_thresholds = dict(negative_thresholds)
        self.vocabulary = frozenset(word for word in embedder.tokenizer.get_vocab() if word.isalpha())
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._concepts = {category: self._embed(list(texts)) for category, texts in concepts.items()}
        self._negative_concepts = {category: self._embed(list(texts)) for category, texts in negative_concepts.items()}
        self._safe_scenes = self._embed(list(safe_scenes)) if safe_scenes else None
        self._presence = {category: self._embed(list(texts)) for category, texts in required_presence.items()}

    @classmethod
    def from_pretrained(cls, path: str | None = None, device: str = "cpu") -> PromptScreen:
        """The screen with the MiniLM embedder at ``path`` (default: the one shipped in a wheel)."""
        if path is None:
            from pipelines.profiles import EMBEDDING_MODEL

            path = EMBEDDING_MODEL
        with LOADING_LOCK:
            return cls(SentenceTransformer(path, device=device))

    def scores(self, text: str, check: Check = Check.prompt) -> dict[Category, float]:
        """Each category's score for ``text``: its best clause's similarity to the category, less the margin."""
        return self.scores_many([text], check)[0]

    def scores_many(self, texts: Sequence[str], check: Check = Check.prompt) -> list[dict[Category, float]]:
        """``scores`` for many texts, embedding all their uncached clauses in one call."""
        negative = check is Check.negative_prompt
        concepts = self._negative_concepts if negative else self._concepts
        clauses = [self.clauses(text) for text in texts]
        vectors = self._clause_vectors([clause for found in clauses for clause in found])
        result = []
        for found in clauses:
            if not found:
                result.append({category: 0.0 for category in concepts})
                continue
            matrix = np.stack([vectors[clause] for clause in found])
            safe = None if negative or self._safe_scenes is None else (matrix @ self._safe_scenes.T).max(axis=1)
            scores = {category: self._score(matrix @ targets.T, safe) for category, targets in concepts.items()}
            for category, presence in self._presence.items():
                if category in scores and not negative:
                    scores[category] = min(scores[category], float((matrix @ presence.T).max()))
            result.append(scores)
        return result

    def screen(self, text: str, check: Check = Check.prompt) -> list[SafetyFinding]:
        """The findings for ``text`` read as ``check`` (a prompt, negative prompt or enhanced prompt)."""
        return self.screen_many([text], check)[0]

    def screen_many(self, texts: Sequence[str], check: Check = Check.prompt) -> list[list[SafetyFinding]]:
        thresholds = self.negative_thresholds if check is Check.negative_prompt else self.thresholds
        return [
            [SafetyFinding(check, category, score, thresholds[category])
             for category, score in scores.items() if score >= thresholds[category]]
            for scores in self.scores_many(texts, check)
        ]

    @staticmethod
    def _score(similarities: np.ndarray, safe: np.ndarray | None) -> float:
        """The best clause's score from its similarities to a category's concepts (and to safe scenes)."""
        nearest = similarities.max(axis=1)
        if safe is not None:
            nearest = nearest - MARGIN_WEIGHT * np.maximum(0.0, safe - nearest)
        return float(nearest.max())

    def clauses(self, text: str) -> list[str]:
        """The normalised text and, when it has several, each of its clauses.

        A long clause is also read in overlapping windows of ``WINDOW_WORDS`` words: the embedder
        reads only a prompt's first 256 tokens, and a long clause dilutes the one unsafe part of it.
        """
        normal = " ".join(normalise(text, self.vocabulary).split())
        if not normal:
            return []
        parts = [window for part in _CLAUSE_BREAK.split(normal) for window in _windows(part.split())]
        parts = [part for part in parts if part and part != normal]
        return [normal, *list(dict.fromkeys(parts))[:MAX_CLAUSES]]

    def _clause_vectors(self, clauses: list[str]) -> dict[str, np.ndarray]:
        with self._lock:
            found = {clause: self._cache[clause] for clause in clauses if clause in self._cache}
            for clause in found:
                self._cache.move_to_end(clause)
        missing = list(dict.fromkeys(clause for clause in clauses if clause not in found))
        if missing:
            new = dict(zip(missing, self._embed(missing), strict=True))
            found.update(new)
            with self._lock:
                self._cache.update(new)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return found

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.embedder.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
