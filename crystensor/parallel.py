"""One ordered pool of forked processes, for work that shares a large loaded state.

:class:`ForkPool` (and :func:`fork_map`) run ``function(state, task)`` for each task in
processes forked from this one, so ``state`` (a loaded model, a configuration) is inherited
rather than pickled, and yield the results in task order. ``crystensor predict`` and
``crystensor featurize`` both use it. Each process runs one torch thread and keeps freed
memory (:func:`keep_freed_memory`); what it logs is sent back and logged here, in order, under
the original logger names. If the processes cannot start or one dies, the iteration stops
early: the caller does the tasks not yet returned itself.

Each child sets one torch thread before doing anything. Entering a :class:`ForkPool` forks at
once, so files opened afterwards (a store being written) are not inherited; HDF5 readers open
before are closed before a fork by :data:`crystensor.data.store.OPEN_READERS`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

__all__ = ["ForkPool", "available_cores", "can_fork", "fork_map", "keep_freed_memory"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# (function, state) of the running fork_map, set just before the processes fork
_WORK: tuple[Callable[[Any, Any], Any], Any] | None = None
_LOCK = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def can_fork() -> bool:
    """Forking is used on Linux only, and not inside a daemon process (no children allowed)."""
    import multiprocessing

    return sys.platform == "linux" and not multiprocessing.current_process().daemon


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for the next batch instead of returning it.

    Each batch allocates a few MB of tensors; by default glibc maps blocks that large afresh
    and unmaps them when freed, so every batch page-faults its memory in again (~600 minor
    faults per structure with the shipped elastic SEGNN, 1 with these settings). Only in
    processes crystensor owns (the forked ones), and only with glibc.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed
    libc.mallopt(m_trim_threshold, 512 << 20)
    libc.mallopt(m_top_pad, 64 << 20)


class _Collected(logging.Handler):
    """Keeps the records a forked process logs, to send them to the parent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None  # arguments may not pickle
        record.exc_info = None
        self.records.append(record)


_COLLECTED = _Collected()


def _start_forked() -> None:
    """In a forked process: one torch thread, freed memory kept, logging kept for the parent."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    keep_freed_memory()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_COLLECTED)


def _run_forked(task: Any) -> tuple[Any, list[logging.LogRecord]]:
    """In a forked process: ``function(state, task)`` and what it logged."""
    if _WORK is None:  # not forked from a process running fork_map
        raise RuntimeError("no work in this process")
    _COLLECTED.records = []
    function, state = _WORK
    return function(state, task), _COLLECTED.records


class ForkPool:
    """Processes forked from this one that run ``function(state, task)``, results in order.

    Use as a context manager: entering forks the processes at once (so that nothing opened
    afterwards, an HDF5 file being written say, is inherited), leaving shuts them down.
    ``state`` is inherited, not pickled. With ``processes`` 1, or where forking is not used
    (:func:`can_fork`), everything runs in this process.

    >>> with ForkPool(pow, 2, processes=1) as pool:
    ...     [result for _, result in pool.map([1, 2, 3])]
    [2, 4, 8]
    """

    def __init__(self, function: Callable[[Any, T], R], state: Any, processes: int) -> None:
        self.function, self.state = function, state
        self.processes = processes if processes > 1 and can_fork() else 1
        self._pool: Any = None
        self._locked = False

    def __enter__(self) -> ForkPool:
        global _WORK
        if self.processes == 1:
            return self
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _LOCK.acquire()
        self._locked = True
        _WORK = (self.function, self.state)
        try:
            self._pool = ProcessPoolExecutor(
                self.processes, multiprocessing.get_context("fork"), initializer=_start_forked
            )
            self._pool.submit(_ready).result()  # a fork context starts every process now
        except OSError as err:
            log.debug("no worker processes (%r); working here", err)
            self._shutdown()
        return self

    def __exit__(self, *exc: object) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        global _WORK
        if self._pool is not None:
            # on an interrupt too: the tasks not started are dropped, not waited for
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._locked:
            _WORK = None
            self._locked = False
            _LOCK.release()

    def map(
        self,
        tasks: Iterable[T],
        *,
        window: int = 1024,
        chunksize: int = 1,
        fallback: bool = True,
    ) -> Iterator[tuple[T, R]]:
        """``(task, function(state, task))`` for every task, in order.

        ``tasks`` is consumed ``window`` at a time (one window queued while the previous
        drains), so a long stream never sits in memory at once; ``chunksize`` tasks go to a
        process per message. If the processes die, the tasks not yet returned are done in
        this process (``fallback``), or the iteration just ends (``fallback=False``: the
        caller does what is left). An exception raised by ``function`` itself propagates.
        """
        from concurrent.futures.process import BrokenProcessPool

        iterator = iter(tasks)
        if self._pool is None:
            for task in iterator:
                yield task, self.function(self.state, task)
            return
        pending: deque[tuple[list[T], Iterator[Any]]] = deque()
        undone: list[T] = []
        submitting: list[T] = []
        try:
            while submitting := list(islice(iterator, window)):
                results = self._pool.map(_run_forked, submitting, chunksize=chunksize)
                pending.append((submitting, results))
                submitting = []
                if len(pending) > 1:
                    yield from self._drain(pending, undone)
            while pending:
                yield from self._drain(pending, undone)
        except (BrokenProcessPool, OSError) as err:
            log.debug("the worker processes failed (%r)", err)
            self._shutdown()
            if not fallback:
                return
            for batch, _ in pending:
                undone.extend(batch)
            for task in (*undone, *submitting, *iterator):
                yield task, self.function(self.state, task)

    @staticmethod
    def _drain(pending: deque, undone: list) -> Iterator[tuple[Any, Any]]:
        batch, results = pending.popleft()
        undone[:] = batch  # what is not yielded yet if the processes die now
        for task, (result, records) in zip(batch, results, strict=True):
            for record in records:
                logging.getLogger(record.name).handle(record)
            undone.pop(0)
            yield task, result


def _ready() -> bool:
    return True


def fork_map(
    function: Callable[[Any, T], R], state: Any, tasks: Iterable[T], processes: int
) -> Iterator[tuple[T, R]]:
    """``(task, function(state, task))`` for each task, in order, in ``processes`` forked
    processes (:class:`ForkPool`); the iteration ends early, without raising, when the
    processes cannot start or die: the caller does the tasks not yielded."""
    with ForkPool(function, state, processes) as pool:
        yield from pool.map(tasks, fallback=False)
