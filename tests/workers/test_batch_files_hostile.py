"""Hostile batch files: every malformed line or file is named by its line number and a reason that quotes none of it."""

from __future__ import annotations

import csv
import json

import pytest

from workers.batches.files import BatchFileError, BatchLine, parse_batch

BATCH = "b0123456789abcde"
#: Planted in what the client sends; no reason may repeat it.
CANARY = "sk-live-CANARY"
GOOD = json.dumps({"prompt": "a fox"}).encode()


def bad_lines(lines: list[BatchLine]) -> dict[int, str]:
    return {line.line_number: line.error for line in lines if line.spec is None}


@pytest.mark.parametrize(("line", "reason"), [
    pytest.param(b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not JSON: depth limit exceeded at column",
                 id="nested-100000-deep"),
    pytest.param(b'{"prompt": "a", "seed": ' + b"[" * 900 + b"]" * 900 + b"}",
                 "seed: must be a single value, not a list", id="nested-within-orjsons-limit"),
    pytest.param(b'{"prompt": "a", "seed": {"' + CANARY.encode() + b'": 1}}', "seed: must be a single value",
                 id="object-as-a-value"),
    pytest.param(b'{"prompt": "a", "seed": ' + b"9" * 5000 + b"}", "not JSON: number is infinity",
                 id="5000-digit-number"),
    pytest.param(b'{"prompt": "a", "seed": 1e999}', "not JSON: number is infinity", id="float-overflow"),
    pytest.param(b'{"prompt": "' + CANARY.encode() + b'\x00"}', "a NUL character at column 27", id="raw-nul"),
    pytest.param(b'{"prompt": "' + CANARY.encode() + b'\\u0000"}', "prompt: a NUL character in it",
                 id="escaped-nul"),
    pytest.param(b"\xef\xbb\xbf" + GOOD, "the line starts with a byte-order mark", id="bom-mid-file"),
    pytest.param(b'{"prompt": "a", "' + CANARY.encode() + b'": 1}', "unknown key 2 (counting the object's keys",
                 id="unknown-key"),
    pytest.param(b'{"prompt": "a", "<script>' + b"x" * 100_000 + b'": 1}', "unknown key 2", id="huge-unknown-key"),
    pytest.param(b'{"prompt": "' + CANARY.encode() + b'" ' + CANARY.encode() + b"}", "not JSON: ", id="garbage"),
])
def test_a_hostile_jsonl_line_is_refused_by_its_line_number_and_the_lines_around_it_still_parse(
    line: bytes, reason: str
) -> None:
    data = b"\n".join([GOOD, line, json.dumps({"prompt": "a hare"}).encode()]) + b"\n"

    lines = parse_batch(data, batch_id=BATCH, fmt="jsonl")

    assert [line.line_number for line in lines] == [1, 2, 3]
    assert bad_lines(lines).keys() == {2} and bad_lines(lines)[2].startswith(reason), bad_lines(lines)
    assert CANARY not in bad_lines(lines)[2] and "<script>" not in bad_lines(lines)[2]
    assert len(bad_lines(lines)[2]) < 200


@pytest.mark.parametrize(("row", "reason"), [
    pytest.param(f"{CANARY}\x00,1", "a NUL character in cell 1", id="nul"),
    pytest.param(f"\ufeff{CANARY},1", "the line starts with a byte-order mark (U+FEFF): were two files joined?",
                 id="bom-mid-file"),
    pytest.param(f"{CANARY}," + "9" * 5000, "seed: a number too large", id="5000-digit-number"),
    pytest.param(f"{CANARY},{CANARY}", "seed: not a whole number", id="not-a-number"),
    pytest.param(f"{CANARY},1,{CANARY}", "3 cells but the header names 2 columns", id="extra-cell"),
])
def test_a_hostile_csv_row_is_refused_by_its_line_number_and_the_rows_around_it_still_parse(
    row: str, reason: str
) -> None:
    data = f"prompt,seed\na fox,1\n{row}\na hare,2\n".encode()

    lines = parse_batch(data, batch_id=BATCH, fmt="csv")

    assert [line.line_number for line in lines] == [2, 3, 4]
    assert bad_lines(lines) == {3: reason}


@pytest.mark.parametrize(("data", "fmt", "line_number", "reason"), [
    pytest.param(b"", None, 1, "the file is empty", id="empty"),
    pytest.param(b"\n \r\n\t\n\n", None, 1, "the file is empty (only blank lines)", id="only-blank-lines"),
    pytest.param(GOOD + b"\n\n" + b'{"prompt": "\xff\xfe' + CANARY.encode() + b'"}\n', "jsonl", 3,
                 "not UTF-8 text (a bad byte at byte 13 of the line)", id="not-utf8-on-line-3"),
    pytest.param(f'{{"prompt": "{CANARY}"}}\n'.encode("utf-16"), None, 1,
                 "not UTF-8 text but UTF-16 (save the file as UTF-8)", id="utf16"),
    pytest.param(f"\n\nprompt,seed,{CANARY}\na,1,b\n".encode(), "csv", 3,
                 "the CSV header is wrong: unknown column 3", id="unknown-column"),
    pytest.param(b"prompt,<img src=x onerror=alert(1)>\na,b\n", "csv", 1,
                 "the CSV header is wrong: unknown column 2", id="markup-column"),
    pytest.param(b"seed,prompt,seed\n1,a,2\n", "csv", 1, "the CSV header is wrong: column 3 repeats column 1",
                 id="repeated-column"),
    pytest.param(b"prompt\na fox\n" + CANARY.encode() * 20_000 + b"\na hare\n", "csv", 3,
                 f"a cell is over {csv.field_size_limit()} characters; the file cannot be read past it",
                 id="huge-cell"),
    pytest.param(b'prompt\na fox\n"' + CANARY.encode() * 20_000 + b'\n"\na hare\n', "csv", 3,
                 f"a cell is over {csv.field_size_limit()} characters; the file cannot be read past it",
                 id="huge-quoted-cell-over-lines"),
])
def test_a_hostile_file_is_refused_whole_naming_the_line_and_the_reason(
    data: bytes, fmt: str | None, line_number: int, reason: str
) -> None:
    with pytest.raises(BatchFileError) as refused:
        parse_batch(data, batch_id=BATCH, fmt=fmt)  # type: ignore[arg-type]

    assert (refused.value.line_number, refused.value.reason) == (line_number, reason)
    assert str(refused.value) == f"line {line_number}: {reason}"


def test_a_leading_byte_order_mark_is_taken_off_in_either_format() -> None:
    jsonl, csv_file = (parse_batch(b"\xef\xbb\xbf" + data, batch_id=BATCH, fmt=fmt)  # type: ignore[arg-type]
                       for data, fmt in ((GOOD + b"\n", "jsonl"), (b"prompt\na fox\n", "csv")))

    assert [line.spec.prompt for line in (*jsonl, *csv_file) if line.spec] == ["a fox", "a fox"]


def test_reading_a_huge_cell_leaves_the_process_wide_csv_field_limit_as_it_was() -> None:
    limit = csv.field_size_limit()

    with pytest.raises(BatchFileError):
        parse_batch(b"prompt\n" + b"x" * (limit + 1) + b"\n", batch_id=BATCH, fmt="csv")

    assert csv.field_size_limit() == limit
