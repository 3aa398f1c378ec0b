"""``fetch``: read a data source, check every entry, write dataset records and a rejects file.

The library function behind ``crystensor fetch``::

    source.read(target, path, options)   # RawEntry | Rejected, tensors in the structure frame
      -> ConsistencyChecker               # checks, symmetry violation, point-group projection
      -> dump_records(output)             # JSON Lines (gzip for .gz), atomically
      +  <output stem>.fetch-rejects.jsonl  # one Rejection per dropped entry

Sources are looked up by name in :data:`SOURCES` and imported only when used. Both files are
written to a temporary name and renamed when complete, the rejects file first; if anything
fails, nothing is left under the output name (and a previous file of that name is untouched).
The output rules of :mod:`crystensor.io.atomic` apply (a symbolic link is written through, a
FIFO is written directly). With ``overwrite=False`` an existing records file is refused before
anything is read. The rejects file's name and lines are those of :mod:`crystensor.data.rejects`,
shared with ``featurize``, which writes ``<store stem>.featurize-rejects.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystensor.data.rejects import Rejection, rejects_path, write_rejects
from crystensor.errors import CrystensorError, InputError

if TYPE_CHECKING:
    from crystensor.data.consistency import ConsistencyReport
    from crystensor.data.sources import FetchOptions, Rejected

__all__ = [
    "PATHLESS_SOURCES",
    "SOURCES",
    "FetchReport",
    "check_outputs",
    "fetch",
    "rejects_path_for",
]

logger = logging.getLogger(__name__)

#: Source name -> module with ``read(target, path, options)``; imported lazily.
SOURCES: dict[str, str] = {
    "mp": "crystensor.data.sources.mp",
    "matminer-csv": "crystensor.data.sources.matminer",
    "straintensornet": "crystensor.data.sources.straintensornet",
    "extxyz": "crystensor.data.sources.extxyz",
    "vasp": "crystensor.data.sources.vasp",
    "json": "crystensor.data.sources.jsonfile",
    "naccarato": "crystensor.data.sources.naccarato",
}
#: Sources that download instead of reading a path.
PATHLESS_SOURCES: frozenset[str] = frozenset({"mp"})


@dataclass
class FetchReport:
    """The outcome of one :func:`fetch`.

    Attributes
    ----------
    target, source : str
    input : str or None
        The source path (None for downloads).
    output, rejects : Path
        The records file and the rejects file (``<output stem>.fetch-rejects.jsonl``).
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
    """``<output stem>.fetch-rejects.jsonl`` next to ``output``.

    >>> rejects_path_for("data/elastic.jsonl.gz").as_posix()
    'data/elastic.fetch-rejects.jsonl'
    """
    return rejects_path(output, "fetch")


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
    overwrite: bool = True,
) -> FetchReport:
    """Import ``target`` from ``source`` into a dataset record file.

    Parameters
    ----------
    target : str
        Property name from :data:`crystensor.tensors.kinds.PROPERTIES` (or an alias such as
        ``bandgap``; the records carry the registered name).
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
    overwrite : bool
        False: refuse an existing records file (``crystensor fetch`` without ``--force``).

    Returns
    -------
    FetchReport

    Raises
    ------
    InputError
        Unknown target or source, missing or unreadable input, a target the source cannot
        provide, an output that would overwrite the input or cannot be written (checked
        before anything is read), or no entry passing the checks.
    """
    from crystensor.data.consistency import ConsistencyChecker
    from crystensor.data.records import dump_records
    from crystensor.data.sources import FetchOptions
    from crystensor.io.atomic import atomic_open
    from crystensor.tensors.kinds import property_name

    started = time.perf_counter()
    target = property_name(target)
    check_outputs(output, overwrite=overwrite)
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
    source_file = "" if in_path is None else in_path.name
    try:
        # Read the first entry before touching the file system: a source checks its file, the
        # target and its key when it starts, so these errors leave nothing behind.
        entries = _primed(entries)
        # the records are renamed into place only after the rejects file is written, so a
        # failure of either leaves the previous records file as it was
        try:
            with atomic_open(out, "wb", what="records file") as fh:
                kept = dump_records(fh, _nonempty(checker.records(entries), checker.report, out))
                _write_rejects(rejects, checker.report.rejections, source_file)
        except _NothingKept:
            # no records file, but the reason of every rejection, as when some pass
            _write_rejects(rejects, checker.report.rejections, source_file)
            raise _nothing_kept(checker.report, rejects) from None
    except BaseException:
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


class _NothingKept(Exception):
    """Every entry was rejected (raised inside the records file's writer, so it is not kept)."""


def _nonempty(records: Any, report: ConsistencyReport, out: Path) -> Any:
    """Pass records through; raise at the end if there were none (so no file is written)."""
    yield from records
    if report.kept == 0:
        if report.read == 0:
            raise InputError(f"the source yielded no entries; nothing to write to {out.name}")
        raise _NothingKept()


def _nothing_kept(report: ConsistencyReport, rejects: Path) -> InputError:
    """The error of a fetch whose entries were all rejected: counts, and the first reasons."""
    counts = ", ".join(f"{k} ({v})" for k, v in report.rejected_by_reason().items())
    first = "; ".join(f"{r.id}: {r.reason}" for r in report.rejections[:3])
    more = len(report.rejections) - 3
    return InputError(
        f"none of the {report.read} entries passed the checks ({counts}), no records written; "
        f"{first}{f'; and {more} more' if more > 0 else ''} (all listed in {rejects.name})"
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


def check_outputs(output: str | Path, *, overwrite: bool = True) -> None:
    """Raise :class:`InputError` unless the records file and its rejects file can be written.

    What ``crystensor fetch`` checks before any work; ``overwrite=False`` refuses an existing
    records file.
    """
    from crystensor.io.atomic import check_writable

    check_writable(output, "records file", overwrite=overwrite)
    check_writable(rejects_path_for(output), "rejects file")


def _write_rejects(path: Path, rejections: list[Rejected], file: str) -> None:
    from crystensor.data.consistency import reason_category

    write_rejects(
        path,
        (
            Rejection(
                id=r.id,
                code=reason_category(r.reason).replace(" ", "-"),
                reason=r.reason,
                stage="fetch",
                file=file,
            )
            for r in rejections
        ),
    )
