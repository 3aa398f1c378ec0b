"""Rich renderings shared by the subcommands: numbers, Voigt tables and property tables.

Nothing heavy is imported at module level (rich's tables are imported when a table is built), so
that importing a subcommand for ``--help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["fmt_number", "properties_table", "voigt_table"]


def fmt_number(x: float) -> str:
    """A compact, exact-zero-aware rendering: ``0``, ``12.3457``, ``1.235e-05``."""
    if x == 0:
        return "0"
    return f"{x:.6g}" if abs(x) >= 1e-3 else f"{x:.3e}"


def voigt_table(kind: Any, voigt: list, title: str) -> Table:
    """A tensor in the user-facing Voigt form of ``kind`` (rows x, y, z or 1..6)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    rows = voigt if isinstance(voigt[0], list) else [voigt]
    width = len(rows[0])
    col_labels = "xyz" if kind.rank == 2 else "123456"
    row_labels = "xyz" if kind.rank == 2 else "123456"
    table.add_column("")
    for j in range(width):
        table.add_column(col_labels[j], justify="right")
    for i, row in enumerate(rows):
        table.add_row(row_labels[i], *(fmt_number(v) for v in row))
    return table


def properties_table(props: dict[str, Any], title: str) -> Table:
    """Derived properties (``as_dict()`` of :mod:`crystensor.tensors.properties`) with units."""
    from rich.table import Table

    units = props.get("units", {})
    table = Table(title=title, title_justify="left")
    table.add_column("property")
    table.add_column("value", justify="right")
    table.add_column("units")
    for key, value in props.items():
        if key == "units":
            continue
        if isinstance(value, list):
            text = "  ".join(
                fmt_number(v)
                if not isinstance(v, list)
                else "(" + " ".join(fmt_number(x) for x in v) + ")"
                for v in value
            )
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif value is None:
            text = "n/a"
        elif isinstance(value, float | int):
            text = fmt_number(value)
        else:
            text = str(value)
        unit = units.get(key, "")
        table.add_row(key, text, "" if unit == "1" else unit)
    return table
