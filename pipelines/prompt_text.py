"""Prompt text shared by the local and remote prompt enhancers: the instruction, cleaning, composing.

No torch here, so the remote enhancer uses it without importing a model stack.
"""

from __future__ import annotations

import re

#: What a chat model is asked to do; its reply becomes the continuation.
SYSTEM_PROMPT = (
    "You extend prompts for an image generator. Reply with one short phrase of extra "
    "visual detail (setting, lighting, composition) for the user's prompt. Do not repeat "
    "the prompt and do not explain."
)
#: Upper bound on the final prompt, in characters.
MAX_PROMPT_CHARS = 500
#: Upper bound on the cleaned continuation, in characters.
MAX_CONTINUATION_CHARS = 160


def clean_continuation(text: str) -> str:
    """Reduce raw model output to one bounded line with no quotes or dangling punctuation."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else ""
    line = re.sub(r"<\|[^|>]*\|>", " ", line)  # special tokens that survived decoding
    line = " ".join(line.replace('"', " ").split()).strip(" ,.;:-")
    return trim_words(line, MAX_CONTINUATION_CHARS)


def compose_prompt(prompt: str, continuation: str, modifiers: list[str], max_chars: int) -> str:
    """Join the parts, shortening the continuation and then dropping modifiers to fit ``max_chars``.

    Modifiers the prompt already contains are not repeated. The prompt itself is only cut
    when it alone is over the bound.
    """
    prompt = trim_words(prompt, max_chars)
    extra = [m for m in modifiers if m.lower() not in prompt.lower()]
    while extra and len(", ".join([prompt, *extra])) > max_chars:
        extra.pop()
    room = max_chars - len(", ".join([prompt, *extra])) - len(", ")
    continuation = trim_words(continuation, room) if room > 0 else ""
    return ", ".join([prompt, *([continuation] if continuation else []), *extra])


def trim_words(text: str, max_chars: int) -> str:
    """Return ``text`` cut to at most ``max_chars`` at a word boundary, minus trailing punctuation."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1]
    cut = cut.rsplit(" ", 1)[0] if " " in cut else cut[:max_chars]
    return cut[:max_chars].rstrip(" ,.;:-")
