"""``framequeue dev``: every Procfile line on this machine, in one command, stopped together by Ctrl-C.

honcho (a Python Foreman) runs the lines: each in a process group of its own, their output
interleaved under the line's name; on Ctrl-C or SIGTERM it sends SIGTERM to every group and
SIGKILL to what is left 5 s later, so no service outlives it. What ``dev`` adds is the
environment the services share:

- ``REDIS_URL``: the embedded Redis when none is set, started here first (and shut down at the
  end if this command started it);
- ``FRAMEQUEUE_API_TOKEN`` and ``FRAMEQUEUE_WEBHOOK_SECRET``, made up when unset: given to the
  services only, and shown once, on one line of the operator's terminal;
- ``PORT`` for the ``api`` line, and the virtual environment's ``bin`` on ``PATH``, so the lines'
  ``framequeue`` is this one.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import redis

from queue_config.settings import Settings
from workers.cli.errors import CliError, redacted_url
from workers.embedded_redis import ensure_embedded_redis, stop_embedded_redis
from workers.redis_connection import redis_client

#: The Procfile next to the package, for a ``dev`` run from elsewhere than the repository.
SHIPPED_PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from honcho.environ import parse_procfile
    from honcho.manager import Manager

    procfile = Path(args.procfile) if args.procfile else _default_procfile()
    processes = parse_procfile(procfile.read_text()).processes
    if not processes:
        raise CliError(f"{procfile}: no process line (name: command)")
    env, made_up = service_environment(settings, args.port)
    started_redis = not settings.redis_url and not _answers(f"unix://{settings.data_dir / 'redis.sock'}")
    env["REDIS_URL"] = redis_url = settings.redis_url or ensure_embedded_redis(settings.data_dir)
    print_banner(procfile, list(processes), args.port, redis_url, made_up)
    manager = Manager()
    for name, command in processes.items():
        manager.add_process(name, command, env=env, cwd=str(procfile.parent))
    try:
        manager.loop()
    finally:
        if started_redis:
            stop_embedded_redis(settings.data_dir)
    return int(manager.returncode or 0)


def service_environment(settings: Settings, port: int) -> tuple[dict[str, str], dict[str, str]]:
    """The services' environment, and the secrets made up for it (by variable) because none was set."""
    made_up = {}
    if not settings.api_token:
        made_up["FRAMEQUEUE_API_TOKEN"] = secrets.token_urlsafe(32)
    if not settings.webhook_secret:
        made_up["FRAMEQUEUE_WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **made_up, "PORT": str(port), "PYTHONUNBUFFERED": "1",
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    return env, made_up


def print_banner(procfile: Path, names: list[str], port: int, redis_url: str, made_up: dict[str, str]) -> None:
    """What the operator needs before the services' output starts scrolling."""
    print(f"framequeue dev: {len(names)} services from {procfile} ({', '.join(names)}); Ctrl-C stops them all")
    print(f"  dashboard: http://127.0.0.1:{port}/dashboard  (sign in with the API token)")
    print(f"  API:       http://127.0.0.1:{port}/v1  (Authorization: Bearer <token>)")
    socket_path = redis_url.removeprefix("unix://") if redis_url.startswith("unix://") else ""
    print(f"  redis:     {redacted_url(redis_url)}" + (f"  (redis-cli -s {socket_path})" if socket_path else ""))
    if made_up:
        print("  made up for this run, given to the services only: "
              + "  ".join(f"{name}={value}" for name, value in made_up.items()))
    sys.stdout.flush()


def _default_procfile() -> Path:
    here = Path("Procfile")
    return here if here.is_file() else SHIPPED_PROCFILE


def _answers(url: str) -> bool:
    try:
        return bool(redis_client(url, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def add_dev_command(commands: Any) -> None:
    """Register ``dev`` on the ``framequeue`` parser's subparsers."""
    dev = commands.add_parser("dev", help="run every Procfile service here (API, intake, webhooks, workers...); "
                                          "Ctrl-C stops them all")
    dev.add_argument("--procfile", help="the Procfile to run (default: ./Procfile, else the one shipped)")
    dev.add_argument("--port", type=int, default=8000, help="the API's and dashboard's port (default 8000)")
    dev.set_defaults(handler=cmd_dev)
