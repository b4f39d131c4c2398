"""The style phrases the prompt enhancer can append to a prompt.

Each is a short, widely understood phrase that image models respond to. The enhancer picks
the few whose sentence embedding is closest to the user's prompt, so the list should cover
distinct looks (media, lighting, lens, mood) rather than near-synonyms of one look.
"""

from __future__ import annotations

STYLE_MODIFIERS: tuple[str, ...] = (
    "cinematic lighting",
    "35mm film grain",
    "watercolor",
    "oil painting, visible brush strokes",
    "pencil sketch",
    "charcoal drawing",
    "ink illustration",
    "anime style",
    "pixel art",
    "low poly 3d render",
    "studio portrait lighting",
    "golden hour sunlight",
    "soft morning light",
    "neon-lit night",
    "moody overcast sky",
    "dramatic storm clouds",
    "misty atmosphere",
    "wide-angle landscape",
    "macro close-up, shallow depth of field",
    "aerial drone view",
    "symmetrical composition",
    "minimalist, clean background",
    "vibrant saturated colors",
    "muted pastel palette",
    "black and white photography",
    "vintage polaroid",
    "fantasy concept art",
    "retro-futuristic science fiction",
    "highly detailed, sharp focus",
    "whimsical children's book illustration",
    "art nouveau ornament",
    "underwater caustics",
)
