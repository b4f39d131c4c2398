"""The framequeue command's help: every flag and argument explained, plain text, each page printable."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.servers import REPO_ROOT
from workers.cli.main import build_parser


def subparsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself first), with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from subparsers(child, (*path, name))


def test_every_argument_and_flag_of_every_command_has_help() -> None:
    missing = [
        f"{' '.join(path) or 'framequeue'} {action.option_strings or action.dest}"
        for path, parser in subparsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()
    ]

    assert missing == []


def test_every_command_is_listed_with_a_line_of_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    listed = {choice.dest: choice.help for choice in commands._choices_actions}

    assert set(listed) == set(commands.choices)
    assert all(help_text for help_text in listed.values())


def test_the_top_level_help_is_plain_text_with_the_commands_and_exit_codes() -> None:
    shown = subprocess.run([sys.executable, "-m", "workers.cli", "--help"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=60)

    assert shown.returncode == 0, shown.stderr
    assert "``" not in shown.stdout and ":func:" not in shown.stdout
    for command in ("submit", "jobs", "cancel", "requeue", "keys", "dev"):
        assert f"\n    {command} " in shown.stdout
    assert "130 interrupted" in " ".join(shown.stdout.split())


@pytest.mark.parametrize("path", [path for path, _ in subparsers(build_parser()) if path])
def test_each_commands_help_prints_without_rst_markup(path: tuple[str, ...]) -> None:
    parser = dict(subparsers(build_parser()))[path]

    page = parser.format_help()

    assert "``" not in page
    assert page.startswith(f"usage: framequeue {' '.join(path)}")
