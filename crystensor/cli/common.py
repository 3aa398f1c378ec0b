"""What every subcommand shares: consoles, logging set-up, one-line errors, JSON output."""

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

from crystensor.errors import CrystensorError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("crystensor")


def configure_logging(verbosity: int) -> None:
    """``-q`` -> errors only, default -> warnings, ``-v`` -> info, ``-vv`` -> debug."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_path=False, show_time=verbosity > 1)
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


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red error line and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
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
                err_console.print_exception()
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
    """Write ``data`` as JSON to ``output`` (atomically) and/or stdout."""
    from crystensor.io.atomic import atomic_write_text

    text = dumps(data)
    if output is not None:
        atomic_write_text(output, text)
        log.info("wrote %s", output)
    if print_to_stdout:
        sys.stdout.write(text)
