"""``framequeue keys``: each provider key's health by fingerprint, and disabling or enabling one.

Keys themselves are never stored or printed: an operator names a key by the fingerprint this
command (or the dashboard) shows.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from queue_config.settings import Settings
from workers.cli.errors import CliError, NotFound
from workers.cli.output import print_json, print_table
from workers.jobs.record import JobStatusStore


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from workers.keys import key_health, set_key_enabled

    client = JobStatusStore.from_settings(settings).client
    if args.action:
        if not args.fingerprint:
            raise CliError(f"keys {args.action} needs the key's FINGERPRINT (see framequeue keys)")
        if not set_key_enabled(client, settings.namespace, args.fingerprint, args.action == "enable"):
            raise NotFound(f"no key with fingerprint {args.fingerprint} (see framequeue keys)")
        print(f"key {args.fingerprint}: {args.action}d")
        return 0
    rows = key_health(client, settings.namespace)
    if args.json:
        print_json([asdict(row) for row in rows])
        return 0
    print_table(["provider", "key", "state", "requests", "ok", "429", "5xx", "reason"],
                ([row.provider, row.fingerprint, row.state, row.requests, row.successes, row.rate_limited, row.errors,
                  row.disabled_reason] for row in rows), empty="no key has been used yet")
    return 0


def add_keys_command(commands: Any) -> None:
    """Register ``keys`` on the ``framequeue`` parser's subparsers."""
    keys = commands.add_parser("keys", help="show the health of every provider's API keys; enable or disable one")
    keys.add_argument("action", nargs="?", choices=["enable", "disable"],
                      help="enable or disable the key FINGERPRINT names (for every worker at once); "
                           "without it, list every key")
    keys.add_argument("fingerprint", nargs="?", help="a key's fingerprint, as the list shows it")
    keys.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")
    keys.set_defaults(handler=cmd_keys)
