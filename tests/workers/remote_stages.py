"""Remote stages on real worker processes: a TOML configuration and a fleet of their own.

Each fleet works in its own Redis namespace, so key states, limits and job records of one
fleet never meet another's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from queue_config.settings import Settings
from tests.workers.test_remote_fleet import Fleet

#: The model every route here names.
MODEL = "sim-model"


def provider_of(stage: str) -> str:
    """Each routed stage gets a provider (and a key pool) of its own, named after it."""
    return f"sim_{stage}"


def remote_toml(routes: dict[str, tuple[str, str]], *, concurrency: int | None = None) -> str:
    """A configuration sending each ``stage`` of ``routes`` to ``(kind, base_url)``: a simulator
    speaking the ``openai`` or ``replicate`` API. Keys come from FRAMEQUEUE_KEYS_SIM.

    No key quota and no request rate: only ``concurrency``, when given, limits each model.
    """
    parts = []
    for stage, (kind, base_url) in routes.items():
        provider = provider_of(stage)
        parts.append(f'[providers.{provider}]\nkind = "{kind}"\nbase_url = "{base_url}"\n'
                     'keys_env = "FRAMEQUEUE_KEYS_SIM"\n')
        parts.append(f'[stages.{stage}]\nprovider = "{provider}"\nmodel = "{MODEL}"\n')
        if concurrency:
            parts.append(f'[[limits]]\nprovider = "{provider}"\nmodel = "{MODEL}"\nconcurrency = {concurrency}\n')
    return "".join(parts)


@contextmanager
def remote_fleet(
    settings: Settings, config_dir: Path, logs_dir: Path, namespace: str, toml: str, keys: list[str],
    *, hosts: int = 1,
) -> Iterator[Fleet]:
    """``hosts`` worker commands (one process, two threads each) running every stage with ``toml``."""
    config = config_dir / f"{namespace}.toml"
    config.write_text(toml)
    fleet = Fleet(settings.model_copy(update={"namespace": namespace, "remote_config": config}),
                  keys, logs_dir, hosts=hosts, processes=1)
    try:
        yield fleet
    finally:
        fleet.stop()
