"""The generative stages: prompt_enhance, image, frames, video.

The long ones (image, frames, video) pass ``should_stop=job_cancelled`` to their pipelines,
which ask it between diffusion steps and frames and raise ``pipelines.Interrupted`` when the
job has been cancelled; the actor shell turns that into a stopped stage (no retry, nothing
sent on). The image stage renders through the runtime's batcher (workers/stages/batching.py),
which may share one model call among several worker threads' jobs of the same shape; so do the
img2img frames' keyframes (workers/stages/keyframe_batching.py). Each local model call is timed
with ``on_device`` (pipelines/metering.py): on a GPU, the run's device seconds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines import CameraMotionFrames, FramesOutput, Img2ImgFrames, TextToImage, encode_h264
from pipelines.metering import on_device
from queue_config.safety_policy import Check, flags_field
from workers.jobs.messages import StageMessage
from workers.jobs.outcome import StageOutcome
from workers.jobs.progress import StageProgress
from workers.jobs.running import cancellation_check, job_cancelled, status_writer
from workers.runtime import Runtime
from workers.stages.batching import RenderRequest
from workers.stages.codecs import frames_bytes, frames_from_bytes, image_from_bytes, png_bytes, read_ref
from workers.stages.screening import merged_flags, recorded_flags, screen


def prompt_enhance(runtime: Runtime, message: StageMessage) -> StageOutcome:
    """Rewrite the prompt with the text model and retrieved style modifiers (unless the job opts out).

    What the text model wrote is screened as the submitted prompt was: the policy may block the
    job here, before any image is made, or flag it.
    """
    job = message.job
    if not job.enhance_prompt:
        prompt, record = job.prompt, {}
    else:
        model_id, enhancer = runtime.model_for("prompt_enhance", message)
        with on_device(runtime.device_of(model_id)):
            prompt = enhancer(job.prompt, seed=job.seed).prompt
        prompt_screen = runtime.prompt_screen()
        with on_device(runtime.models.device):
            findings = prompt_screen.screen(prompt, Check.enhanced_prompt)
        policy = runtime.settings.safety_policy
        if (block := policy.first_block(findings)) is not None:
            return StageOutcome(record=block.record_fields(), final_state="blocked")
        flags = flags_field(policy.flags(findings))
        record = {"safety_flags": merged_flags(recorded_flags(runtime, job.id), Check.enhanced_prompt, flags)} \
            if flags else {}
        record |= served_by(runtime, "prompt_enhance", model_id)
    stored = runtime.store.put_content(f"jobs/{job.id}/prompt", prompt.encode(), "txt", "text/plain; charset=utf-8")
    return StageOutcome(refs={"prompt": stored.key}, artifacts={"prompt": stored}, record=record)


def image(runtime: Runtime, message: StageMessage) -> StageOutcome:
    """The key image, from the enhanced prompt, seeded, checked before it is stored.

    The image check runs here rather than in ``safety_check`` so that a blocked key image
    costs no frames or video; a finding that only flags is recorded and the job goes on.
    """
    job = message.job
    prompt = read_ref(runtime.store, message, "prompt").decode()
    model_id, model = runtime.model_for("image", message)
    if isinstance(model, TextToImage):  # batched with other threads' jobs of its shape when configured
        picture = runtime.image_batcher(model_id).render(RenderRequest(
            prompt, job.seed, job.width, job.height, job.steps, negative_prompt=job.negative_prompt or None,
            should_stop=cancellation_check(), progress=progress_of(runtime, job.id, "image"),
        ))
    else:  # a remote provider renders in one request: no steps to stop between or show
        picture = model([prompt], seeds=[job.seed], width=job.width, height=job.height, steps=job.steps,
                        negative_prompt=job.negative_prompt or None).images[0]
    verdict = screen(runtime, message, [picture], Check.image)
    if verdict.block is not None:  # nothing is stored, so no frames, video or upload can follow
        return verdict.blocked()
    stored = runtime.store.put_content(f"jobs/{job.id}/image", png_bytes(picture), "png", "image/png")
    return replace(StageOutcome.stored("image", stored), record=verdict.record | served_by(runtime, "image", model_id))


def frames(runtime: Runtime, message: StageMessage) -> StageOutcome:
    """The video's frames, grown from the key image by the job's frames backend."""
    job = message.job
    key_image = image_from_bytes(read_ref(runtime.store, message, "image"))
    model_id, maker = runtime.model_for("frames", message)
    progress = progress_of(runtime, job.id, "frames")
    if isinstance(maker, Img2ImgFrames):  # its batcher times each keyframe call, shared or not
        output = _img2img_frames(runtime, model_id, maker, message, key_image, progress)
    else:
        with on_device(runtime.device_of(model_id)):
            output = _make_frames(maker, message, key_image, progress)
    data = frames_bytes(output.frames)
    stored = runtime.store.put_content(f"jobs/{job.id}/frames", data, "npy.zlib", "application/octet-stream")
    return replace(StageOutcome.stored("frames", stored), record=served_by(runtime, "frames", model_id))


def _img2img_frames(runtime: Runtime, model_id: str, maker: Img2ImgFrames, message: StageMessage,
                    key_image: Image.Image, progress: StageProgress) -> FramesOutput:
    """The img2img frames, each keyframe rendered through the runtime's batcher, which may share the
    call with other threads' jobs of its shape (``should_stop`` names this job: the batch may run in
    another thread)."""
    job = message.job
    prompt = read_ref(runtime.store, message, "prompt").decode()
    return maker(key_image, prompt, num_frames=job.num_frames, fps=job.fps, seed=job.seed, steps=job.steps,
                 should_stop=cancellation_check(), progress=progress,
                 render_keyframe=runtime.keyframe_batcher(model_id).render)


def _make_frames(maker: Any, message: StageMessage, key_image: Image.Image, progress: StageProgress) -> FramesOutput:
    """The frames of ``maker`` (camera or a video model), called with the arguments its kind takes."""
    job = message.job
    if isinstance(maker, CameraMotionFrames):
        return maker(key_image, num_frames=job.num_frames, fps=job.fps, seed=job.seed, should_stop=job_cancelled,
                     progress=progress)
    return maker(key_image, num_frames=job.num_frames, fps=job.fps, seed=job.seed, steps=job.steps,
                 should_stop=job_cancelled, progress=progress)


def progress_of(runtime: Runtime, job_id: str, stage: str) -> StageProgress:
    """``stage``'s progress hook for its pipeline, its writes queued behind the stage's start."""
    return StageProgress(runtime.status, job_id, stage, writer=status_writer())


def served_by(runtime: Runtime, stage: str, model_id: str) -> dict[str, str]:
    """The record field naming the catalog model that ran ``stage``, and its revision."""
    return {f"model.{stage}": f"{model_id}@{runtime.model_revision(model_id)}"}


def counted(frames: np.ndarray, progress: StageProgress) -> Iterator[np.ndarray]:
    """The frames one by one, telling ``progress`` how many the encoder has taken."""
    for done, frame in enumerate(frames, start=1):
        yield frame
        progress(done, len(frames))


def video(runtime: Runtime, message: StageMessage) -> StageOutcome:
    """H.264 mp4 of the frames, streamed to ffmpeg through a pipe."""
    job = message.job
    frames = frames_from_bytes(read_ref(runtime.store, message, "frames"))
    with tempfile.TemporaryDirectory(prefix="framequeue-video-") as tmp:
        out_path = Path(tmp) / "video.mp4"
        encode_h264(
            counted(frames, progress_of(runtime, job.id, "video")), width=frames.shape[2],
            height=frames.shape[1], fps=job.fps, out_path=out_path, should_stop=job_cancelled,
        )
        data = out_path.read_bytes()
    stored = runtime.store.put_content(f"jobs/{job.id}/video", data, "mp4", "video/mp4")
    return StageOutcome.stored("video", stored)
