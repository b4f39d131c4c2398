"""How the read commands print: a table for people by default, JSON for scripts with ``--json``.

Cells are plain text (a prompt's ``[brackets]`` are never read as rich markup), and a table sent
to a pipe or a file is laid out wide rather than folded at 80 columns.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

#: Width of a table written to something that is not a terminal.
PIPE_WIDTH = 200


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (dates and paths as strings)."""
    print(json.dumps(value, indent=2, default=str))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str = "nothing to show") -> None:
    """``rows`` under ``columns`` on stdout; ``empty`` instead when there are none."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH, highlight=False)
    if table.row_count:
        console.print(table)
    else:
        console.print(Text(empty))


def when(epoch_s: float) -> str:
    """An epoch time as local ``YYYY-MM-DD HH:MM:SS`` ("" for 0: never)."""
    return datetime.fromtimestamp(epoch_s).strftime("%Y-%m-%d %H:%M:%S") if epoch_s else ""


def clipped(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
