"""``fetch``: read a data source, check every entry, write dataset records and a rejects file.

The library function behind ``crystensor fetch``::

    source.read(target, path, options)   # RawEntry | Rejected, tensors in the structure frame
      -> ConsistencyChecker               # checks, symmetry violation, point-group projection
      -> write_records(output)            # JSON Lines (gzip for .gz), atomically
      +  <output stem>.rejects.jsonl      # {"id": ..., "reason": ...} per dropped entry

Sources are looked up by name in :data:`SOURCES` and imported only when used. Both files are
written to a temporary name and renamed when complete; if anything fails, nothing is left under
the output name (and a previous file of that name is untouched).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystensor.errors import CrystensorError, InputError

if TYPE_CHECKING:
    from crystensor.data.consistency import ConsistencyReport
    from crystensor.data.sources import FetchOptions, Rejected

__all__ = ["PATHLESS_SOURCES", "SOURCES", "FetchReport", "fetch", "rejects_path_for"]

logger = logging.getLogger(__name__)

#: Source name -> module with ``read(target, path, options)``; imported lazily.
SOURCES: dict[str, str] = {
    "mp": "crystensor.data.sources.mp",
    "matminer-csv": "crystensor.data.sources.matminer",
    "straintensornet": "crystensor.data.sources.straintensornet",
    "extxyz": "crystensor.data.sources.extxyz",
    "vasp": "crystensor.data.sources.vasp",
    "json": "crystensor.data.sources.jsonfile",
}
#: Sources that download instead of reading a path.
PATHLESS_SOURCES: frozenset[str] = frozenset({"mp"})

_RECORD_SUFFIXES = (".gz", ".jsonl", ".json", ".ndjson")


@dataclass
class FetchReport:
    """The outcome of one :func:`fetch`.

    Attributes
    ----------
    target, source : str
    input : str or None
        The source path (None for downloads).
    output, rejects : Path
        The records file and the rejects file (``<output stem>.rejects.jsonl``).
    read, kept : int
        Entries seen and entries written.
    rejections : list of Rejected
        ``(id, reason)`` of every dropped entry; reasons are ``"<category>: <detail>"``.
    rejected_by_reason : dict
        Category -> count, most frequent first.
    seconds : float
        Wall time of the whole import.
    """

    target: str
    source: str
    input: str | None
    output: Path
    rejects: Path
    read: int
    kept: int
    rejections: list[Rejected] = field(default_factory=list)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    tolerance: float = 0.05
    symprec: float = 0.01
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        """Number of dropped entries."""
        return len(self.rejections)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the individual rejections are in the rejects file)."""
        return {
            "target": self.target,
            "source": self.source,
            "input": self.input,
            "output": str(self.output),
            "rejects": str(self.rejects),
            "read": self.read,
            "kept": self.kept,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "tolerance": self.tolerance,
            "symprec": self.symprec,
            "seconds": round(self.seconds, 3),
        }


def rejects_path_for(output: str | Path) -> Path:
    """``<output stem>.rejects.jsonl`` next to ``output``.

    >>> rejects_path_for("data/elastic.jsonl.gz").as_posix()
    'data/elastic.rejects.jsonl'
    """
    p = Path(output)
    name = p.name
    for suffix in _RECORD_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return p.with_name(f"{name}.rejects.jsonl")


def fetch(
    target: str,
    source: str,
    path: str | Path | None,
    output: str | Path,
    *,
    tolerance: float = 0.05,
    symprec: float = 0.01,
    angle_tolerance: float = 5.0,
    limit: int | None = None,
    options: FetchOptions | None = None,
) -> FetchReport:
    """Import ``target`` from ``source`` into a dataset record file.

    Parameters
    ----------
    target : str
        Property name from :data:`crystensor.tensors.kinds.PROPERTIES`.
    source : str
        Source name, a key of :data:`SOURCES`.
    path : str or Path or None
        The source's file or folder (None for ``mp``).
    output : str or Path
        Records file (JSON Lines; gzip-compressed when it ends in ``.gz``).
    tolerance : float
        Largest accepted relative symmetry violation (default 0.05).
    symprec, angle_tolerance : float
        spglib tolerances (Angstrom, degrees) for the point group.
    limit : int, optional
        Read only the first ``limit`` entries of the source (a quick look, or a test).
    options : FetchOptions, optional
        Passed to the source (API key, endpoint, ``key``, progress callback, ...).

    Returns
    -------
    FetchReport

    Raises
    ------
    InputError
        Unknown target or source, missing or unreadable input, a target the source cannot
        provide, an output that would overwrite the input, or no entry passing the checks.
    """
    from crystensor.data.consistency import ConsistencyChecker
    from crystensor.data.records import write_records
    from crystensor.data.sources import FetchOptions

    started = time.perf_counter()
    checker = ConsistencyChecker(
        target, tolerance=tolerance, symprec=symprec, angle_tolerance=angle_tolerance
    )
    module = _source_module(source)
    in_path = _check_paths(source, path, output)
    out = Path(output)
    options = FetchOptions() if options is None else options
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit must be a positive number of entries, got {limit}")
        options = dataclasses.replace(options, progress=_clamped(options.progress, limit))
    raw = module.read(target, in_path, options)
    entries = raw if limit is None else itertools.islice(raw, limit)
    rejects = rejects_path_for(out)
    logger.info("fetching %s from %s%s", target, source, f" ({in_path})" if in_path else "")
    created = _missing_parents(out)
    written = False
    try:
        # Read the first entry before touching the file system: a source checks its file, the
        # target and its key when it starts, so these errors leave nothing behind.
        entries = _primed(entries)
        kept = write_records(out, _nonempty(checker.records(entries), checker.report, out))
        written = True
        _write_rejects(rejects, checker.report.rejections)
    except BaseException:
        if written:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
        for folder in created:  # deepest first; only the empty ones we made
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        if hasattr(raw, "close"):
            raw.close()
    report = checker.report
    result = FetchReport(
        target=target,
        source=source,
        input=None if in_path is None else str(in_path),
        output=out,
        rejects=rejects,
        read=report.read,
        kept=kept,
        rejections=list(report.rejections),
        rejected_by_reason=report.rejected_by_reason(),
        tolerance=report.tolerance,
        symprec=report.symprec,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "wrote %d records to %s (%d rejected, listed in %s) in %.1f s",
        result.kept,
        out,
        result.rejected,
        rejects.name,
        result.seconds,
    )
    return result


def _source_module(source: str) -> Any:
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    try:
        return importlib.import_module(SOURCES[source])
    except ImportError as err:
        raise CrystensorError(
            f"source {source!r} is not available ({err}); install the extra it needs "
            "(e.g. pip install 'crystensor[mp]')"
        ) from None


def _check_paths(source: str, path: str | Path | None, output: str | Path) -> Path | None:
    out = Path(output)
    if out.is_dir():
        raise InputError(f"output {str(out)!r} is a folder; give a file name such as data.jsonl.gz")
    if source in PATHLESS_SOURCES:
        return None if path is None else Path(path)
    if path is None:
        raise InputError(f"source {source!r} reads a file or folder; give its path with --input")
    in_path = Path(path)
    if not in_path.exists():
        raise InputError(f"input {str(in_path)!r} does not exist; check the path")
    if in_path.is_file() and out.exists() and in_path.resolve() == out.resolve():
        raise InputError(f"output {str(out)!r} is the input file; choose another output name")
    if in_path.resolve() == rejects_path_for(out).resolve():
        raise InputError(f"the rejects file would overwrite the input {str(in_path)!r}")
    return in_path


def _nonempty(records: Any, report: ConsistencyReport, out: Path) -> Any:
    """Pass records through; raise at the end if there were none (so no file is written)."""
    yield from records
    if report.kept == 0:
        if report.read == 0:
            raise InputError(f"the source yielded no entries; nothing to write to {out.name}")
        reasons = ", ".join(f"{k} ({v})" for k, v in report.rejected_by_reason().items())
        raise InputError(
            f"none of the {report.read} entries passed the checks ({reasons}); "
            "check the target, the tolerance and the source's frame"
        )


def _clamped(progress: Any, limit: int) -> Any:
    """A progress callback whose total is at most ``limit``."""
    if progress is None:
        return None

    def report(done: int, total: int | None) -> None:
        progress(min(done, limit), limit if total is None else min(total, limit))

    return report


def _primed(entries: Iterator[Any]) -> Iterator[Any]:
    """The same entries, the first one already read (so its errors are raised here)."""
    iterator = iter(entries)
    try:
        first = next(iterator)
    except StopIteration:
        return iter(())
    return itertools.chain([first], iterator)


def _missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, deepest first."""
    missing = []
    for parent in path.absolute().parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def _write_rejects(path: Path, rejections: list[Rejected]) -> None:
    from crystensor.io.atomic import atomic_open

    with atomic_open(path, "w") as fh:
        for r in rejections:
            fh.write(json.dumps({"id": r.id, "reason": r.reason}) + "\n")
