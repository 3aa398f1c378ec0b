"""Output files written safely: atomic replacement, symbolic links, streams and gzip by name.

Every command that writes a file goes through this module, so they all follow one rule:

=================================  ===========================================================
the output path is ...             what happens
=================================  ===========================================================
missing, or a regular file         written to a temporary file beside it and renamed over it
                                   when complete: an error leaves the previous file (or no
                                   file) and no temporary file; a replaced file keeps its
                                   permission bits; missing folders above it are created
a symbolic link                    the same, at the file the link points to; the link stays
a FIFO, a character or block       opened and written directly, never replaced (there is
device, ``/dev/stdout``,           nothing to rename: what was written before an error stays
``/dev/fd/N``                      written)
a folder or a socket               refused
named ``*.gz``                     gzip-compressed, in text and binary mode alike
=================================  ===========================================================

:func:`check_writable` tells, before any work is done, whether a path can be written, and
raises :class:`~crystensor.errors.InputError` with a one-line reason and fix when it cannot.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from crystensor.errors import InputError

__all__ = [
    "StagedOutput",
    "atomic_open",
    "atomic_write_text",
    "check_writable",
    "is_gzip_name",
    "plain_suffix",
]

# Names of a file descriptor this process already holds (the shell's redirection of stdout,
# ``<(...)``): written where they point, even when that is a regular file, never renamed over.
_FD_LINK = re.compile(r"^/(dev/(stdin|stdout|stderr|fd/\d+)|proc/(self|thread-self|\d+)/fd/\d+)$")

_STREAM_KINDS = {
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def is_gzip_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a gzip file (its name ends in ``.gz``, as the readers expect).

    >>> is_gzip_name("data/elastic.jsonl.gz"), is_gzip_name("graphs.h5")
    (True, False)
    """
    return Path(path).name.endswith(".gz")


def plain_suffix(path: str | os.PathLike) -> str:
    """The suffix that says the format, a trailing ``.gz`` left out (lower case).

    >>> plain_suffix("pred.JSON.gz"), plain_suffix("pred.csv"), plain_suffix("table")
    ('.json', '.csv', '')
    """
    p = Path(path)
    if is_gzip_name(p):
        p = p.with_suffix("")
    return p.suffix.lower()


def _stat(path: Path, what: str) -> os.stat_result | None:
    """``os.stat`` (through links); None when nothing is there yet."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(
                f"{what} {str(path)!r} is a loop of symbolic links; point it at a file"
            ) from None
        raise InputError(f"cannot use {what} {str(path)!r}: {err.strerror}") from None


def _is_fd_link(path: Path) -> bool:
    return _FD_LINK.match(os.path.abspath(path)) is not None


def _stream_kind(path: Path, st: os.stat_result | None) -> str | None:
    """What kind of stream ``path`` is (written directly), or None for a regular file."""
    if st is not None and stat.S_IFMT(st.st_mode) in _STREAM_KINDS:
        return _STREAM_KINDS[stat.S_IFMT(st.st_mode)]
    if st is not None and _is_fd_link(path):
        return "file descriptor"
    return None


def _refuse_unusable(path: Path, st: os.stat_result | None, what: str) -> None:
    if path.name in ("", ".", ".."):
        raise InputError(f"{what} {str(path)!r} names a folder; give a file name")
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise InputError(
            f"{what} {str(path)!r} is a folder; give a file name (e.g. {str(path / 'name')!r})"
        )
    if stat.S_ISSOCK(st.st_mode):
        raise InputError(f"{what} {str(path)!r} is a socket; give a file name")


def _a(noun: str) -> str:
    """``noun`` with its indefinite article."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def check_writable(
    path: str | os.PathLike,
    what: str = "output",
    *,
    overwrite: bool = True,
    gzip_ok: bool = True,
    streams_ok: bool = True,
) -> None:
    """Raise :class:`InputError` unless ``path`` can be written as an output; writes nothing.

    Call it before any work, so that an output which cannot be written is reported at once,
    not after the computation.

    Parameters
    ----------
    path : path
        The output. Missing folders above it are fine (the writers create them) as long as
        the nearest existing one can be written in.
    what : str
        What the file is, for the message ("records file", "graph store", ...).
    overwrite : bool
        False: an existing regular file (or one a link points to) is refused, with a message
        naming ``--force``.
    gzip_ok : bool
        False: a name ending in ``.gz`` is refused (for formats that cannot be gzipped).
    streams_ok : bool
        False: a FIFO, device or ``/dev/stdout`` is refused (for formats that need to seek,
        such as HDF5).

    Raises
    ------
    InputError
        A folder or socket, a symbolic-link loop, a parent that is a file, a folder or file
        without write permission or on a read-only file system, an existing file with
        ``overwrite=False``, a ``.gz`` name with ``gzip_ok=False``, a stream with
        ``streams_ok=False``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> check_writable(folder / "new" / "out.json")
    >>> check_writable(folder, "records file")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    crystensor.errors.InputError: records file '...' is a folder; give a file name (e.g. '.../name')
    """
    if str(path) == "":
        raise InputError(f"the {what} name is empty; give a file name")
    p = Path(path)
    if not gzip_ok and is_gzip_name(p):
        raise InputError(
            f"{what} {str(p)!r} ends in .gz, but a {what} cannot be gzip-compressed; drop the .gz"
        )
    st = _stat(p, what)
    _refuse_unusable(p, st, what)
    kind = _stream_kind(p, st)
    if kind is not None:
        if not streams_ok:
            raise InputError(
                f"{what} {str(p)!r} is a {kind}, and {_a(what)} needs a regular file it can "
                "seek in; give a file name"
            )
        if not os.access(p, os.W_OK):
            raise InputError(f"cannot write {what} {str(p)!r}: permission denied")
        return
    real = Path(os.path.realpath(p))
    if st is not None:
        if not overwrite:
            raise InputError(
                f"{what} {str(p)!r} already exists; pass --force to replace it, or choose "
                "another name"
            )
        if not os.access(real, os.W_OK):
            raise InputError(
                f"{what} {str(p)!r} is read-only; make it writable (chmod u+w) or choose "
                "another name"
            )
    folder = real.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(
            f"cannot create {what} {str(p)!r}: {str(folder)!r} is a file, not a folder; "
            "choose another place"
        )
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise InputError(
            f"cannot write {what} {str(p)!r}: folder {str(folder)!r} is on a read-only file "
            "system; choose another place"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"cannot write {what} {str(p)!r}: no permission to write in folder "
            f"{str(folder)!r}; choose a folder you can write to"
        )


class StagedOutput:
    """Where an output's bytes go until :meth:`commit` puts them under the output's name.

    For a missing or regular file, :attr:`write_path` is a temporary file beside the real
    destination (the file a symbolic link points to, so the link is kept); :meth:`commit`
    renames it over the destination and :meth:`discard` deletes it. For a stream (FIFO,
    device, ``/dev/stdout``) :attr:`direct` is True, :attr:`write_path` is the stream itself,
    and commit and discard do nothing. As a context manager it commits on success and
    discards on an exception.

    Parameters
    ----------
    path : path
        The output as the user named it.
    what : str
        What the file is, for error messages.
    streams_ok : bool
        False: refuse a stream (:class:`InputError`), for formats that need to seek.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with StagedOutput(out) as staged:
    ...     _ = staged.write_path.write_text("done")
    >>> out.read_text(), staged.direct
    ('done', False)
    """

    def __init__(
        self, path: str | os.PathLike, *, what: str = "output", streams_ok: bool = True
    ) -> None:
        self.path = Path(path)
        st = _stat(self.path, what)
        _refuse_unusable(self.path, st, what)
        kind = _stream_kind(self.path, st)
        self.direct = kind is not None
        self.tmp: Path | None = None
        if self.direct:
            if not streams_ok:
                raise InputError(
                    f"{what} {str(self.path)!r} is a {kind}, and {_a(what)} needs a regular file "
                    "it can seek in; give a file name"
                )
            self.destination = self.path
            return
        self.destination = Path(os.path.realpath(self.path))
        # a replaced file keeps its permissions; a new one gets what open() would give it
        self._mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
        folder = self.destination.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.destination.name}.", suffix=".part", dir=folder
            )
        except OSError as err:
            raise InputError(
                f"cannot write {what} {str(self.path)!r} ({err.strerror}); choose a folder "
                "you can write to"
            ) from None
        os.close(fd)
        self.tmp = Path(tmp)

    @property
    def write_path(self) -> Path:
        """The file to write now: the temporary file, or the stream itself."""
        return self.path if self.tmp is None else self.tmp

    def open_binary(self) -> IO[bytes]:
        """The write path opened for binary writing (a stream in append mode, never truncated)."""
        if self.direct:
            # O_APPEND: /dev/stdout redirected with >> keeps what is already there
            return os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND), "wb")
        return open(self.write_path, "wb")

    def commit(self) -> Path:
        """Rename the temporary file over the destination; returns the destination."""
        if self.tmp is not None:
            os.chmod(self.tmp, self._mode)
            os.replace(self.tmp, self.destination)
            self.tmp = None
        return self.destination

    def discard(self) -> None:
        """Delete the temporary file; the destination is left as it was."""
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            self.tmp = None

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    compress: bool | None = None,
    what: str = "output",
) -> Iterator[IO]:
    """Open an output for writing (see the module docstring for symbolic links and streams).

    A regular file appears under its name only when the ``with`` block ends without an
    exception; after one, the previous file is untouched and no temporary file is left.

    Parameters
    ----------
    path : path
        The output.
    mode : {"w", "wt", "wb"}
        Text (UTF-8) or binary.
    compress : bool, optional
        gzip-compress what is written; default: when the name ends in ``.gz``.
    what : str
        What the file is, for error messages.

    Examples
    --------
    >>> import gzip, tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt.gz"
    >>> with atomic_open(target) as fh:
    ...     _ = fh.write("done")
    >>> gzip.decompress(target.read_bytes()).decode()
    'done'
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open writes, with mode 'w', 'wt' or 'wb', not {mode!r}")
    gz = is_gzip_name(path) if compress is None else compress
    staged = StagedOutput(path, what=what)
    try:
        try:
            raw = staged.open_binary()
        except OSError as err:
            raise InputError(f"cannot write {what} {str(path)!r}: {err.strerror}") from None
        with raw:
            # gzip without the file name and time, so that the same content gives the same bytes
            packed = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if gz else None
            binary: IO[bytes] = packed if packed is not None else raw
            text = None if "b" in mode else io.TextIOWrapper(binary, encoding="utf-8")
            try:
                yield binary if text is None else text
            finally:
                if text is not None:
                    text.flush()
                    text.detach()  # leaves ``binary`` open for the gzip trailer and the rename
            if packed is not None:
                packed.close()  # writes the trailer; ``raw`` stays open
            raw.flush()
            if not staged.direct:
                os.fsync(raw.fileno())
        staged.commit()
    except BaseException:
        staged.discard()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "output") -> None:
    """Write ``text`` to ``path`` as :func:`atomic_open` does (gzipped for ``*.gz``)."""
    with atomic_open(path, "w", what=what) as fh:
        fh.write(text)
