"""The closing stages: safety_check decides whether a job may publish; upload publishes it."""

from __future__ import annotations

import json

from pipelines import sample_frames
from queue_config.jobs import JobKind
from queue_config.safety_policy import Check
from queue_config.tenants import OPERATOR_TENANT
from workers.jobs.messages import StageMessage
from workers.jobs.outcome import StageOutcome
from workers.runtime import Runtime
from workers.stages.codecs import frames_from_video, image_from_bytes, read_ref
from workers.stages.screening import screen

#: The artifact a job of each kind publishes, with its extension and content type.
_RESULTS = {JobKind.image: ("image", "png", "image/png"), JobKind.video: ("video", "mp4", "video/mp4")}


def safety_check(runtime: Runtime, message: StageMessage) -> StageOutcome:
    """Check what the job will publish, last thing before upload: a video's sampled frames, an image job's image.

    A video job's key image was checked in the ``image`` stage; here its encoded video is decoded
    and ``safety_sampled_frames`` frames are scored (the ``frames`` check). An image job publishes
    its key image, which the ``image`` stage checked too; it is scored again here (the same
    ``image`` check, one classifier pass) rather than passed on trust, so nothing is published
    that this host's threshold and policy have not passed: a job whose image stage ran on an
    older worker, or on a host configured differently, is still checked. On the same bytes and
    settings the second score equals the first, so the record reads the same.
    """
    store = runtime.store
    if message.job.kind is JobKind.video:
        decoded = frames_from_video(read_ref(store, message, "video"))
        images, check = sample_frames(decoded, runtime.settings.safety_sampled_frames), Check.frames
    else:
        images, check = [image_from_bytes(read_ref(store, message, "image"))], Check.image
    verdict = screen(runtime, message, images, check)
    return verdict.blocked() if verdict.block is not None else StageOutcome(record=verdict.record)


def upload(runtime: Runtime, message: StageMessage) -> StageOutcome:
    """Publish the result under a content-addressed key, write the job's manifest, share a URL."""
    job = message.job
    name, extension, content_type = _RESULTS[job.kind]
    store = runtime.store
    result = store.put_content("results", read_ref(store, message, name), extension, content_type)
    served = runtime.status.get(job.id)
    manifest = {
        "job_id": job.id,
        "schema_version": job.schema_version,
        "kind": job.kind.value,
        "tenant": job.tenant or OPERATOR_TENANT,
        "spec": job.model_dump(mode="json"),
        "result": result.as_dict(),
        "intermediates": dict(sorted(message.refs.items())),
        #: The catalog model that served each model stage, with its revision.
        "models": dict(sorted(served.models.items())) if served is not None else {},
    }
    manifest_key = f"manifests/{job.id}.json"
    store.put_bytes(manifest_key, json.dumps(manifest, indent=2, sort_keys=True).encode(), "application/json")
    record = {
        "result_key": result.key,
        "result_url": store.share_url(result.key, runtime.settings.presigned_url_ttl_s),
        "manifest_key": manifest_key,
    }
    return StageOutcome(artifacts={"result": result}, record=record, final_state="succeeded")
