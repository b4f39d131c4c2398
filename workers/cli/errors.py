"""How the ``framequeue`` command fails: one line on stderr and an exit code, never a traceback.

For what a user can fix, a command raises ``CliError`` (a mistake, an unknown id); ``run_command``
prints it as ``framequeue: <message>`` and returns its exit code, and does the same for Redis being
unreachable (its URL shown without credentials). Anything else is a bug and keeps its traceback.
The parser, ``OneLineParser``, reports a usage error in one line too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Final, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit

from queue_config.settings import Settings
from workers.outages import OUTAGE_ERRORS

#: The command failed: a job failed or was blocked, no such job or batch, Redis unreachable.
EXIT_FAILURE: Final = 1
#: Its user's mistake: bad arguments, a file that cannot be read or (with --strict) has bad lines, an invalid job.
EXIT_USAGE: Final = 2
#: For ``--help``.
EXIT_CODES_HELP: Final = (f"exit codes: 0 done; {EXIT_FAILURE} failed (the job failed or was blocked, no such job or "
                          f"batch, Redis unreachable); {EXIT_USAGE} a usage or input error (bad arguments, an "
                          "unreadable file, bad lines with --strict, an invalid job or --webhook)")
_SECRET_OPTIONS: Final = frozenset({"password", "sentinel_password"})


class CliError(Exception):
    """What ``main`` reports as ``framequeue: {message}`` on one line, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotFound(CliError):
    """No job or batch has this id."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_FAILURE)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (with where to look) instead of the usage and the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def run_command(handler: Callable[[argparse.Namespace, Settings], int], args: argparse.Namespace,
                settings: Settings) -> int:
    """``handler``'s exit code; a ``CliError`` or Redis out of reach becomes one line on stderr and its code."""
    try:
        return int(handler(args, settings))
    except CliError as error:
        message, exit_code = str(error), error.exit_code
    except OUTAGE_ERRORS as error:
        where = redacted_url(settings.redis_url) if settings.redis_url else "the embedded server"
        message, exit_code = f"cannot reach Redis at {where}: {error}", EXIT_FAILURE
    print(f"framequeue: {one_line(message)}", file=sys.stderr)
    return exit_code


def redacted_url(url: str) -> str:
    """``url`` without credentials: its user and password replaced by ``***``, so are password options."""
    parts = urlsplit(url)
    _, at, hosts = parts.netloc.rpartition("@")
    query = urlencode([(key, "***" if key in _SECRET_OPTIONS else value) for key, value in parse_qsl(parts.query)],
                      safe="*")
    return f"{parts.scheme}://{'***@' if at else ''}{hosts}{parts.path}" + (f"?{query}" if query else "")


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of whitespace as single spaces."""
    return " ".join(text.split())
