"""The prompt screen applied at submission, before any model runs."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Terms that block a prompt outright. A deployment extends this list in configuration.
DEFAULT_BLOCKED_TERMS: tuple[str, ...] = ("nude", "naked", "nsfw", "porn", "explicit sex", "gore", "beheading")


def screen_prompt(prompt: str, blocked_terms: Iterable[str] = DEFAULT_BLOCKED_TERMS) -> str | None:
    """The reason a prompt is blocked (first blocked term found, whole words, any case), or None."""
    for term in blocked_terms:
        if re.search(rf"\b{re.escape(term)}\b", prompt, flags=re.IGNORECASE):
            return f"prompt blocked at submission: contains blocked term {term!r}"
    return None
