"""The closing stages: safety_check decides whether a job may publish; upload publishes it."""

from __future__ import annotations

import json

from PIL import Image

from pipelines import sample_frames
from queue_config.jobs import JobKind
from workers.jobs.messages import StageMessage
from workers.jobs.outcome import StageOutcome
from workers.runtime import Runtime
from workers.stages.codecs import frames_from_video, image_from_bytes, read_ref

#: The artifact a job of each kind publishes, with its extension and content type.
_RESULTS = {JobKind.image: ("image", "png", "image/png"), JobKind.video: ("video", "mp4", "video/mp4")}


def safety_check(runtime: Runtime, message: StageMessage) -> StageOutcome:
    """Score the key image (and sampled frames of the encoded video); block the job at the threshold."""
    job = message.job
    images: list[Image.Image] = [image_from_bytes(read_ref(runtime.store, message, "image"))]
    if job.kind is JobKind.video:
        decoded = frames_from_video(read_ref(runtime.store, message, "video"))
        images += sample_frames(decoded, runtime.settings.safety_sampled_frames)
    worst = max(runtime.safety_classifier()(images))
    record = {"safety_score": f"{worst:.4f}"}
    threshold = runtime.settings.safety_threshold
    if worst >= threshold:
        reason = f"blocked by safety check: NSFW score {worst:.3f} >= threshold {threshold:.3f}"
        return StageOutcome(record={**record, "error": reason}, final_state="blocked")
    return StageOutcome(record=record)


def upload(runtime: Runtime, message: StageMessage) -> StageOutcome:
    """Publish the result under a content-addressed key, write the job's manifest, share a URL."""
    job = message.job
    name, extension, content_type = _RESULTS[job.kind]
    store = runtime.store
    result = store.put_content("results", read_ref(store, message, name), extension, content_type)
    manifest = {
        "job_id": job.id,
        "schema_version": job.schema_version,
        "kind": job.kind.value,
        "spec": job.model_dump(mode="json"),
        "result": result.as_dict(),
        "intermediates": dict(sorted(message.refs.items())),
    }
    manifest_key = f"manifests/{job.id}.json"
    store.put_bytes(manifest_key, json.dumps(manifest, indent=2, sort_keys=True).encode(), "application/json")
    record = {
        "result_key": result.key,
        "result_url": store.share_url(result.key, runtime.settings.presigned_url_ttl_s),
        "manifest_key": manifest_key,
    }
    return StageOutcome(artifacts={"result": result}, record=record, final_state="succeeded")
