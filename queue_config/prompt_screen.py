"""The prompt screen applied at submission, before any model runs.

Cheap and blunt: it catches prompts that ask for explicit content in so many
words. The image classifier in the safety_check stage catches the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Terms that reject a prompt outright (matched as whole words, ignoring case).
DEFAULT_BLOCKED_TERMS: tuple[str, ...] = (
    "nsfw",
    "nude",
    "nudes",
    "nudity",
    "naked",
    "porn",
    "pornographic",
    "explicit sex",
    "hentai",
    "topless",
    "genitals",
)


def screen_prompt(prompt: str, blocked_terms: Iterable[str] = DEFAULT_BLOCKED_TERMS) -> str | None:
    """Why ``prompt`` is refused, or None when it may be rendered.

    A term matches as a whole word (or phrase), ignoring case and runs of spaces, so
    "nude" blocks "A Nude figure" but not "denuded".
    """
    for term in blocked_terms:
        words = term.split()
        if not words:
            continue
        pattern = r"\b" + r"\s+".join(re.escape(word) for word in words) + r"\b"
        if re.search(pattern, prompt, flags=re.IGNORECASE):
            return f"prompt blocked at submission: contains blocked term {term!r}"
    return None
