"""The framequeue command's failures, run as a user would: one line on stderr, exit 1 or 2, never a traceback.

Exit 2 is the user's mistake (a file that cannot be read, bad lines with --strict, a bad --webhook,
bad arguments), exit 1 a failure (no such job or batch, Redis out of reach).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from queue_config.settings import Settings
from tests.conftest import settings_env
from tests.servers import REPO_ROOT
from workers.batches.files import derive_batch_id

GOOD = b'{"prompt": "a fox", "width": 64, "height": 64}\n'
#: Planted in a file; the command names its column by position, never by this.
CANARY = "sk-live-CANARY"


def framequeue(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env={**settings_env(settings), **env}, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120,
    )


def refused(result: subprocess.CompletedProcess[str], exit_code: int, says: str) -> None:
    """The command failed with ``exit_code`` and said ``says`` in exactly one line on stderr."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert says in result.stderr, result.stderr


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def batch_dir(tmp_path: Path) -> Path:
    (tmp_path / "good.jsonl").write_bytes(GOOD)
    (tmp_path / "bad.jsonl").write_bytes(GOOD + b'{"prompt": "a hare", "width": 65}\n\n{"prompt": ""}\n')
    (tmp_path / "columns.csv").write_text(f"prompt,{CANARY}\na fox,1\n")
    (tmp_path / "a-directory.jsonl").mkdir()
    return tmp_path


@pytest.mark.parametrize(("name", "says"), [
    ("missing.jsonl", "missing.jsonl: No such file or directory"),
    ("a-directory.jsonl", "a-directory.jsonl: Is a directory"),
    ("good.jsonl/below-a-file", "below-a-file: Not a directory"),
])
def test_a_batch_file_that_cannot_be_read_is_one_line_and_exit_2(
    settings: Settings, batch_dir: Path, name: str, says: str
) -> None:
    result = framequeue(settings, "batch", "submit", str(batch_dir / name))

    refused(result, 2, f"framequeue: cannot read {batch_dir}")
    assert says in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_batch_file_without_read_permission_is_one_line_and_exit_2(settings: Settings, batch_dir: Path) -> None:
    (batch_dir / "good.jsonl").chmod(0)

    refused(framequeue(settings, "batch", "submit", str(batch_dir / "good.jsonl")), 2, "Permission denied")


def test_a_file_whose_read_fails_is_one_line_and_exit_2(settings: Settings) -> None:
    refused(framequeue(settings, "batch", "submit", "/proc/self/mem"), 2,
            "framequeue: cannot read /proc/self/mem: Input/output error")


def test_bad_lines_with_strict_are_one_line_naming_the_first_and_counting_them_and_nothing_is_submitted(
    settings: Settings, batch_dir: Path
) -> None:
    path = batch_dir / "bad.jsonl"

    result = framequeue(settings, "batch", "submit", str(path), "--strict")

    refused(result, 2, f"framequeue: {path}:2: invalid job: width")
    assert "(2 bad line(s): 2, 4); nothing submitted (--strict)" in result.stderr
    refused(framequeue(settings, "batch", "status", derive_batch_id(path.read_bytes())), 1, "no batch")


def test_a_file_the_parser_refuses_whole_is_one_line_with_its_line_number_and_no_echo(
    settings: Settings, batch_dir: Path
) -> None:
    result = framequeue(settings, "batch", "submit", str(batch_dir / "columns.csv"))

    refused(result, 2, "columns.csv:1: the CSV header is wrong: unknown column 2")
    assert CANARY not in result.stderr


@pytest.mark.parametrize("action", ["status", "retry-failed", "cancel"])
def test_an_unknown_batch_is_one_line_and_exit_1(settings: Settings, action: str) -> None:
    batch_id = f"b-never-{uuid.uuid4().hex[:8]}"

    result = framequeue(settings, "batch", action, batch_id)

    refused(result, 1, f"framequeue: no batch {batch_id}")
    assert result.stdout == ""


@pytest.mark.parametrize("options", [(), ("--json",)])
def test_the_status_of_an_unknown_job_is_one_line_and_exit_1(settings: Settings, options: tuple[str, ...]) -> None:
    result = framequeue(settings, "status", "no-such-job", *options)

    refused(result, 1, "framequeue: no job no-such-job")
    assert result.stdout == ""


@pytest.mark.parametrize(("url", "says"), [
    ("file:///etc/passwd", "webhook_url must be an http:// or https:// URL"),
    ("https://user:secret@hooks.example/x", "webhook_url must not carry a user name or password"),
    ("https://", "webhook_url has no host"),
    ("https://hooks.example:99999/x", "webhook_url has a bad port"),
])
def test_a_webhook_the_api_would_refuse_is_refused_with_the_apis_reason(
    settings: Settings, batch_dir: Path, url: str, says: str
) -> None:
    result = framequeue(settings, "batch", "submit", str(batch_dir / "good.jsonl"), "--webhook", url)

    refused(result, 2, f"framequeue batch: argument --webhook: {says}")
    assert "secret" not in result.stderr


@pytest.mark.parametrize("args", [
    ("status", "some-job"),
    ("batch", "status", "some-batch"),
    ("submit", "a fox", "--width", "64", "--height", "64"),
    ("keys",),
    ("keys", "disable", "0123456789ab"),
    ("jobs", "--search", "fox"),
    ("cancel", "some-job"),
    ("requeue", "some-job"),
])
def test_redis_out_of_reach_is_one_line_naming_it_without_its_password_and_exit_1(
    settings: Settings, batch_dir: Path, args: tuple[str, ...]
) -> None:
    port = closed_port()

    result = framequeue(settings, *args, REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0")

    refused(result, 1, f"framequeue: cannot reach Redis at redis://***@127.0.0.1:{port}/0: ")
    assert "hunter2" not in result.stderr


def test_a_batch_submitted_while_redis_is_out_of_reach_is_one_line_on_stderr_and_exit_1(
    settings: Settings, batch_dir: Path
) -> None:
    result = framequeue(settings, "batch", "submit", str(batch_dir / "good.jsonl"),
                        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")

    refused(result, 1, "framequeue: cannot reach Redis at redis://127.0.0.1:")


@pytest.mark.parametrize(("args", "says"), [
    ((), "framequeue: the following arguments are required: COMMAND (see framequeue --help)"),
    (("batch", "submit"), "framequeue batch: the following arguments are required: target"),
    (("submit", "a fox", "--width", "wide"), "argument --width: invalid int value"),
])
def test_a_usage_error_is_one_line_and_exit_2(settings: Settings, args: tuple[str, ...], says: str) -> None:
    refused(framequeue(settings, *args), 2, says)


@pytest.mark.parametrize(("env", "says"), [
    ({"FRAMEQUEUE_MODEL_PROFILE": "huge"}, "FRAMEQUEUE_MODEL_PROFILE: Input should be 'tiny' or 'standard'"),
    ({"FRAMEQUEUE_DEVICE": "gpu"}, "FRAMEQUEUE_DEVICE: allowed: cpu, cuda, cuda:N, or empty"),
    ({"FRAMEQUEUE_BATCH_WINDOW": "10pm-6am"}, "FRAMEQUEUE_BATCH_WINDOW: allowed: HH:MM[:SS]-HH:MM[:SS]"),
    ({"FRAMEQUEUE_BATCH_TIMEZONE": "Mars/Olympus"}, "FRAMEQUEUE_BATCH_TIMEZONE: allowed: an IANA time zone"),
])
def test_a_setting_outside_its_allowed_values_is_refused_at_start_up_naming_it_and_exit_78(
    settings: Settings, env: dict[str, str], says: str
) -> None:
    result = framequeue(settings, "status", "some-job", **env)

    refused(result, 78, f"framequeue: bad setting {says}")
    assert next(iter(env.values())) not in result.stderr.partition(":")[2].replace("Input should be", "")


@pytest.mark.parametrize("args", [("submit", "a fox", "--width", "64", "--height", "64"), ("worker",)])
def test_a_frames_backend_the_catalog_lacks_is_refused_by_a_command_that_reads_the_catalog_and_exit_78(
    settings: Settings, args: tuple[str, ...]
) -> None:
    # Any catalog model of the frames stage may be the default, so only the catalog can refuse one.
    result = framequeue(settings, *args, FRAMEQUEUE_FRAMES_BACKEND="sora")

    refused(result, 78, "framequeue: bad model catalog: frames_backend 'sora' is not a model of the catalog")


def test_a_remote_config_file_that_is_missing_is_one_line_and_exit_2(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "providers.toml"

    result = framequeue(settings, "worker", "--stages", "image", FRAMEQUEUE_REMOTE_CONFIG=str(missing))

    refused(result, 2, f"framequeue: cannot read {missing}: No such file or directory")


def test_dev_with_a_procfile_that_is_missing_is_one_line_and_exit_2(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "Procfile"

    refused(framequeue(settings, "dev", "--procfile", str(missing)), 2,
            f"framequeue: cannot read {missing}: No such file or directory")
