"""Reading an overnight batch file: JSONL or CSV, one job a line, every line checked on its own.

A bad line never stops the others: it comes back as a ``BatchLine`` with its line number (the
file's own, 1-based) and the reason, so the uploader fixes just those lines. Only a problem with
the whole file (not UTF-8, no ``prompt`` column, nothing in it) raises ``BatchFileError``.

Ids are stable so that resubmitting a file is harmless: a line's job id is its batch id joined to
its client id (the line's own ``id``, else a hash of its fields), and the batch id of an unnamed
upload is a hash of the file's bytes. The job records then refuse to queue a job id twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ValidationError

from queue_config.jobs import JobSpec, Priority
from workers.errors import FramequeueError
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
#: CSV columns whose cells are whole numbers.
INT_COLUMNS: Final = frozenset({"schema_version", "seed", "width", "height", "steps", "num_frames", "fps"})
#: CSV columns whose cells are yes/no.
BOOL_COLUMNS: Final = frozenset({"enhance_prompt"})
_BOOL_TEXT: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+")


class BatchFileError(FramequeueError):
    """The file as a whole cannot be read as a batch (no line of it is submitted)."""


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
                filename: str = "") -> list[BatchLine]:
    """Every job line of a batch file, in file order, each a job for ``batch_id`` or the reason it is not one.

    The format is ``fmt``, else the filename's extension (.jsonl, .ndjson, .csv), else sniffed
    (JSONL when the first non-blank character is ``{``). Blank lines are skipped. Every job gets
    priority ``batch`` and this ``batch_id``, whatever the line said.

    Raises:
      BatchFileError: the bytes are not UTF-8, the file is empty, or a CSV header lacks ``prompt``
        or names columns a job does not have.
      ValueError: ``batch_id`` does not match ``BATCH_ID_PATTERN`` (a caller's mistake, not the file's).
    """
    if not BATCH_ID_PATTERN.fullmatch(batch_id):
        raise ValueError(f"batch id must match {BATCH_ID_PATTERN.pattern}")
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise BatchFileError(f"the file is not UTF-8 text (bad byte at offset {error.start})") from None
    if not text.strip():
        raise BatchFileError("the file is empty")
    fmt = fmt or EXTENSION_FORMATS.get(filename[filename.rfind("."):].lower() if "." in filename else "")
    if fmt is None:
        fmt = "jsonl" if text.lstrip().startswith("{") else "csv"
    rows = _jsonl_rows(text) if fmt == "jsonl" else _csv_rows(text)
    return _BatchBuilder(batch_id).lines(rows)


#: (line number, the line's fields, or why it has none)
_Row = tuple[int, dict[str, Any] | None, str]


def _jsonl_rows(text: str) -> list[_Row]:
    """One row per non-blank line; split on "\\n" only, since JSON strings may hold U+2028 and the like."""
    rows: list[_Row] = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as error:  # its message quotes no input
            rows.append((line_number, None, f"not JSON: {error.msg} at column {error.colno}"))
            continue
        if isinstance(fields, dict):
            rows.append((line_number, fields, ""))
        else:
            rows.append((line_number, None, f"not a JSON object but a {type(fields).__name__}"))
    return rows


def _csv_rows(text: str) -> list[_Row]:
    """One row per record after the header; cells converted to numbers and booleans, empty cells left out."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next((row for row in reader if any(cell.strip() for cell in row)), [])
    columns = [cell.strip() for cell in header]
    unknown = sorted(set(columns) - set(JobSpec.model_fields))
    if "prompt" not in columns:
        raise BatchFileError("the CSV header has no 'prompt' column")
    if unknown or len(set(columns)) != len(columns):
        problem = f"unknown columns: {', '.join(unknown)[:500]}" if unknown else "a column is named twice"
        raise BatchFileError(f"the CSV header is wrong: {problem}")
    rows: list[_Row] = []
    line_number = reader.line_num + 1
    for cells in reader:
        start, line_number = line_number, reader.line_num + 1  # a quoted cell may span lines
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            rows.append((start, None, f"{len(cells)} cells but the header names {len(columns)} columns"))
            continue
        try:
            fields = {column: _cell(column, cell) for column, cell in zip(columns, cells, strict=False) if cell != ""}
        except ValueError as error:
            rows.append((start, None, str(error)))
            continue
        rows.append((start, fields, ""))
    return rows


def _cell(column: str, cell: str) -> Any:
    """A CSV cell as the value its column takes. Raises ValueError naming the column, not the cell."""
    if column in INT_COLUMNS:
        if not _INT_TEXT.fullmatch(cell.strip()):
            raise ValueError(f"{column}: not a whole number")
        return int(cell)
    if column in BOOL_COLUMNS:
        if cell.strip().lower() not in _BOOL_TEXT:
            raise ValueError(f"{column}: not one of true/false/1/0/yes/no")
        return _BOOL_TEXT[cell.strip().lower()]
    return cell


class _BatchBuilder:
    """Turns rows into ``BatchLine``s for one batch, refusing a job id a line before it already took."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self.first_line_of: dict[str, int] = {}

    def lines(self, rows: list[_Row]) -> list[BatchLine]:
        return [self.line(*row) for row in rows]

    def line(self, line_number: int, fields: dict[str, Any] | None, error: str) -> BatchLine:
        if fields is None:
            return BatchLine(line_number, None, error)
        client_id = fields.pop("id", None)
        if client_id is None:
            canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            client_id = hashlib.sha256(canonical.encode()).hexdigest()[:ID_HASH_CHARS]
        elif isinstance(client_id, bool) or not isinstance(client_id, str | int) or client_id == "":
            return BatchLine(line_number, None, "id: must be a non-empty string or a whole number")
        client_id = str(client_id)
        job_id = job_id_for(self.batch_id, client_id)
        first = self.first_line_of.setdefault(job_id, line_number)
        if first != line_number:
            return BatchLine(line_number, None, f"duplicate id, first on line {first}", client_id)
        fields.update(id=job_id, priority=Priority.batch, batch_id=self.batch_id)
        try:
            return BatchLine(line_number, JobSpec.model_validate(fields), "", client_id)
        except ValidationError as invalid:
            return BatchLine(line_number, None, describe_validation_error(invalid), client_id)


def rejected_lines(lines: list[BatchLine]) -> list[dict[str, Any]]:
    """The bad lines as ``{"line", "error"}``, for an answer or a report."""
    return [{"line": line.line_number, "error": line.error} for line in lines if line.spec is None]
