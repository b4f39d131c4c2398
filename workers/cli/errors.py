"""How the ``framequeue`` command fails: one line on stderr and an exit code, never a traceback.

For what a user can fix, a command raises ``CliError`` (a mistake, an unknown id); ``run_command``
prints it as ``framequeue: <message>`` and returns its exit code, and does the same for Redis being
unreachable (its URL shown without credentials), a file that cannot be opened, a setting that is
refused (named by its environment variable, never with its value) and Ctrl-C. Anything else is a
bug and keeps its traceback. The parser, ``OneLineParser``, reports a usage error in one line too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Final, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import AliasChoices, ValidationError

from queue_config.catalog import CatalogError
from queue_config.settings import Settings
from workers.outages import OUTAGE_ERRORS

#: The command failed: a job failed or was blocked, no such job or batch, Redis unreachable.
EXIT_FAILURE: Final = 1
#: Its user's mistake: bad arguments, a file that cannot be read or (with --strict) has bad lines, an invalid job.
EXIT_USAGE: Final = 2
#: A setting (environment variable or .env line) holds a value framequeue refuses (sysexits' EX_CONFIG).
EXIT_CONFIG: Final = 78
#: Interrupted by Ctrl-C (SIGINT): 128 + 2, as a shell reports it.
EXIT_INTERRUPTED: Final = 130
#: For ``--help``.
EXIT_CODES_HELP: Final = (f"exit codes: 0 done; {EXIT_FAILURE} failed (the job failed or was blocked, no such job or "
                          f"batch, Redis unreachable); {EXIT_USAGE} a usage or input error (bad arguments, an "
                          "unreadable or missing file, bad lines with --strict, an invalid job or --webhook); "
                          f"{EXIT_CONFIG} a setting is refused (e.g. FRAMEQUEUE_MODEL_PROFILE=huge); "
                          f"{EXIT_INTERRUPTED} interrupted (Ctrl-C)")
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
                load_settings: Callable[[], Settings]) -> int:
    """``handler``'s exit code, given the settings ``load_settings`` reads.

    A ``CliError``, refused settings, Redis out of reach, a file that cannot be opened or Ctrl-C
    becomes one line on stderr and its exit code.
    """
    settings: Settings | None = None
    try:
        settings = load_settings()
        return int(handler(args, settings))
    except CliError as error:
        message, exit_code = str(error), error.exit_code
    except CatalogError as error:
        message, exit_code = f"bad model catalog: {error}", EXIT_CONFIG
    except ValidationError as error:
        if settings is not None:
            raise  # a model other than the settings: a bug
        message, exit_code = refused_settings(error), EXIT_CONFIG
    except OUTAGE_ERRORS as error:
        url = settings.redis_url if settings else ""
        where = redacted_url(url) if url else "the embedded server"
        message, exit_code = f"cannot reach Redis at {where}: {error}", EXIT_FAILURE
    except (FileNotFoundError, PermissionError, IsADirectoryError) as error:
        message, exit_code = f"cannot read {error.filename}: {error.strerror}", EXIT_USAGE
    except KeyboardInterrupt:
        message, exit_code = "interrupted", EXIT_INTERRUPTED
    print(f"framequeue: {one_line(message)}", file=sys.stderr)
    return exit_code


def refused_settings(error: ValidationError) -> str:
    """What is wrong with the settings, each named by its environment variable, never with its value."""
    problems = []
    for problem in error.errors(include_input=False, include_url=False):
        name = str(problem["loc"][0]) if problem["loc"] else ""
        problems.append(f"{setting_variable(name)}: {problem['msg'].removeprefix('Value error, ')}")
    return "bad setting " + "; ".join(problems)


def setting_variable(field: str) -> str:
    """The environment variable that sets ``field`` (``REDIS_URL`` for ``redis_url``)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


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
