"""What every subcommand shares: consoles, verbosity, help layout, one-line errors, JSON output.

Three consoles, so that ``-q`` can silence everything but errors:

- :data:`console` (stdout): tables and other renderings for people;
- :data:`err_console` (stderr): progress bars, notes and warnings;
- :data:`error_console` (stderr): the error lines of :func:`fail` and the log handler's
  records (filtered by level), never silenced.

``-q`` makes the first two quiet. Machine-readable output a user asked for (``--format json``,
``--format csv``) is written to ``sys.stdout`` directly and is printed with ``-q`` too.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from crystensor.errors import CrystensorError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)
error_console = Console(stderr=True)
log = logging.getLogger("crystensor")


def configure_logging(verbosity: int) -> None:
    """``-q`` -> errors only, default -> warnings, ``-v`` -> info, ``-vv`` -> debug.

    ``-q`` (``verbosity < 0``) also silences the tables, progress bars and notes of
    :data:`console` and :data:`err_console`; errors still print on :data:`error_console`.
    """
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    from rich.logging import RichHandler

    # set on every call: tests run several commands in one process
    console.quiet = err_console.quiet = verbosity < 0
    handler = RichHandler(console=error_console, show_path=False, show_time=verbosity > 1)
    handler.setLevel(level)  # a run's log file may ask the loggers for more than the console shows
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    log.setLevel(level)


def command_help(func: Callable[..., Any]) -> str:
    """A command's docstring with each paragraph on one line, for ``app.command(help=...)``.

    In rich markup mode typer keeps the docstring's line breaks and wraps each line again at the
    terminal width, which splits sentences mid-line on an 80-column terminal. Paragraphs
    (separated by a blank line) stay apart.
    """
    text = inspect.cleandoc(func.__doc__ or "")
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())


def quiet() -> bool:
    """True under ``-q``: print nothing but errors and the output asked for."""
    return console.quiet


class _FlagsWithoutPlaceholder:
    """Help that shows no value placeholder (``<bool>``, ``<int>``) for a flag or a count.

    Typer's rich help prints every option's type, so ``--json <bool>`` and ``-v <int>`` looked as
    if they took a value; click's plain help leaves them out, and so does this.
    """

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            if getattr(param, "is_flag", False) or getattr(param, "count", False):
                if param.metavar is None:
                    param.metavar = ""  # typer shows the metavar, when set, instead of the type
        super().format_help(ctx, formatter)  # type: ignore[misc]


class Command(_FlagsWithoutPlaceholder, TyperCommand):
    """The class of every subcommand (``app.command(cls=Command)``)."""


class Group(_FlagsWithoutPlaceholder, TyperGroup):
    """The class of the root app (``typer.Typer(cls=Group)``)."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red error line (even with ``-q``) and return the Exit to raise."""
    error_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def guarded(func: F) -> F:
    """Turn crystensor's errors into one red line and exit code 2; never a bare traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except CrystensorError as err:
            raise fail(str(err)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as err:
            if log.isEnabledFor(logging.DEBUG):
                error_console.print_exception()
            raise fail(
                f"internal error ({type(err).__name__}: {err}); rerun with -vv for the "
                "traceback and report it",
                1,
            ) from None

    return wrapper  # type: ignore[return-value]


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=_default, allow_nan=False) + "\n"


def emit_json(data: Any, output: Path | None, print_to_stdout: bool) -> None:
    """Write ``data`` as JSON to ``output`` (atomically) and/or stdout (with ``-q`` too)."""
    from crystensor.io.atomic import atomic_write_text

    text = dumps(data)
    if output is not None:
        atomic_write_text(output, text)
        log.info("wrote %s", output)
    if print_to_stdout:
        sys.stdout.write(text)
