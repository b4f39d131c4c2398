"""Reading batch files: every line judged on its own and reported by its line number, ids stable."""

from __future__ import annotations

import json
import time

import pytest

from queue_config.jobs import Priority
from workers.batches.files import (
    BatchFileError,
    BatchLine,
    batch_id_from_name,
    derive_batch_id,
    job_id_for,
    parse_batch,
    rejected_lines,
)

BATCH = "b0123456789abcde"


def jsonl(*lines: object) -> str:
    """A JSONL file; a ``str`` line is written as it is, anything else as JSON."""
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"


def errors_by_line(lines: list[BatchLine]) -> dict[int, str]:
    return {line.line_number: line.error for line in lines if line.spec is None}


def test_good_and_bad_jsonl_lines_are_reported_by_their_line_numbers_and_blank_lines_keep_the_count() -> None:
    data = jsonl({"prompt": "a fox", "seed": 3}, "", "{not json", "[1, 2]", "   ",
                 {"prompt": "a hare", "width": 65}, {"prompt": "a owl", "api_key": "sk-secret"},
                 {"prompt": "a heron", "kind": "video", "num_frames": 4})

    lines = parse_batch(data.encode(), batch_id=BATCH)

    assert [line.line_number for line in lines] == [1, 3, 4, 6, 7, 8]
    errors = errors_by_line(lines)
    assert errors[3].startswith("not JSON") and errors[4] == "not a JSON object but a list"
    assert errors[6].startswith("invalid job: width") and "multiple of 8" in errors[6]
    assert errors[7] == "unknown key 2 (counting the object's keys from 1)"  # neither the key nor its value
    good = [line.spec for line in lines if line.spec is not None]
    assert [spec.prompt for spec in good] == ["a fox", "a heron"]
    assert good[0].seed == 3 and good[1].num_frames == 4
    assert all(spec.priority is Priority.batch and spec.batch_id == BATCH for spec in good)
    assert rejected_lines(lines) == [{"line": number, "error": error} for number, error in errors.items()]


def test_a_line_cannot_choose_its_priority_or_batch() -> None:
    (line,) = parse_batch(jsonl({"prompt": "a fox", "priority": "interactive", "batch_id": "other"}), batch_id=BATCH)

    assert line.spec is not None and line.spec.priority is Priority.batch and line.spec.batch_id == BATCH


def test_csv_cells_become_numbers_and_booleans_and_empty_cells_are_left_out() -> None:
    data = (
        "prompt,seed,width,enhance_prompt,negative_prompt,id\r\n"
        "a fox,7,512,no,,fox-1\r\n"
        "\r\n"
        '"a hare,\nin snow",8,,YES,blurry,\r\n'
        "an owl,seven,256,true,,\r\n"
        "a heron,1,256,maybe,,\r\n"
        "a crane,1,256,1,,,extra\r\n"
        "a swan,1,257,0,,\r\n"
        ",1,256,0,,\r\n"
    )

    lines = parse_batch(data, batch_id=BATCH, filename="night.CSV")

    fox, hare = lines[0].spec, lines[1].spec
    assert fox is not None and (fox.seed, fox.width, fox.enhance_prompt, fox.negative_prompt) == (7, 512, False, "")
    assert fox.id == f"{BATCH}-fox-1" and lines[0].client_id == "fox-1"
    assert hare is not None and (hare.prompt, hare.width, hare.enhance_prompt) == ("a hare,\nin snow", 256, True)
    assert errors_by_line(lines) == {
        6: "seed: not a whole number",
        7: "enhance_prompt: not one of true/false/1/0/yes/no",
        8: "7 cells but the header names 6 columns",
        9: "invalid job: width: Value error, must be a multiple of 8, got 257",
        10: "invalid job: prompt: Field required",
    }
    assert [line.line_number for line in lines[:2]] == [2, 4]


@pytest.mark.parametrize(("data", "fmt", "filename"), [
    ('{"prompt": "a fox"}\n', None, ""),
    ('{"prompt": "a fox"}\n', None, "night.ndjson"),
    ('{"prompt": "a fox"}\n', "jsonl", "night.csv"),
    ("prompt\na fox\n", None, ""),
    ("prompt\na fox\n", None, "night.txt"),
    ("\ufeffprompt\na fox\n", "csv", "night.jsonl"),
])
def test_the_format_comes_from_the_argument_then_the_extension_then_the_first_character(
    data: str, fmt: str | None, filename: str
) -> None:
    (line,) = parse_batch(data.encode(), batch_id=BATCH, fmt=fmt, filename=filename)  # type: ignore[arg-type]

    assert line.spec is not None and line.spec.prompt == "a fox"


def test_derived_ids_are_the_same_for_the_same_line_and_differ_between_lines() -> None:
    data = jsonl({"prompt": "a fox", "seed": 1}, {"seed": 1, "prompt": "a fox "}, {"prompt": "a hare"})
    reordered = jsonl({"prompt": "a hare"}, {"prompt": "a fox ", "seed": 1}, {"seed": 1, "prompt": "a fox"})

    first, again, other = (parse_batch(data, batch_id=BATCH), parse_batch(data, batch_id=BATCH),
                           parse_batch(reordered, batch_id=BATCH))

    ids = [line.spec.id for line in first if line.spec]
    assert ids == [line.spec.id for line in again if line.spec] and len(set(ids)) == 3
    assert sorted(ids) == sorted(line.spec.id for line in other if line.spec)
    assert all(job_id.startswith(f"{BATCH}-") and len(job_id) == len(BATCH) + 17 for job_id in ids)
    assert [line.spec.id for line in parse_batch(data, batch_id="b2") if line.spec] != ids


def test_client_ids_are_honoured_and_hashed_when_they_do_not_fit_a_job_id() -> None:
    lines = parse_batch(jsonl({"id": "shot_01", "prompt": "a"}, {"id": 42, "prompt": "b"},
                              {"id": "scène 2/3", "prompt": "c"}, {"id": "x" * 60, "prompt": "d"},
                              {"id": ["no"], "prompt": "e"}, {"id": "", "prompt": "f"}), batch_id=BATCH)

    jobs = [line.spec.id if line.spec else line.error for line in lines]
    assert jobs[:2] == [f"{BATCH}-shot_01", f"{BATCH}-42"]
    assert all(job.startswith(f"{BATCH}-") and len(job) == len(BATCH) + 17 for job in jobs[2:4])
    assert jobs[2] == job_id_for(BATCH, "scène 2/3") != jobs[3]
    assert jobs[4] == jobs[5] == "id: must be a non-empty string or a whole number"
    assert [line.client_id for line in lines[:4]] == ["shot_01", "42", "scène 2/3", "x" * 60]


def test_a_repeated_id_or_an_identical_line_is_an_error_naming_the_first_line() -> None:
    lines = parse_batch(jsonl({"id": "a", "prompt": "x"}, {"prompt": "same"}, {"id": "a", "prompt": "y"},
                              {"prompt": "same"}, {"id": "a", "prompt": "z"}), batch_id=BATCH)

    assert errors_by_line(lines) == {3: "duplicate id, first on line 1", 4: "duplicate id, first on line 2",
                                     5: "duplicate id, first on line 1"}


def test_strict_callers_can_see_every_bad_line_before_submitting_anything() -> None:
    lines = parse_batch(jsonl({"prompt": "ok"}, {"prompt": ""}, {"prompt": "ok too"}), batch_id=BATCH)

    assert [line.spec is not None for line in lines] == [True, False, True]
    assert rejected_lines(lines) == [{"line": 2, "error": lines[1].error}]
    assert "prompt" in lines[1].error


@pytest.mark.parametrize(("data", "message"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"", "empty"),
    (b" \n\r\n\t\n", "empty"),
    (b"negative_prompt,seed\nblurry,1\n", "no 'prompt' column"),
    (b"prompt,colour\na fox,red\n", "line 1: the CSV header is wrong: unknown column 2"),
    (b"prompt,prompt\na,b\n", "column 2 repeats column 1"),
])
def test_a_whole_file_problem_raises_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(BatchFileError, match=message):
        parse_batch(data, batch_id=BATCH)


def test_batch_ids_come_from_the_bytes_or_from_a_sanitised_name() -> None:
    assert derive_batch_id(b"abc") == derive_batch_id(b"abc") != derive_batch_id(b"abd")
    assert len(derive_batch_id(b"abc")) == 16 and derive_batch_id(b"abc").startswith("b")
    assert batch_id_from_name("  Night run: 2024/05/01 ") == "Night-run-2024-05-01"
    assert len(batch_id_from_name("x" * 100)) == 40
    with pytest.raises(ValueError):
        batch_id_from_name(" /// ")
    with pytest.raises(ValueError):
        parse_batch("prompt\na\n", batch_id="not a batch id")


def test_ten_thousand_lines_parse_in_well_under_two_seconds() -> None:
    data = "".join(json.dumps({"prompt": f"a fox number {n}", "seed": n}) + "\n" for n in range(10_000)).encode()

    started = time.perf_counter()
    lines = parse_batch(data, batch_id=derive_batch_id(data))
    elapsed_s = time.perf_counter() - started

    assert len(lines) == 10_000 and all(line.spec is not None for line in lines)
    assert len({line.spec.id for line in lines if line.spec}) == 10_000
    assert elapsed_s < 2
