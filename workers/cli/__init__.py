"""The ``framequeue`` command: ``main`` parses and dispatches; ``services`` adds the long-running services."""

from workers.cli.main import main

__all__ = ["main"]
