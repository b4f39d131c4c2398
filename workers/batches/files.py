"""Reading an overnight batch file: JSONL or CSV, one job a line, every line checked on its own.

A bad line never stops the others: it comes back as a ``BatchLine`` with its line number (the
file's own, 1-based) and the reason, so the uploader fixes just those lines. Only a problem with
the whole file (not UTF-8, a bad CSV header, a CSV cell too long to read past, nothing in it)
raises ``BatchFileError``, which names the line too. ``rows`` reads the text; this builds the jobs.

The file comes from anyone who can upload, so no reason repeats any of it: an unknown JSON key is
named by its position, a bad value by its field. A job's fields are all single values, so a list
or object in one is refused before anything walks it.

Ids are stable so that resubmitting a file is harmless: a line's job id is its batch id joined to
its client id (the line's own ``id``, else a hash of its fields), and the batch id of an unnamed
upload is a hash of the file's bytes. The job records then refuse to queue a job id twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ValidationError

from queue_config.catalog import Catalog, ModelRefused, catalog_of
from queue_config.jobs import JobSpec, Priority
from queue_config.settings import get_settings
from queue_config.stages import MODEL_STAGES
from workers.batches.rows import BatchFileError as BatchFileError
from workers.batches.rows import Row, csv_rows, decoded_text, jsonl_rows
from workers.jobs.messages import describe_validation_error

BatchFormat = Literal["jsonl", "csv"]
#: What a job id must look like (``JobSpec.id``'s pattern).
JOB_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: A batch id leaves room in the 64-character job id for "-" and a 16-character client id.
BATCH_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,40}")
#: Hex digits kept of a sha256 where one stands in for an id.
ID_HASH_CHARS: Final = 16
#: File extensions that name a format.
EXTENSION_FORMATS: Final[dict[str, BatchFormat]] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


@dataclass(frozen=True)
class BatchLine:
    """One line of a batch file: its job, or why it has none (exactly one of ``spec``/``error`` is set)."""

    line_number: int
    spec: JobSpec | None
    error: str
    #: The line's own ``id``, or the id derived from its fields; empty when the line had none to give.
    client_id: str = ""

    def __post_init__(self) -> None:
        if (self.spec is None) == (not self.error):
            raise ValueError("a BatchLine has either a spec or an error")


def derive_batch_id(data: bytes) -> str:
    """The batch id of an unnamed upload: ``"b"`` and 15 hex digits of the bytes' sha256 (same file, same id)."""
    return "b" + hashlib.sha256(data).hexdigest()[:15]


def batch_id_from_name(name: str) -> str:
    """A batch id made from a person's name for a batch: unsafe characters become ``-``, at most 40 kept.

    Raises:
      ValueError: nothing usable is left of the name.
    """
    batch_id = re.sub(r"[^A-Za-z0-9_-]+", "-", name.strip()).strip("-")[:40]
    if not batch_id:
        raise ValueError("a batch name needs at least one letter, digit, '_' or '-'")
    return batch_id


def job_id_for(batch_id: str, client_id: str) -> str:
    """``{batch_id}-{client_id}``, with the client id hashed when it has other characters or is too long."""
    job_id = f"{batch_id}-{client_id}"
    if JOB_ID_PATTERN.fullmatch(job_id):
        return job_id
    return f"{batch_id}-{hashlib.sha256(client_id.encode()).hexdigest()[:ID_HASH_CHARS]}"


def parse_batch(data: bytes | str, *, batch_id: str, fmt: BatchFormat | None = None,
                filename: str = "", catalog: Catalog | None = None) -> list[BatchLine]:
    """Every job line of a batch file, in file order, each a job for ``batch_id`` or the reason it is not one.

    The format is ``fmt``, else the filename's extension (.jsonl, .ndjson, .csv), else sniffed
    (JSONL when the first non-blank character is ``{``). Blank lines are skipped. Every job gets
    priority ``batch`` and this ``batch_id``, whatever the line said, and must be one ``catalog``
    (default: the process settings') can serve.

    Raises:
      BatchFileError: the bytes are not UTF-8, the file is empty or blank, a CSV header lacks
        ``prompt``, names columns a job does not have or one twice, or a CSV cell is longer than
        the csv module's ``field_size_limit()`` (what follows it cannot be told apart).
      ValueError: ``batch_id`` does not match ``BATCH_ID_PATTERN`` (a caller's mistake, not the file's).
    """
    if not BATCH_ID_PATTERN.fullmatch(batch_id):
        raise ValueError(f"batch id must match {BATCH_ID_PATTERN.pattern}")
    text = decoded_text(data)
    if not text.strip():
        raise BatchFileError(1, "the file is empty (only blank lines)" if text else "the file is empty")
    fmt = fmt or EXTENSION_FORMATS.get(filename[filename.rfind("."):].lower() if "." in filename else "")
    if fmt is None:
        fmt = "jsonl" if text.lstrip().startswith("{") else "csv"
    rows = jsonl_rows(text) if fmt == "jsonl" else csv_rows(text)
    return _BatchBuilder(batch_id, catalog or catalog_of(get_settings())).lines(rows)


class _BatchBuilder:
    """Turns rows into ``BatchLine``s for one batch, refusing a job id a line before it already took."""

    def __init__(self, batch_id: str, catalog: Catalog) -> None:
        self.batch_id = batch_id
        self.catalog = catalog
        self.first_line_of: dict[str, int] = {}

    def lines(self, rows: list[Row]) -> list[BatchLine]:
        return [self.line(*row) for row in rows]

    def line(self, line_number: int, fields: dict[str, Any] | None, error: str) -> BatchLine:
        if fields is None:
            return BatchLine(line_number, None, error)
        unknown = next((number for number, key in enumerate(fields, start=1) if key not in JobSpec.model_fields), 0)
        if unknown:
            return BatchLine(line_number, None, f"unknown key {unknown} (counting the object's keys from 1)")
        client_id = fields.pop("id", None)
        if client_id is not None and (isinstance(client_id, bool) or not isinstance(client_id, str | int)
                                      or client_id == ""):
            return BatchLine(line_number, None, "id: must be a non-empty string or a whole number")
        if problem := _value_problem(fields):
            return BatchLine(line_number, None, problem)
        if client_id is None:
            canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            client_id = hashlib.sha256(canonical.encode()).hexdigest()[:ID_HASH_CHARS]
        client_id = str(client_id)
        job_id = job_id_for(self.batch_id, client_id)
        first = self.first_line_of.setdefault(job_id, line_number)
        if first != line_number:
            return BatchLine(line_number, None, f"duplicate id, first on line {first}", client_id)
        fields.update(id=job_id, priority=Priority.batch, batch_id=self.batch_id)
        try:
            return BatchLine(line_number, self.catalog.admit(JobSpec.model_validate(fields)), "", client_id)
        except ValidationError as invalid:
            return BatchLine(line_number, None, describe_validation_error(invalid), client_id)
        except ModelRefused as refused:
            return BatchLine(line_number, None, str(refused), client_id)


def _value_problem(fields: dict[str, Any]) -> str:
    """Why a field's value is none a job takes before the model looks: a list or object (a job's fields are
    single values, and nothing should walk a deep one; ``models`` is one flat object of a model id per
    stage), or a string with a NUL in it."""
    for field, value in fields.items():
        if field == "models" and isinstance(value, dict):
            if not (set(value) <= set(MODEL_STAGES) and all(isinstance(model, str) for model in value.values())):
                return f"models: must name a model id for stages among {', '.join(MODEL_STAGES)}"
            continue
        if isinstance(value, dict | list):
            return f"{field}: must be a single value, not a {'list' if isinstance(value, list) else 'JSON object'}"
        if isinstance(value, str) and "\x00" in value:
            return f"{field}: a NUL character in it"
    return ""


def rejected_lines(lines: list[BatchLine]) -> list[dict[str, Any]]:
    """The bad lines as ``{"line", "error"}``, for an answer or a report."""
    return [{"line": line.line_number, "error": line.error} for line in lines if line.spec is None]
