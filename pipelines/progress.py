"""Step progress from a diffusion loop, with a cheap preview of the image as it forms.

A pipeline calls a :data:`StepProgress` after each denoising step with the step number, the
total and the current latents. :func:`latent_preview` turns latents into a small RGB picture
without the VAE: a fixed linear map from the four Stable Diffusion latent channels to RGB,
which costs a matrix product instead of a decoder pass (the picture is 1/8 of the image's
size and only roughly coloured; enough to see the composition emerge).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import PIL.Image
import torch

#: Called after each step: (steps done, steps in all, latents of shape (batch, channels, h, w)).
StepProgress = Callable[[int, int, torch.Tensor | None], None]

#: Approximate contribution of each of SD's four latent channels to R, G and B (rows: channels).
#: Widely used for previews; a tiny test model's latents map to colours that mean nothing.
SD_LATENT_TO_RGB = np.array(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]],
    dtype=np.float32,
)


def frame_counter(progress: StepProgress | None, total: int) -> Callable[[int], None]:
    """``report(done)``: tells ``progress`` (if any) that ``done`` of ``total`` units are made, with no latents."""
    if progress is None:
        return lambda done: None
    return lambda done: progress(done, total, None)


def latent_preview(latents: torch.Tensor, *, index: int = 0) -> PIL.Image.Image:
    """A small RGB preview of image ``index`` in a batch of latents, without the VAE.

    Four-channel latents go through :data:`SD_LATENT_TO_RGB`; other layouts show their first
    three channels (or the first one as grey), stretched to the full range.
    """
    latent = latents[index].detach().float().cpu().numpy()  # (channels, h, w)
    channels = latent.shape[0]
    if channels == SD_LATENT_TO_RGB.shape[0]:
        rgb = np.einsum("chw,cr->hwr", latent, SD_LATENT_TO_RGB)
    else:
        picked = latent[:3] if channels >= 3 else np.repeat(latent[:1], 3, axis=0)
        rgb = picked.transpose(1, 2, 0)
    low, high = float(rgb.min()), float(rgb.max())
    scaled = (rgb - low) / (high - low) if high > low else np.zeros_like(rgb)
    return PIL.Image.fromarray((scaled * 255).round().astype(np.uint8), mode="RGB")
