"""Output files: symbolic links written through, streams written directly, gzip by name, checks."""

from __future__ import annotations

import gzip
import os
import stat
import threading
from pathlib import Path

import pytest

from crystensor.data.records import Record, read_records, write_records
from crystensor.errors import InputError
from crystensor.io import atomic
from crystensor.io.atomic import (
    StagedOutput,
    atomic_open,
    atomic_write_text,
    check_writable,
    plain_suffix,
)


class FifoReader:
    """Reads a FIFO to its end in a thread (a writer blocks until a reader opens it)."""

    def __init__(self, path: Path) -> None:
        self.data = b""
        self._thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self._thread.start()

    def _read(self, path: Path) -> None:
        with open(path, "rb") as fh:
            self.data = fh.read()

    def result(self) -> bytes:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the FIFO was never written and closed"
        return self.data


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def deny_writing_in(folder: Path, monkeypatch) -> None:
    """Make ``folder`` unwritable; root ignores the mode, so it is refused to root as well."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real_access = os.access

        def access(path, mode, *args, **kwargs):
            if Path(path) == folder and mode & os.W_OK:
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(atomic.os, "access", access)


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- symbolic links ---------------------------------------------------------------------------


def test_a_symbolic_link_is_written_through_and_kept(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(Path("real") / "out.json")  # relative, as users make them
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "out.json")
    assert target.read_text() == "new"
    assert only_files(tmp_path) == ["link.json", "real"]
    assert only_files(tmp_path / "real") == ["out.json"]


def test_a_dangling_link_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made" / "out.json")
    atomic_write_text(link, "new")
    assert link.is_symlink() and (tmp_path / "made" / "out.json").read_text() == "new"


def test_a_failed_write_through_a_link_leaves_the_target(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(RuntimeError, match="crashed"), atomic_open(link) as fh:
        fh.write("half")
        raise RuntimeError("crashed")
    assert link.is_symlink() and target.read_text() == "old"
    assert only_files(tmp_path) == ["link.json", "out.json"]


# -- streams ------------------------------------------------------------------------------------


def test_a_fifo_is_written_directly_and_not_replaced(tmp_path):
    fifo = make_fifo(tmp_path / "out.json")
    reader = FifoReader(fifo)
    atomic_write_text(fifo, '{"a": 1}\n')
    assert reader.result() == b'{"a": 1}\n'
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert only_files(tmp_path) == ["out.json"]


def test_a_gz_fifo_receives_gzip(tmp_path):
    fifo = make_fifo(tmp_path / "out.jsonl.gz")
    reader = FifoReader(fifo)
    atomic_write_text(fifo, "line\n")
    assert gzip.decompress(reader.result()) == b"line\n"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_character_device_is_written_not_replaced():
    before = os.stat("/dev/null")
    atomic_write_text("/dev/null", "nothing\n")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (
        before.st_ino,
        before.st_rdev,
    )


def test_a_format_that_seeks_refuses_a_stream(tmp_path):
    fifo = make_fifo(tmp_path / "g.h5")
    with pytest.raises(InputError, match=r"is a FIFO \(named pipe\), and a graph store needs"):
        StagedOutput(fifo, what="graph store", streams_ok=False)
    with pytest.raises(InputError, match="needs a regular file"):
        check_writable(fifo, "graph store", streams_ok=False)
    check_writable(fifo)  # a stream is fine for text outputs


# -- regular files --------------------------------------------------------------------------


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    out.chmod(0o640)
    atomic_write_text(out, "new")
    assert out.read_text() == "new" and stat.S_IMODE(out.stat().st_mode) == 0o640


def test_an_error_leaves_the_previous_file_and_no_temporary(tmp_path):
    out = tmp_path / "out.txt.gz"
    atomic_write_text(out, "old")
    with pytest.raises(RuntimeError), atomic_open(out) as fh:
        fh.write("new")
        raise RuntimeError("crashed")
    assert gzip.decompress(out.read_bytes()) == b"old"
    assert only_files(tmp_path) == ["out.txt.gz"]


def test_gz_round_trip_text_binary_and_records(tmp_path):
    atomic_write_text(tmp_path / "a.txt.gz", "héllo\n")
    assert gzip.decompress((tmp_path / "a.txt.gz").read_bytes()).decode() == "héllo\n"
    with atomic_open(tmp_path / "b.bin.gz", "wb") as fh:
        fh.write(b"\x00\x01")
    assert gzip.decompress((tmp_path / "b.bin.gz").read_bytes()) == b"\x00\x01"
    with atomic_open(tmp_path / "plain.gz", "wb", compress=False) as fh:
        fh.write(b"raw")
    assert (tmp_path / "plain.gz").read_bytes() == b"raw"
    atomic_write_text(tmp_path / "again.txt.gz", "héllo\n")
    # no name or time in the header: the same content gives the same bytes
    assert (tmp_path / "again.txt.gz").read_bytes() == (tmp_path / "a.txt.gz").read_bytes()
    record = Record("mp-1", "Si", {"a": 1}, "band-gap", 1.5, "eV", {"dataset": "test"})
    assert write_records(tmp_path / "r.jsonl.gz", [record]) == 1
    assert (tmp_path / "r.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert [r.id for r in read_records(tmp_path / "r.jsonl.gz")] == ["mp-1"]


def test_plain_suffix_ignores_gz():
    assert plain_suffix("x.json.gz") == ".json" and plain_suffix("x.CSV") == ".csv"


# -- check_writable -------------------------------------------------------------------------


def test_check_writable_accepts_new_files_in_new_folders_and_creates_nothing(tmp_path):
    check_writable(tmp_path / "a" / "b" / "out.json")
    assert only_files(tmp_path) == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("folder", "records file '{p}' is a folder; give a file name"),
        ("under a file", "'{tmp}/file' is a file, not a folder; choose another place"),
        ("link loop", "is a loop of symbolic links"),
        ("empty", "the records file name is empty"),
        ("dot-dot", "names a folder; give a file name"),
    ],
)
def test_check_writable_explains_what_is_wrong(tmp_path, case, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    path = {
        "folder": str(tmp_path),
        "under a file": str(tmp_path / "file" / "out.json"),
        "link loop": str(tmp_path / "loop"),
        "empty": "",
        "dot-dot": str(tmp_path / "new" / ".."),
    }[case]
    with pytest.raises(InputError) as err:
        check_writable(path, "records file")
    assert message.format(p=path, tmp=tmp_path) in str(err.value)
    assert "\n" not in str(err.value)


def test_check_writable_refuses_an_unwritable_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    deny_writing_in(folder, monkeypatch)
    try:
        with pytest.raises(InputError, match=r"no permission to write in folder .*ro'"):
            check_writable(folder / "sub" / "out.json")
    finally:
        folder.chmod(0o755)


def test_check_writable_refuses_existing_files_without_overwrite_and_gz_where_unusable(tmp_path):
    out = tmp_path / "g.h5"
    out.write_bytes(b"")
    check_writable(out, "graph store")
    with pytest.raises(InputError, match=r"graph store '.*g.h5' already exists; pass --force"):
        check_writable(out, "graph store", overwrite=False)
    link = tmp_path / "link.h5"
    link.symlink_to(out)
    with pytest.raises(InputError, match="already exists"):
        check_writable(link, "graph store", overwrite=False)
    with pytest.raises(InputError, match=r"cannot be gzip-compressed; drop the \.gz"):
        check_writable(tmp_path / "g.h5.gz", "graph store", gzip_ok=False)
