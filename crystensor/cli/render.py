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


def _value_text(value: Any) -> str:
    """One property value as text: matrices one row per line, vectors in a row."""
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            return "\n".join(_value_text(row) for row in value)
        return "  ".join(_value_text(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "n/a"
    if isinstance(value, float | int):
        return fmt_number(value)
    return str(value)


def properties_table(props: dict[str, Any], title: str) -> Table:
    """Derived properties (``as_dict()`` of :mod:`crystensor.tensors.properties`) with units.

    Scalars and vectors take one row; a matrix (e.g. the compliance) one line per row; a
    dictionary (e.g. the Born stability conditions) one indented row per entry.
    """
    from rich.table import Table

    units = props.get("units", {})
    table = Table(title=title, title_justify="left")
    table.add_column("property")
    table.add_column("value", justify="right")
    table.add_column("units")
    for key, value in props.items():
        if key == "units":
            continue
        unit = units.get(key, "")
        unit = "" if unit == "1" else unit
        if isinstance(value, dict):
            table.add_row(key, "", unit)
            for name, item in value.items():
                table.add_row(f"  {name}", _value_text(item), "")
        else:
            table.add_row(key, _value_text(value), unit)
    return table
