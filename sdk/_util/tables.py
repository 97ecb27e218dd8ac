"""Tables of the CLI that never cut an identifier.

In a terminal: a rich table whose cells wrap (fold) instead of ending in "…". Anywhere else (a
pipe, CI, ``| tee``): plain aligned columns at full width, so URIs, revision ids and names can be
copied from logs and read by scripts.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def print_table(console: Console, title: str, columns: Sequence[str],
                rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``columns``: folded cells in a terminal, plain columns otherwise."""
    if console.is_terminal:
        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) if rows else len(str(c))
              for i, c in enumerate(columns)]
    lines = [title, "  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


__all__ = ["print_table"]
