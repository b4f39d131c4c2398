"""A batch file's text as rows: each JSONL line or CSV record with its line number and its fields, or why not.

The file comes from anyone who can upload, so no reason here repeats any of it: an unknown CSV
column is named by its position, a bad cell by its column, and a parser's message is kept only
because it quotes no input (orjson's and the csv module's do not). JSON is read with orjson, which
stops at 1024 levels of nesting and refuses numbers beyond a double's range, so no line can
exhaust the stack. What the fields mean is for ``files``, which builds the jobs.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from typing import Any, Final

import orjson

from queue_config.jobs import JobSpec
from workers.errors import FramequeueError

#: CSV columns whose cells are whole numbers.
INT_COLUMNS: Final = frozenset({"schema_version", "seed", "width", "height", "steps", "num_frames", "fps"})
#: CSV columns whose cells are yes/no.
BOOL_COLUMNS: Final = frozenset({"enhance_prompt", "cache"})
#: Most digits a whole-number CSV cell may have (every such field fits in 10).
MAX_INT_DIGITS: Final = 20
_BOOL_TEXT: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_BOM: Final = "\ufeff"

#: (line number, the line's fields, or why it has none)
Row = tuple[int, dict[str, Any] | None, str]


class BatchFileError(FramequeueError):
    """The file as a whole cannot be read as a batch (no line of it is submitted).

    ``line_number`` is the line the problem is on (1 for an empty file), ``reason`` what it is.
    """

    def __init__(self, line_number: int, reason: str) -> None:
        super().__init__(f"line {line_number}: {reason}")
        self.line_number = line_number
        self.reason = reason


def decoded_text(data: bytes | str) -> str:
    """The file as text without a leading byte-order mark. Raises BatchFileError naming the line of a non-UTF-8 byte."""
    if isinstance(data, str):
        return data.removeprefix(_BOM)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BatchFileError(1, "not UTF-8 text but UTF-16 (save the file as UTF-8)")
    try:
        return data.decode("utf-8").removeprefix(_BOM)
    except UnicodeDecodeError as error:
        at_byte = error.start - data.rfind(b"\n", 0, error.start)
        line_number = data.count(b"\n", 0, error.start) + 1
        raise BatchFileError(line_number, f"not UTF-8 text (a bad byte at byte {at_byte} of the line)") from None


def text_problem(text: str | list[str]) -> str:
    """Why a JSONL line (``str``) or a CSV record (its cells) is no job's whatever it says: a byte-order
    mark starts it (two files joined), or it holds a NUL (a binary file). Empty when neither."""
    if (text if isinstance(text, str) else text[0]).startswith(_BOM):
        return "the line starts with a byte-order mark (U+FEFF): were two files joined?"
    if isinstance(text, str):
        return f"a NUL character at column {text.index(chr(0)) + 1}" if "\x00" in text else ""
    nul_cell = next((number for number, cell in enumerate(text, start=1) if "\x00" in cell), 0)
    return f"a NUL character in cell {nul_cell}" if nul_cell else ""


def jsonl_rows(text: str) -> list[Row]:
    """One row per non-blank line; split on "\\n" only, since JSON strings may hold U+2028 and the like."""
    rows: list[Row] = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if problem := text_problem(line):
            rows.append((line_number, None, problem))
            continue
        try:
            fields = orjson.loads(line)
        except orjson.JSONDecodeError as error:  # its message quotes no input
            rows.append((line_number, None, f"not JSON: {error.msg} at column {error.colno}"))
            continue
        if isinstance(fields, dict):
            rows.append((line_number, fields, ""))
        else:
            rows.append((line_number, None, f"not a JSON object but a {type(fields).__name__}"))
    return rows


def csv_rows(text: str) -> list[Row]:
    """One row per record after the header; cells converted to numbers and booleans, empty cells left out.

    Raises BatchFileError for a header that lacks ``prompt``, names a column a job does not have or
    one twice, and for a record the csv module cannot read (see ``_csv_records``).
    """
    records = _csv_records(text)
    header_line, header = next(((n, cells) for n, cells in records if any(cell.strip() for cell in cells)), (1, []))
    columns = [cell.strip() for cell in header]
    for number, column in enumerate(columns, start=1):
        if column not in JobSpec.model_fields:
            raise BatchFileError(header_line, f"the CSV header is wrong: unknown column {number}")
        if (first := columns.index(column) + 1) != number:
            raise BatchFileError(header_line, f"the CSV header is wrong: column {number} repeats column {first}")
    if "prompt" not in columns:
        raise BatchFileError(header_line, "the CSV header has no 'prompt' column")
    rows: list[Row] = []
    for start, cells in records:
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            rows.append((start, None, f"{len(cells)} cells but the header names {len(columns)} columns"))
            continue
        if problem := text_problem(cells):
            rows.append((start, None, problem))
            continue
        try:
            fields = {column: _cell(column, cell) for column, cell in zip(columns, cells, strict=False) if cell != ""}
        except ValueError as error:
            rows.append((start, None, str(error)))
            continue
        rows.append((start, fields, ""))
    return rows


def _csv_records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the line it starts on (a quoted cell may span lines; a blank line is ``[]``).

    Raises BatchFileError for a record the csv module cannot read, such as a cell over its
    ``field_size_limit()`` (a process-wide setting, left as it is): past it, where records start
    is no longer known, so nothing after it could be trusted.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # its messages quote no input
            too_long = "field larger than field limit" in str(error)
            reason = f"a cell is over {csv.field_size_limit()} characters" if too_long else f"not CSV ({error})"
            raise BatchFileError(start, f"{reason}; the file cannot be read past it") from None
        yield start, cells
        start = reader.line_num + 1


def _cell(column: str, cell: str) -> Any:
    """A CSV cell as the value its column takes. Raises ValueError naming the column, not the cell."""
    if column in INT_COLUMNS:
        if not _INT_TEXT.fullmatch(cell.strip()):
            raise ValueError(f"{column}: not a whole number")
        if len(cell.strip().lstrip("+-")) > MAX_INT_DIGITS:
            raise ValueError(f"{column}: a number too large")
        return int(cell)
    if column in BOOL_COLUMNS:
        if cell.strip().lower() not in _BOOL_TEXT:
            raise ValueError(f"{column}: not one of true/false/1/0/yes/no")
        return _BOOL_TEXT[cell.strip().lower()]
    return cell
