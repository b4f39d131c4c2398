"""The batch API under /v1: upload an overnight batch file, follow it, retry its failures, cancel it.

An upload is ``multipart/form-data`` with the file in the field ``file`` and optional fields
``name`` (the batch id, sanitised; else one derived from the file's bytes, so re-uploading the same
file submits nothing new), ``strict`` (refuse the whole file if any line is bad) and ``format``
(``jsonl`` or ``csv``; else from the file name, else sniffed). The form is parsed here rather than
by FastAPI's ``Form``/``UploadFile``, which need the python-multipart package, and it is read with
a bound: a body over ``MAX_UPLOAD_BYTES`` is refused with 413 before more of it is held.

A tenant's batch is its own: its jobs carry the tenant, another tenant's batch answers 404, a
name another tenant's batch has is refused with 409, and an unnamed upload's id is derived from
the tenant's id with the bytes (two tenants sending the same file make two batches).
"""

from __future__ import annotations

from dataclasses import replace
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from queue_config.catalog import catalog_of
from queue_config.tenants import Tenant
from workers.api.bounds import TOO_MANY, Caller, within_queued_jobs_cap, within_request_rate, within_tenant_quotas
from workers.api.context import CallerTenant, context, require_caller
from workers.api.jobs import Problem, RedactedValidationRoute
from workers.batches.files import (
    BatchFileError,
    BatchFormat,
    BatchLine,
    batch_id_from_name,
    derive_batch_id,
    parse_batch,
    rejected_lines,
)
from workers.tenants import PriorityNotAllowed, batch_owner, claim_batch, may_see, stamped

#: Largest batch file taken (bytes).
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024
#: Room in the body for the form's other fields and part headers (bytes).
MAX_FORM_OVERHEAD_BYTES: Final = 64 * 1024
#: Bad lines listed in an answer; ``rejected_count`` gives them all.
MAX_LISTED_LINES: Final = 1000

BatchId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: {"model": Problem, "description": "No such batch"}}
_UPLOAD_OPENAPI: Final = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}, "name": {"type": "string"},
                   "strict": {"type": "boolean", "default": False}, "format": {"enum": ["jsonl", "csv"]}},
}}}}}

router = APIRouter(
    prefix="/v1", dependencies=[Depends(require_caller), Depends(within_request_rate)], tags=["batches"],
    route_class=RedactedValidationRoute,
    responses={401: {"model": Problem, "description": "Missing or wrong bearer token"}, **TOO_MANY},
)


class UploadForm(BaseModel):
    """The upload's fields besides the file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    strict: bool = False
    format: BatchFormat | None = None


class Upload(BaseModel):
    form: UploadForm
    filename: str
    data: bytes


async def read_upload(request: Request) -> Upload:
    """The multipart body read with a bound and split into its fields; 413, 415 or 422 when it cannot be."""
    content_type = Message()
    content_type["content-type"] = request.headers.get("content-type", "")
    boundary = content_type.get_boundary()
    if content_type.get_content_type() != "multipart/form-data" or not boundary:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the file as multipart/form-data")
    limit_bytes = MAX_UPLOAD_BYTES + MAX_FORM_OVERHEAD_BYTES
    if int(request.headers.get("content-length") or 0) > limit_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a batch file is at most {MAX_UPLOAD_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a batch file is at most {MAX_UPLOAD_BYTES} bytes")
    fields, files = form_parts(bytes(body), boundary)
    if "file" not in files:
        raise RequestValidationError([{"loc": ("body", "file"), "msg": "Field required", "type": "missing"}])
    filename, data = files["file"]
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a batch file is at most {MAX_UPLOAD_BYTES} bytes")
    try:
        form = UploadForm.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None
    return Upload(form=form, filename=filename, data=data)


def form_parts(body: bytes, boundary: str) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart/form-data body as (text fields by name, (filename, bytes) of file fields by name)."""
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.encode())[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, _, content = part.partition(b"\r\n\r\n")
        headers = BytesHeaderParser().parsebytes(head.partition(b"\r\n")[2])
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        if headers.get_filename() is not None:
            files[name] = (headers.get_filename() or "", content)
        else:
            fields[name] = content.decode("utf-8", errors="replace")
    return fields, files


def tenants_line(line: BatchLine, tenant: Tenant | None) -> BatchLine:
    """The line's job as the caller's; a bad line if it asks for more priority than the tenant may claim."""
    if line.spec is None:
        return line
    try:
        return replace(line, spec=stamped(line.spec, tenant))
    except PriorityNotAllowed as refused:
        return replace(line, spec=None, error=str(refused))


def _listed(lines: list[BatchLine]) -> dict[str, Any]:
    rejected = rejected_lines(lines)
    return {"rejected": rejected[:MAX_LISTED_LINES], "rejected_count": len(rejected)}


@router.post(
    "/batches", status_code=status.HTTP_202_ACCEPTED, summary="Submit a batch file", openapi_extra=_UPLOAD_OPENAPI,
    responses={413: {"description": f"File over {MAX_UPLOAD_BYTES} bytes"},
               415: {"description": "Not multipart/form-data"},
               422: {"description": "A bad form; the file cannot be read (``detail`` and the ``line``); no good "
                                    "line; or strict and a bad line (each listed by ``line`` and ``error``)"}},
)
def submit_batch(
    upload: Annotated[Upload, Depends(read_upload)], request: Request, fingerprint: Caller, tenant: CallerTenant
) -> JSONResponse:
    """Check every line and queue the good ones at batch priority; the bad ones are listed by line number.

    With ``strict``, one bad line refuses the whole file (422, nothing queued). A file with no good
    line is refused either way, and so is one whose good lines would put the token's unfinished jobs
    over ``api_max_queued_jobs`` or over one of the tenant's quotas (429, nothing queued), or whose name
    another tenant's batch has (409).
    """
    catalog = catalog_of(context(request).settings)
    try:
        derived_from = upload.data if tenant is None else tenant.id.encode() + b"\n" + upload.data
        batch_id = batch_id_from_name(upload.form.name) if upload.form.name else derive_batch_id(derived_from)
        lines = parse_batch(upload.data, batch_id=batch_id, fmt=upload.form.format, filename=upload.filename,
                            catalog=catalog)
    except BatchFileError as error:  # its reason quotes nothing of the file
        return JSONResponse({"detail": error.reason, "line": error.line_number}, status.HTTP_422_UNPROCESSABLE_CONTENT)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    lines = [tenants_line(line, tenant) for line in lines]
    accepted = sum(line.spec is not None for line in lines)
    if not accepted or (upload.form.strict and accepted < len(lines)):
        why = "no line is a valid job" if not accepted else "strict: the file has bad lines, nothing was submitted"
        return JSONResponse({"detail": why, "batch_id": batch_id, **_listed(lines)},
                            status.HTTP_422_UNPROCESSABLE_CONTENT)
    from storage import open_store
    from workers.batches import submit_lines

    api = context(request)
    if not claim_batch(api.status, batch_id, tenant):
        raise HTTPException(status.HTTP_409_CONFLICT, "another tenant's batch has this name; choose another")
    job_ids = [line.spec.id for line in lines if line.spec is not None]
    with within_tenant_quotas(request, tenant, job_ids), within_queued_jobs_cap(request, fingerprint, job_ids):
        summary = submit_lines(api.status, api.broker, batch_id, upload.form.name or upload.filename, lines,
                               policy=api.settings.safety_policy, store=open_store(api.settings),
                               url_ttl_s=api.settings.presigned_url_ttl_s, catalog=catalog)
    content = {"batch_id": batch_id, "accepted": accepted, **_listed(lines), **summary}
    return JSONResponse(content, status.HTTP_202_ACCEPTED,
                        headers={"Location": str(request.url_for("get_batch", batch_id=batch_id))})


@router.get("/batches/{batch_id}", summary="Read a batch's progress", responses=_NOT_FOUND)
def get_batch(batch_id: BatchId, request: Request, tenant: CallerTenant) -> dict[str, Any]:
    """How many of the batch's jobs are in each state, and what the batch was."""
    from workers.batches import batch_progress

    progress = batch_progress(context(request).status, batch_id)
    if progress is None or not may_see(tenant, batch_owner(context(request).status, batch_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch")
    return progress


def _known_batch(request: Request, batch_id: str, tenant: CallerTenant) -> None:
    """404 for a batch id nobody submitted (rather than "0 retried" that reads like success), or another tenant's."""
    status_store = context(request).status
    if not status_store.client.exists(status_store.batch_key(batch_id)) or \
            not may_see(tenant, batch_owner(status_store, batch_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch")


@router.post("/batches/{batch_id}/retry-failed", summary="Queue a batch's failed jobs again", responses=_NOT_FOUND)
def retry_batch_failures(batch_id: BatchId, request: Request, tenant: CallerTenant) -> dict[Literal["retried"], int]:
    """Every failed job of the batch is queued again; answers how many."""
    from workers.batches import retry_failed

    _known_batch(request, batch_id, tenant)
    api = context(request)
    return {"retried": retry_failed(api.status, api.broker, batch_id)}


@router.post("/batches/{batch_id}/cancel", summary="Cancel a batch's unfinished jobs", responses=_NOT_FOUND)
def cancel_whole_batch(batch_id: BatchId, request: Request, tenant: CallerTenant) -> dict[Literal["cancelled"], int]:
    """Every job of the batch that has not finished is cancelled; answers how many."""
    from workers.batches import cancel_batch

    _known_batch(request, batch_id, tenant)
    api = context(request)
    from storage import open_store

    store = open_store(api.settings)
    ttl_s = api.settings.presigned_url_ttl_s
    return {"cancelled": cancel_batch(api.status, api.broker, batch_id, store=store, url_ttl_s=ttl_s)}

